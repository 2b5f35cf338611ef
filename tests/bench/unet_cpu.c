/* bench unet_cpu - one UNet forward on the CPU backend (what `sdxl eval unet`
 * runs), at a given latent size: load time, forward time, GFLOP/s, peak
 * memory, and the floor: the forward's FLOPs at the sgemm rate measured on a
 * large square product in the same run.
 * usage: bench-unet_cpu MODEL_DIR [--size 64] [--batch 1] [--variant fp16] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/model_folder.h"
#include "kernels/cpu/sgemm.h"
#include "kernels/arena.h"
#include "kernels/ops.h"
#include "tests/bench/bench_util.h"
#include "worker/engine/unet/unet.h"


int main(int argc, char **argv)
{
    const char *model = NULL, *variant = NULL;
    int size = 64, batch = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--variant") && i + 1 < argc)
            variant = argv[++i];
        else
            model = argv[i];
    }
    if (!model || size < 8 || batch < 1) {
        fprintf(stderr, "usage: bench-unet_cpu MODEL_DIR [--size 64] [--batch 1] [--variant fp16]\n");
        return 2;
    }
    sd_error err = {0};
    sd_backend *be;
    sd_model_folder m;
    const sd_component *c;
    sd_unet *u;
    double t0 = sd_now_s();
    if (sd_backend_create(&be, "cpu", SD_DTYPE_F32, &err) != SD_OK || sd_model_open(&m, model, &err) != SD_OK ||
        sd_model_require(&m, "unet", &c, &err) != SD_OK || sd_unet_load(&u, be, c, variant, &err) != SD_OK) {
        fprintf(stderr, "bench-unet_cpu: %s\n", err.msg);
        return 1;
    }
    double load = sd_now_s() - t0;
    double rss_loaded = bench_peak_rss_gib();
    const sd_unet_config *cfg = sd_unet_get_config(u);
    int P = cfg->add_embed_in - 6 * cfg->addition_time_embed_dim;
    int nids = 6;
    if (P <= 0 || P > 4096) { /* refiner: 5 ids */
        P = cfg->add_embed_in - 5 * cfg->addition_time_embed_dim;
        nids = 5;
    }
    int64_t ss[4] = {batch, cfg->in_channels, size, size}, cs[3] = {batch, 77, cfg->cross_dim}, ts[2] = {batch, P};
    sd_tensor s, ctx, te, out = {0};
    sd_tensor_alloc(be, &s, 4, ss, &err);
    sd_tensor_alloc(be, &ctx, 3, cs, &err);
    sd_tensor_alloc(be, &te, 2, ts, &err);
    unsigned seed = 1;
    sd_tensor *ins[3] = {&s, &ctx, &te};
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < sd_tensor_numel(ins[k]); i++) {
            seed = seed * 1664525u + 1013904223u;
            ((float *)ins[k]->data)[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
        }
    float *tsteps = malloc((size_t)batch * sizeof *tsteps), *ids = malloc((size_t)batch * nids * sizeof *ids);
    for (int b = 0; b < batch; b++) {
        tsteps[b] = 999;
        for (int k = 0; k < nids; k++)
            ids[b * nids + k] = (float)(size * 8);
    }
    /* the forward runs as a denoising loop's first step does: recorded by an
     * arena, whose plan is the activation block later steps would use */
    sd_arena *arena;
    if (sd_arena_create(&arena, be, &err) != SD_OK || sd_arena_enter(arena, &err) != SD_OK) {
        fprintf(stderr, "bench-unet_cpu: %s\n", err.msg);
        return 1;
    }
    sd_ops_flops_reset();
    t0 = sd_now_s();
    if (sd_unet_forward(u, &s, tsteps, &ctx, &te, ids, nids, &out, &err) != SD_OK) {
        fprintf(stderr, "bench-unet_cpu: %s\n", err.msg);
        return 1;
    }
    double fwd = sd_now_s() - t0;
    sd_tensor_free(&out);
    sd_arena_stats as;
    if (sd_arena_leave(arena, 1, &err) != SD_OK) {
        fprintf(stderr, "bench-unet_cpu: %s\n", err.msg);
        return 1;
    }
    sd_arena_get_stats(arena, &as);
    double flops = (double)sd_ops_flops();
    double rate = bench_sgemm_rate(2048);
    printf("unet forward on cpu: %s, latent %dx%d (image %dx%d), batch %d\n", model, size, size, size * 8, size * 8,
           batch);
    printf("  load %.1f s; forward %.2f s; %.1f GFLOP -> %.1f GFLOP/s\n", load, fwd, flops * 1e-9,
           flops / fwd * 1e-9);
    printf("  floor at this machine's sgemm rate (%.1f GFLOP/s, 2048^3, same run): %.2f s -> forward is %.2fx the floor\n",
           rate * 1e-9, flops / rate, fwd / (flops / rate));
    printf("  peak RSS %.2f GiB (after load %.2f GiB)\n", bench_peak_rss_gib(), rss_loaded);
    printf("  activation arena (fp32): %.3f GiB for %d buffers; most alive at once %.3f GiB: %.3fx that bound\n",
           (double)as.arena_bytes / (1 << 30), as.buffers, (double)as.peak_live_bytes / (1 << 30),
           (double)as.arena_bytes / (double)as.peak_live_bytes);
    sd_arena_free(arena);
    sd_tensor_free(&s);
    sd_tensor_free(&ctx);
    sd_tensor_free(&te);
    free(tsteps);
    free(ids);
    sd_unet_free(u);
    sd_model_close(&m);
    sd_backend_free(be);
    return 0;
}
