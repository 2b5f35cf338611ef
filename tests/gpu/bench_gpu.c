/* bench_gpu.c - full-size SDXL on the GPU: the UNet step at 1024x1024 with
 * CFG (batch 2), the VAE decode, both text encoders, each next to its floor
 * (its FLOPs over the dense fp16 matrix rate measured here, in this run, with
 * the same cuBLASLt path). Also checks that the timed steps made no cudaMalloc. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/model_folder.h"
#include "kernels/cuda/cuda_api.h"
#include "tests/gpu/gpucheck.h"
#include "worker/engine/text/clip_text.h"
#include "worker/engine/unet/unet.h"
#include "worker/engine/unet/unet_step.h"
#include "worker/engine/vae/vae.h"

#define DIE(...)                                                                                                   \
    do {                                                                                                           \
        fprintf(stderr, "bench: " __VA_ARGS__);                                                                    \
        fprintf(stderr, "\n");                                                                                     \
        return 1;                                                                                                  \
    } while (0)

static void fill_random(sd_backend *be, sd_tensor *t, float scale, unsigned seed)
{
    size_t n = (size_t)sd_tensor_numel(t);
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = scale * ((float)(seed >> 8) / 8388608.0f - 1.0f);
    }
    sd_error err;
    sd_tensor tmp;
    sd_tensor_from_host(be, &tmp, h, SD_DTYPE_F32, t->ndim, t->shape, 0, &err);
    sd_op_copy(t, &tmp, &err);
    sd_tensor_free(&tmp);
    free(h);
}

static double median(double *v, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (v[j] < v[i]) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    return v[n / 2];
}

/* dense matrix rate through sd_op_linear (cuBLASLt), TFLOP/s */
static double gemm_rate(sd_backend *be)
{
    int64_t n = strcmp(gc_device(), "cpu") ? 8192 : 512, s2[2] = {n, n};
    sd_tensor a, b, c;
    sd_error err;
    sd_tensor_alloc(be, &a, 2, s2, &err);
    sd_tensor_alloc(be, &b, 2, s2, &err);
    sd_tensor_alloc(be, &c, 2, s2, &err);
    fill_random(be, &a, 1, 1);
    fill_random(be, &b, 1, 2);
    double t[10];
    sd_op_linear(&c, &a, &b, NULL, SD_ACT_NONE, &err);
    sd_backend_sync(be, &err);
    for (int r = 0; r < 10; r++) {
        double t0 = sd_now_s();
        sd_op_linear(&c, &a, &b, NULL, SD_ACT_NONE, &err);
        sd_backend_sync(be, &err);
        t[r] = sd_now_s() - t0;
    }
    sd_tensor_free(&a);
    sd_tensor_free(&b);
    sd_tensor_free(&c);
    return 2.0 * n * n * n / median(t, 10) * 1e-12;
}

static float *random_host(size_t n, unsigned seed)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
    }
    return x;
}

/* The denoising loop's step (worker/engine/unet/unet_step.h), host latents in and
 * prediction out, timed over 8 steps after 3 warm-up steps (the third is the
 * one captured when use_graph); pred gets the last step's output. */
static int time_loop_steps(sd_unet *u, int P, const float *ids, int nids, int batch, int lat, int use_graph,
                           float *pred, double *ms, sd_unet_step_info *info)
{
    sd_error err = {0};
    sd_unet_step *step;
    int S = 77, D = sd_unet_get_config(u)->cross_dim;
    if (sd_unet_step_create(&step, u, batch, lat, lat, S, P, nids, use_graph, &err) != SD_OK)
        DIE("unet step: %s", err.msg);
    size_t n = (size_t)batch * 4 * (size_t)lat * (size_t)lat;
    float *x = random_host(n, 9), *ctx = random_host((size_t)batch * S * D, 10),
          *te = random_host((size_t)batch * P, 11), t[16];
    for (int b = 0; b < batch; b++)
        t[b] = 500;
    double tm[8];
    int rc = 0;
    if (sd_unet_step_condition(step, ctx, te, ids, &err) != SD_OK) {
        fprintf(stderr, "bench: unet step conditioning: %s\n", err.msg);
        rc = 1;
    }
    for (int r = -3; r < 8 && !rc; r++) {
        double a = sd_now_s();
        if (sd_unet_step_run(step, x, t, pred, &err) != SD_OK) {
            fprintf(stderr, "bench: unet step %d (graph %d): %s\n", r + 4, use_graph, err.msg);
            rc = 1;
        }
        if (r >= 0)
            tm[r] = (sd_now_s() - a) * 1e3;
    }
    if (!rc)
        *ms = median(tm, 8);
    sd_unet_step_get_info(step, info);
    free(x);
    free(ctx);
    free(te);
    sd_unet_step_free(step);
    return rc;
}

/* The VAE's decoder on be and random latents [1, 4, lat, lat] from seed
 * (the same values on any backend). */
static sd_status vae_decoder_and_latents(sd_backend *be, const sd_component *cv, int lat, unsigned seed, sd_vae **v,
                                         sd_tensor *z, sd_error *err)
{
    int64_t zs[4] = {1, 4, lat, lat};
    *v = NULL;
    memset(z, 0, sizeof *z);
    SD_TRY(sd_vae_load_parts(v, be, cv, NULL, SD_VAE_DECODER, err));
    SD_TRY(sd_tensor_alloc(be, z, 4, zs, err));
    fill_random(be, z, 1, seed);
    return SD_OK;
}

/* The VAE decoder at lat x lat latents on be: the median of 3 timed
 * decodes after a warm one, and the FLOPs of one. */
static int time_vae_decode(sd_backend *be, const sd_component *cv, int lat, double *ms, double *flops)
{
    sd_error err = {0};
    sd_vae *v;
    sd_tensor z, img = {0};
    if (vae_decoder_and_latents(be, cv, lat, 6, &v, &z, &err) != SD_OK)
        DIE("%s", err.msg);
    if (sd_vae_decode(v, &z, &img, &err) != SD_OK)
        DIE("vae (%s): %s", sd_backend_name(be), err.msg);
    sd_tensor_free(&img);
    sd_backend_sync(be, &err);
    double tv[3];
    sd_ops_flops_reset();
    for (int r = 0; r < 3; r++) {
        double a = sd_now_s();
        sd_vae_decode(v, &z, &img, &err);
        sd_backend_sync(be, &err);
        tv[r] = (sd_now_s() - a) * 1e3;
        sd_tensor_free(&img);
    }
    *flops = (double)sd_ops_flops() / 3;
    *ms = median(tv, 3);
    sd_tensor_free(&z);
    sd_vae_free(v);
    return 0;
}

/* The full-size VAE decoder in fp32 on the device against the CPU backend
 * (fp32 too) on the same random latents: rel L2 of the image. At 512x512
 * the last level's convolutions take the banded column buffer (K x P =
 * 1152 x 262144 values), and the mid-block attention the chunked 512-wide
 * path: the real model's shapes, where the tiny goldens have small ones.
 * Bound 1e-4, as check_ops' fp32 bound: only summation order differs. */
static double vae_f32_vs_cpu(sd_backend *b32, const sd_component *cv, int lat)
{
    sd_error err = {0};
    sd_backend *cpu;
    if (sd_backend_create(&cpu, "cpu", SD_DTYPE_F32, &err) != SD_OK)
        return INFINITY;
    sd_backend *bes[2] = {b32, cpu};
    size_t n = (size_t)3 * 64 * lat * lat;
    float *img[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    int ok = img[0] && img[1];
    for (int k = 0; k < 2 && ok; k++) {
        sd_vae *v = NULL;
        sd_tensor z, y = {0};
        ok = vae_decoder_and_latents(bes[k], cv, lat, 7, &v, &z, &err) == SD_OK &&
             sd_vae_decode(v, &z, &y, &err) == SD_OK && (size_t)sd_tensor_numel(&y) == n &&
             sd_tensor_to_host_f32(&y, img[k], &err) == SD_OK;
        if (!ok)
            fprintf(stderr, "bench: vae fp32 check on %s: %s\n", sd_backend_name(bes[k]), err.msg);
        sd_tensor_free(&y);
        sd_tensor_free(&z);
        sd_vae_free(v);
    }
    double rel = ok ? gc_rel_l2(img[0], img[1], n) : INFINITY;
    free(img[0]);
    free(img[1]);
    sd_backend_free(cpu);
    return rel;
}

int gpucheck_bench(const char *model, int res, int batch, int steps)
{
    sd_error err = {0};
    sd_backend *be, *bvae, *b32;
    if (gc_backend(&be, SD_DTYPE_F16, &err) != SD_OK || gc_backend(&bvae, SD_DTYPE_BF16, &err) != SD_OK ||
        gc_backend(&b32, SD_DTYPE_F32, &err) != SD_OK)
        DIE("%s", err.msg);
    char devname[256] = "cpu (rehearsal)";
    if (strcmp(gc_device(), "cpu"))
        sd_cuda_device_name(0, devname, sizeof devname, &err);
    double rate16 = gemm_rate(be), rate_bf = gemm_rate(bvae), rate32 = gemm_rate(b32);
    printf("device: %s\n", devname);
    printf("dense matrix rate (cuBLASLt 8192^3, this run): fp16 %.0f TFLOP/s, bf16 %.0f TFLOP/s, fp32 %.0f TFLOP/s\n",
           rate16, rate_bf, rate32);

    sd_model_folder m;
    const sd_component *cu, *cv, *c1, *c2;
    if (sd_model_open(&m, model, &err) != SD_OK || sd_model_require(&m, "unet", &cu, &err) != SD_OK ||
        sd_model_require(&m, "vae", &cv, &err) != SD_OK || sd_model_require(&m, "text_encoder", &c1, &err) != SD_OK ||
        sd_model_require(&m, "text_encoder_2", &c2, &err) != SD_OK)
        DIE("%s", err.msg);
    double t0 = sd_now_s();
    sd_unet *u;
    if (sd_unet_load(&u, be, cu, NULL, &err) != SD_OK)
        DIE("%s", err.msg);
    double load_s = sd_now_s() - t0;
    const sd_unet_config *uc = sd_unet_get_config(u);
    int lat = res / 8;
    sd_clip_config c2cfg;
    if (sd_clip_config_load(&c2cfg, c2, &err) != SD_OK)
        DIE("%s", err.msg);
    int P = c2cfg.projection_dim, nids = sd_unet_time_ids(u, P);
    int64_t ss[4] = {batch, 4, lat, lat}, cs[3] = {batch, 77, uc->cross_dim}, ts[2] = {batch, P};
    sd_tensor s, ctx, te, out = {0};
    sd_tensor_alloc(be, &s, 4, ss, &err);
    sd_tensor_alloc(be, &ctx, 3, cs, &err);
    sd_tensor_alloc(be, &te, 2, ts, &err);
    fill_random(be, &s, 1, 3);
    fill_random(be, &ctx, 1, 4);
    fill_random(be, &te, 1, 5);
    float tsteps[16], ids[16 * 6];
    for (int b = 0; b < batch; b++) {
        tsteps[b] = 500;
        for (int k = 0; k < nids; k++)
            ids[b * nids + k] = (float)(k == 2 || k == 3 ? 0 : res);
    }
    /* warm-up: the allocator reaches its steady set of blocks */
    for (int w = 0; w < 2; w++) {
        if (sd_unet_forward(u, &s, tsteps, &ctx, &te, ids, nids, &out, &err) != SD_OK)
            DIE("unet: %s", err.msg);
        sd_tensor_free(&out);
    }
    sd_backend_sync(be, &err);
    sd_cuda_stats st0 = {0}, st1 = {0};
    int on_gpu = strcmp(gc_device(), "cpu") != 0;
    if (on_gpu)
        sd_cuda_backend_stats(be, &st0);
    double tu[8];
    sd_ops_flops_reset();
    for (int r = 0; r < 8; r++) {
        double a = sd_now_s();
        sd_unet_forward(u, &s, tsteps, &ctx, &te, ids, nids, &out, &err);
        sd_backend_sync(be, &err);
        tu[r] = (sd_now_s() - a) * 1e3;
        sd_tensor_free(&out);
    }
    double unet_flops = (double)sd_ops_flops() / 8;
    if (on_gpu)
        sd_cuda_backend_stats(be, &st1);
    double unet_ms = median(tu, 8);
    /* a finite output on random weights, as a sanity check */
    sd_unet_forward(u, &s, tsteps, &ctx, &te, ids, nids, &out, &err);
    size_t n = (size_t)sd_tensor_numel(&out);
    float *h = malloc(n * sizeof *h);
    sd_tensor_to_host_f32(&out, h, &err);
    int finite = 1;
    for (size_t i = 0; i < n; i++)
        finite &= isfinite(h[i]) != 0;
    free(h);
    sd_tensor_free(&out);
    double unet_floor = unet_flops / (rate16 * 1e12) * 1e3;
    /* the loop's step: eager with its arena, then relaunched as a graph */
    size_t np = (size_t)batch * 4 * (size_t)lat * (size_t)lat;
    float *p_eager = malloc(np * sizeof *p_eager), *p_graph = malloc(np * sizeof *p_graph);
    double eager_ms = 0, graph_ms = 0;
    sd_unet_step_info ie = {0}, ig = {0};
    if (time_loop_steps(u, P, ids, nids, batch, lat, 0, p_eager, &eager_ms, &ie) ||
        time_loop_steps(u, P, ids, nids, batch, lat, 1, p_graph, &graph_ms, &ig))
        return 1;
    double dd = 0, nn = 0;
    for (size_t i = 0; i < np; i++) {
        dd += ((double)p_graph[i] - p_eager[i]) * ((double)p_graph[i] - p_eager[i]);
        nn += (double)p_eager[i] * p_eager[i];
    }
    int graph_same = memcmp(p_eager, p_graph, np * sizeof *p_eager) == 0;
    double graph_rel = nn > 0 ? sqrt(dd / nn) : sqrt(dd);
    free(p_eager);
    free(p_graph);
    sd_tensor_free(&s);
    sd_tensor_free(&ctx);
    sd_tensor_free(&te);
    sd_unet_free(u);

    /* VAE decode: fp32 (what an fp16 pipeline runs, as diffusers upcasts
     * SDXL's VAE) and bf16 (what a bf16 pipeline runs) */
    double vae_ms, vae_flops, vae32_ms, vae32_flops;
    if (time_vae_decode(b32, cv, lat, &vae32_ms, &vae32_flops) || time_vae_decode(bvae, cv, lat, &vae_ms, &vae_flops))
        return 1;
    int vae_lat = lat < 64 ? lat : 64; /* 512x512: banded on the device */
    double vae_rel = vae_f32_vs_cpu(b32, cv, vae_lat);
    printf("VAE decode fp32 on the device vs the CPU backend, %dx%d, full-size VAE: rel L2 %.2e (bound 1e-4): %s\n",
           vae_lat * 8, vae_lat * 8, vae_rel, vae_rel < 1e-4 ? "ok" : "FAIL");

    /* text encoders, batch 2 (prompt and negative prompt) */
    sd_clip_text *t1, *t2;
    if (sd_clip_text_load(&t1, be, c1, NULL, &err) != SD_OK || sd_clip_text_load(&t2, be, c2, NULL, &err) != SD_OK)
        DIE("%s", err.msg);
    int64_t tid[2 * 77];
    for (int i = 0; i < 2 * 77; i++)
        tid[i] = i % 77 == 0 ? 49406 : i % 77 < 20 ? 320 + (i * 37) % 40000 : 49407;
    double tt[5];
    for (int r = -1; r < 5; r++) {
        double a = sd_now_s();
        sd_tensor p1 = {0}, p2 = {0}, e2 = {0};
        sd_clip_outputs o1 = {.penultimate = &p1}, o2 = {.penultimate = &p2, .text_embeds = &e2};
        if (sd_clip_text_forward(t1, tid, 2, 77, &o1, &err) != SD_OK ||
            sd_clip_text_forward(t2, tid, 2, 77, &o2, &err) != SD_OK)
            DIE("text: %s", err.msg);
        sd_backend_sync(be, &err);
        if (r >= 0)
            tt[r] = (sd_now_s() - a) * 1e3;
        sd_tensor_free(&p1);
        sd_tensor_free(&p2);
        sd_tensor_free(&e2);
    }
    double text_ms = median(tt, 5);
    sd_clip_text_free(t1);
    sd_clip_text_free(t2);

    double image_s = (text_ms + steps * unet_ms + vae32_ms) * 1e-3;
    printf("\n%-44s %12s %12s %10s\n", "stage", "time", "floor", "x floor");
    printf("%-44s %9.1f ms %9.1f ms %9.2fx\n", "UNet step, batch 2 (CFG), f16", unet_ms, unet_floor,
           unet_ms / unet_floor);
    printf("%-44s %9.1f ms %9.1f ms %9.2fx\n", "VAE decode, batch 1, fp32 (under fp16)", vae32_ms,
           vae32_flops / (rate32 * 1e12) * 1e3, vae32_ms / (vae32_flops / (rate32 * 1e12) * 1e3));
    printf("%-44s %9.1f ms %9.1f ms %9.2fx\n", "VAE decode, batch 1, bf16 (under bf16)", vae_ms,
           vae_flops / (rate_bf * 1e12) * 1e3, vae_ms / (vae_flops / (rate_bf * 1e12) * 1e3));
    printf("%-44s %9.1f ms\n", "text encoders (CLIP-L + bigG), batch 2, f16", text_ms);
    printf("%-44s %9.2f s  (%.2f images/s)\n", "one image, 30 steps (sum of stages above)", image_s, 1.0 / image_s);
    printf("UNet: %.2f TFLOP per step, %.0f TFLOP/s achieved; load %.1f s; output finite: %s\n", unet_flops * 1e-12,
           unet_flops / (unet_ms * 1e-3) * 1e-12, load_s, finite ? "yes" : "NO");
    printf("loop step (upload + step + download): eager %.1f ms, graph %.1f ms (%lld of %lld steps relaunched); "
           "graph output %s eager's (rel L2 %.2e)\n",
           eager_ms, graph_ms, ig.graph_steps, ig.steps, graph_same ? "bit-equal to" : "differs from", graph_rel);
    printf("activation arena: %.1f MiB for %d buffers (peak alive %.1f MiB, %.2fx)\n",
           (double)ie.arena_bytes / (1 << 20), ie.buffers, (double)ie.peak_live_bytes / (1 << 20),
           ie.peak_live_bytes ? (double)ie.arena_bytes / (double)ie.peak_live_bytes : 0.0);
    printf("cudaMalloc calls during the 8 timed steps: %llu; peak device memory in use %.2f GiB\n",
           st1.mallocs - st0.mallocs, (double)st1.peak_in_use / (1 << 30));
    sd_model_close(&m);
    sd_backend_free(be);
    sd_backend_free(bvae);
    sd_backend_free(b32);
    /* a graph whose output strays from the eager step's is a failure (same
     * kernels on the same addresses: only nondeterminism could move it) */
    return finite && graph_rel < 1e-3 && vae_rel < 1e-4 ? 0 : 1;
}
