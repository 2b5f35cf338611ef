/* check_ops.c - every op of ops.h on the CUDA backend against the CPU
 * backend, at SDXL shapes, in fp16 and bf16. Inputs are fresh random values
 * (a new seed per case and dtype), rounded to the storage dtype first so both
 * backends see identical numbers; the GPU output is poisoned with NaN before
 * each run, so an unwritten element fails. Pass: relative L2 error under 1e-2
 * (bf16 keeps 8 significant bits, about 4e-3 relative per rounding: 1e-2
 * leaves room for a few roundings and fails any indexing or reduction bug,
 * which gives errors of order 1). NaN never passes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/gpu/gpucheck.h"

#define TOL 1e-2
#define MAXIN 4

typedef struct {
    int i[4];
    float f;
} op_params;

typedef sd_status (*op_fn)(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err);

typedef struct {
    const char *name;
    int nin;
    int ndim[MAXIN];
    int64_t shape[MAXIN][4];
    float scale[MAXIN]; /* input spread; 0 for "norm weights near 1" */
    int out_ndim;
    int64_t out_shape[4];
    op_fn fn;
    op_params p;
    double flops; /* for the rate column; 0: report bandwidth */
    int quick;    /* part of --quick */
} op_case;

static sd_status f_linear(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_linear(y, in[0], in[1], in[2], (sd_act)p->i[0], err);
}
static sd_status f_conv(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_conv2d_pad4(y, in[0], in[1], in[2], p->i[0], p->i[1], p->i[2], p->i[1], p->i[2], err);
}
static sd_status f_conv_vae(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_conv2d_pad4(y, in[0], in[1], in[2], 2, 0, 1, 0, 1, err);
}
static sd_status f_gn(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_group_norm(y, in[0], in[1], in[2], p->i[0], p->f, p->i[1], err);
}
static sd_status f_ln(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_layer_norm(y, in[0], in[1], in[2], p->f, err);
}
static sd_status f_attn(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_attention(y, in[0], in[1], in[2], p->i[0], p->i[1], err);
}
static sd_status f_act(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_act(y, in[0], (sd_act)p->i[0], err);
}
static sd_status f_geglu(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_geglu(y, in[0], err);
}
static sd_status f_up(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_upsample_nearest(y, in[0], err);
}
static sd_status f_add(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_add(y, in[0], in[1], err);
}
static sd_status f_cbias(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_add_channel_bias(y, in[0], in[1], err);
}
static sd_status f_scale(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_scale(y, in[0], p->f, err);
}
static sd_status f_concat(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_concat(y, in[0], in[1], p->i[0], err);
}
static sd_status f_to_nlc(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_nchw_to_nlc(y, in[0], err);
}
static sd_status f_to_nchw(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_nlc_to_nchw(y, in[0], err);
}
static sd_status f_copy(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    return sd_op_copy(y, in[0], err);
}
static sd_status f_temb(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    float t[8] = {999, 501, 1, 0, 250.5f, 77, 640, 1024};
    return sd_op_timestep_embedding(y, t, (int)y->shape[0], (int)y->shape[1], 1, 0, err);
}
static sd_status f_embed(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    int64_t ids[2 * 77];
    for (int i = 0; i < 2 * 77; i++)
        ids[i] = (i * 7919) % in[0]->shape[0];
    return sd_op_embedding(y, ids, in[0], in[1], err);
}
static sd_status f_gather(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err)
{
    int64_t rows[2] = {5, 76};
    return sd_op_gather_rows(y, in[0], rows, err);
}

#define S4(a, b, c, d) {a, b, c, d}

static const op_case cases[] = {
    {"linear q/k/v 2x4096 tok 640", 2, {2, 2}, {S4(8192, 640, 0, 0), S4(640, 640, 0, 0)}, {1, 0.05f}, 2,
     S4(8192, 640, 0, 0), f_linear, {{0}, 0}, 2.0 * 8192 * 640 * 640, 1},
    {"linear+bias GEGLU-in 2x1024 tok", 3, {2, 2, 1}, {S4(2048, 1280, 0, 0), S4(10240, 1280, 0, 0), S4(10240, 0, 0, 0)},
     {1, 0.03f, 0.1f}, 2, S4(2048, 10240, 0, 0), f_linear, {{0}, 0}, 2.0 * 2048 * 10240 * 1280, 1},
    {"linear+bias+gelu CLIP-G mlp", 3, {2, 2, 1}, {S4(154, 1280, 0, 0), S4(5120, 1280, 0, 0), S4(5120, 0, 0, 0)},
     {1, 0.03f, 0.1f}, 2, S4(154, 5120, 0, 0), f_linear, {{SD_ACT_GELU}, 0}, 2.0 * 154 * 5120 * 1280, 0},
    {"linear tiny K=40 (unaligned)", 3, {2, 2, 1}, {S4(154, 40, 0, 0), S4(72, 40, 0, 0), S4(72, 0, 0, 0)},
     {1, 0.2f, 0.1f}, 2, S4(154, 72, 0, 0), f_linear, {{SD_ACT_QUICK_GELU}, 0}, 2.0 * 154 * 72 * 40, 0},
    {"conv3x3 320 at 128x128 b2", 3, {4, 4, 1}, {S4(2, 320, 128, 128), S4(320, 320, 3, 3), S4(320, 0, 0, 0)},
     {1, 0.02f, 0.1f}, 4, S4(2, 320, 128, 128), f_conv, {{1, 1, 1}, 0}, 2.0 * 2 * 320 * 128 * 128 * 2880, 1},
    {"conv3x3 640->1280 at 32x32 b2", 3, {4, 4, 1}, {S4(2, 640, 32, 32), S4(1280, 640, 3, 3), S4(1280, 0, 0, 0)},
     {1, 0.015f, 0.1f}, 4, S4(2, 1280, 32, 32), f_conv, {{1, 1, 1}, 0}, 2.0 * 2 * 1280 * 1024 * 5760, 0},
    {"conv3x3 stride2 320 128->64", 3, {4, 4, 1}, {S4(2, 320, 128, 128), S4(320, 320, 3, 3), S4(320, 0, 0, 0)},
     {1, 0.02f, 0.1f}, 4, S4(2, 320, 64, 64), f_conv, {{2, 1, 1}, 0}, 2.0 * 2 * 320 * 4096 * 2880, 0},
    {"conv1x1 shortcut 640->1280 32x32", 3, {4, 4, 1}, {S4(2, 640, 32, 32), S4(1280, 640, 1, 1), S4(1280, 0, 0, 0)},
     {1, 0.04f, 0.1f}, 4, S4(2, 1280, 32, 32), f_conv, {{1, 0, 0}, 0}, 2.0 * 2 * 1280 * 1024 * 640, 0},
    {"conv VAE down pad(0,1,0,1) 128", 3, {4, 4, 1}, {S4(1, 128, 256, 256), S4(128, 128, 3, 3), S4(128, 0, 0, 0)},
     {1, 0.03f, 0.1f}, 4, S4(1, 128, 128, 128), f_conv_vae, {{0}, 0}, 2.0 * 128 * 16384 * 1152, 0},
    {"conv3x3 tiny 4->16 at 8x12", 3, {4, 4, 1}, {S4(2, 4, 8, 12), S4(16, 4, 3, 3), S4(16, 0, 0, 0)},
     {1, 0.2f, 0.1f}, 4, S4(2, 16, 8, 12), f_conv, {{1, 1, 1}, 0}, 0, 0},
    {"group_norm+silu 320 at 128x128", 3, {4, 1, 1}, {S4(2, 320, 128, 128), S4(320, 0, 0, 0), S4(320, 0, 0, 0)},
     {2, 0, 0.1f}, 4, S4(2, 320, 128, 128), f_gn, {{32, 1}, 1e-5f}, 0, 1},
    {"group_norm 1280 at 32x32 eps1e-6", 3, {4, 1, 1}, {S4(2, 1280, 32, 32), S4(1280, 0, 0, 0), S4(1280, 0, 0, 0)},
     {3, 0, 0.1f}, 4, S4(2, 1280, 32, 32), f_gn, {{32, 0}, 1e-6f}, 0, 0},
    {"layer_norm 8192x640", 3, {2, 1, 1}, {S4(8192, 640, 0, 0), S4(640, 0, 0, 0), S4(640, 0, 0, 0)}, {2, 0, 0.1f}, 2,
     S4(8192, 640, 0, 0), f_ln, {{0}, 1e-5f}, 0, 1},
    {"attention self 2x4096 10h d64", 3, {3, 3, 3}, {S4(2, 4096, 640, 0), S4(2, 4096, 640, 0), S4(2, 4096, 640, 0)},
     {1, 1, 1}, 3, S4(2, 4096, 640, 0), f_attn, {{10, 0}, 0}, 4.0 * 2 * 4096 * 4096 * 640, 1},
    {"attention cross 2x1024 vs 77 20h", 3, {3, 3, 3}, {S4(2, 1024, 1280, 0), S4(2, 77, 1280, 0), S4(2, 77, 1280, 0)},
     {1, 1, 1}, 3, S4(2, 1024, 1280, 0), f_attn, {{20, 0}, 0}, 4.0 * 2 * 1024 * 77 * 1280, 0},
    {"attention causal CLIP 77 12h", 3, {3, 3, 3}, {S4(2, 77, 768, 0), S4(2, 77, 768, 0), S4(2, 77, 768, 0)},
     {1, 1, 1}, 3, S4(2, 77, 768, 0), f_attn, {{12, 1}, 0}, 0, 1},
    {"attention VAE 1 head d512 1024tok", 3, {3, 3, 3}, {S4(1, 1024, 512, 0), S4(1, 1024, 512, 0), S4(1, 1024, 512, 0)},
     {0.3f, 0.3f, 1}, 3, S4(1, 1024, 512, 0), f_attn, {{1, 0}, 0}, 4.0 * 1024 * 1024 * 512, 0},
    {"attention VAE d512 8192 tok chunked", 3, {3, 3, 3},
     {S4(1, 8192, 512, 0), S4(1, 8192, 512, 0), S4(1, 8192, 512, 0)}, {0.3f, 0.3f, 1}, 3, S4(1, 8192, 512, 0), f_attn,
     {{1, 0}, 0}, 4.0 * 8192 * 8192 * 512, 0},
    {"attention self 2x1024 20h d64", 3, {3, 3, 3}, {S4(2, 1024, 1280, 0), S4(2, 1024, 1280, 0), S4(2, 1024, 1280, 0)},
     {1, 1, 1}, 3, S4(2, 1024, 1280, 0), f_attn, {{20, 0}, 0}, 4.0 * 2 * 1024 * 1024 * 1280, 0},
    {"attention tiny d12 causal", 3, {3, 3, 3}, {S4(2, 77, 48, 0), S4(2, 77, 48, 0), S4(2, 77, 48, 0)}, {1, 1, 1}, 3,
     S4(2, 77, 48, 0), f_attn, {{4, 1}, 0}, 0, 0},
    {"silu 2x320x128x128", 1, {4}, {S4(2, 320, 128, 128)}, {3}, 4, S4(2, 320, 128, 128), f_act, {{SD_ACT_SILU}, 0}, 0, 0},
    {"quick_gelu 154x3072", 1, {2}, {S4(154, 3072, 0, 0)}, {3}, 2, S4(154, 3072, 0, 0), f_act, {{SD_ACT_QUICK_GELU}, 0},
     0, 0},
    {"geglu 8192x(2x2560)", 1, {2}, {S4(8192, 5120, 0, 0)}, {2}, 2, S4(8192, 2560, 0, 0), f_geglu, {{0}, 0}, 0, 1},
    {"upsample 1280 32->64", 1, {4}, {S4(2, 1280, 32, 32)}, {1}, 4, S4(2, 1280, 64, 64), f_up, {{0}, 0}, 0, 0},
    {"add 2x640x64x64", 2, {4, 4}, {S4(2, 640, 64, 64), S4(2, 640, 64, 64)}, {1, 1}, 4, S4(2, 640, 64, 64), f_add,
     {{0}, 0}, 0, 0},
    {"add_channel_bias 320 128x128", 2, {4, 2}, {S4(2, 320, 128, 128), S4(2, 320, 0, 0)}, {1, 1}, 4,
     S4(2, 320, 128, 128), f_cbias, {{0}, 0}, 0, 0},
    {"scale 2x4x128x128", 1, {4}, {S4(2, 4, 128, 128)}, {1}, 4, S4(2, 4, 128, 128), f_scale, {{0}, 7.6775f}, 0, 0},
    {"concat channels 640+320 64x64", 2, {4, 4}, {S4(2, 640, 64, 64), S4(2, 320, 64, 64)}, {1, 1}, 4,
     S4(2, 960, 64, 64), f_concat, {{1}, 0}, 0, 1},
    {"concat features 768+1280", 2, {3, 3}, {S4(2, 77, 768, 0), S4(2, 77, 1280, 0)}, {1, 1}, 3, S4(2, 77, 2048, 0),
     f_concat, {{2}, 0}, 0, 0},
    {"nchw->nlc 640x64x64", 1, {4}, {S4(2, 640, 64, 64)}, {1}, 3, S4(2, 4096, 640, 0), f_to_nlc, {{0}, 0}, 0, 1},
    {"nlc->nchw 640x64x64", 1, {3}, {S4(2, 4096, 640, 0)}, {1}, 4, S4(2, 640, 64, 64), f_to_nchw, {{0}, 0}, 0, 0},
    {"nchw->nlc odd 48x9x13", 1, {4}, {S4(2, 48, 9, 13)}, {1}, 3, S4(2, 117, 48, 0), f_to_nlc, {{0}, 0}, 0, 0},
    {"copy 2x4x128x128", 1, {4}, {S4(2, 4, 128, 128)}, {1}, 4, S4(2, 4, 128, 128), f_copy, {{0}, 0}, 0, 0},
    {"timestep_embedding 8x320", 0, {0}, {S4(0, 0, 0, 0)}, {0}, 2, S4(8, 320, 0, 0), f_temb, {{0}, 0}, 0, 0},
    {"embedding 2x77 from 49408x768", 2, {2, 2}, {S4(49408, 768, 0, 0), S4(77, 768, 0, 0)}, {0.02f, 0.01f}, 3,
     S4(2, 77, 768, 0), f_embed, {{0}, 0}, 0, 0},
    {"gather_rows 2x77x1280", 1, {3}, {S4(2, 77, 1280, 0)}, {1}, 2, S4(2, 1280, 0, 0), f_gather, {{0}, 0}, 0, 0},
};

static unsigned long long rng_state;

static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

/* Fills n values rounded through dt; scale 0 means "around 1" (norm gains). */
static void fill_host(float *h, size_t n, float scale, sd_dtype dt)
{
    for (size_t i = 0; i < n; i++)
        h[i] = scale == 0 ? 1.0f + 0.2f * frand() : scale * frand();
    void *tmp = malloc(n * 2);
    sd_convert_from_f32(tmp, dt, h, n);
    sd_convert_to_f32(h, tmp, dt, n);
    free(tmp);
}

static int run_case(const op_case *c, sd_backend *cpu, sd_backend *gpu, sd_dtype dt, int idx)
{
    sd_error err = {0};
    sd_tensor ic[MAXIN], ig[MAXIN], *pc[MAXIN] = {0}, *pg[MAXIN] = {0};
    memset(ic, 0, sizeof ic);
    memset(ig, 0, sizeof ig);
    rng_state = 0x9E3779B97F4A7C15ull * (unsigned long long)(idx + 1) + (dt == SD_DTYPE_BF16 ? 17 : 0) +
                (unsigned long long)time(NULL);
    int ok = 1;
    for (int k = 0; k < c->nin && ok; k++) {
        int64_t n = 1;
        for (int d = 0; d < c->ndim[k]; d++)
            n *= c->shape[k][d];
        float *h = malloc((size_t)n * sizeof *h);
        fill_host(h, (size_t)n, c->scale[k], dt);
        ok = sd_tensor_from_host(cpu, &ic[k], h, SD_DTYPE_F32, c->ndim[k], c->shape[k], 0, &err) == SD_OK &&
             sd_tensor_from_host(gpu, &ig[k], h, SD_DTYPE_F32, c->ndim[k], c->shape[k], 0, &err) == SD_OK;
        pc[k] = &ic[k];
        pg[k] = &ig[k];
        free(h);
    }
    sd_tensor yc = {0}, yg = {0};
    if (ok)
        ok = sd_tensor_alloc(cpu, &yc, c->out_ndim, c->out_shape, &err) == SD_OK &&
             sd_tensor_alloc(gpu, &yg, c->out_ndim, c->out_shape, &err) == SD_OK;
    double ms = 0, rel = INFINITY;
    if (ok) {
        gc_poison(&yg);
        ok = c->fn(&yc, pc, &c->p, &err) == SD_OK && c->fn(&yg, pg, &c->p, &err) == SD_OK &&
             sd_backend_sync(gpu, &err) == SD_OK;
    }
    if (ok) {
        size_t n = (size_t)sd_tensor_numel(&yc);
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        ok = sd_tensor_to_host_f32(&yg, a, &err) == SD_OK && sd_tensor_to_host_f32(&yc, b, &err) == SD_OK;
        if (ok)
            rel = gc_rel_l2(a, b, n);
        free(a);
        free(b);
        /* timing: the mean of 10 runs after the warm one above (1 when
         * rehearsing on the CPU, where only the table's shape matters) */
        int reps = strcmp(gc_device(), "cpu") ? 10 : 1;
        double t0 = sd_now_s();
        for (int r = 0; r < reps && ok; r++)
            ok = c->fn(&yg, pg, &c->p, &err) == SD_OK;
        if (ok)
            ok = sd_backend_sync(gpu, &err) == SD_OK;
        ms = (sd_now_s() - t0) / reps * 1e3;
    }
    int pass = ok && rel < TOL;
    char rate[32] = "";
    if (c->flops > 0 && ms > 0)
        snprintf(rate, sizeof rate, "%.1f TFLOP/s", c->flops / (ms * 1e-3) * 1e-12);
    printf("%-4s %-36s %-5s %10.2e %9.3f ms %16s %s\n", pass ? "ok" : "FAIL", c->name,
           dt == SD_DTYPE_BF16 ? "bf16" : "f16", rel, ms, rate, ok ? "" : err.msg);
    for (int k = 0; k < c->nin; k++) {
        sd_tensor_free(&ic[k]);
        sd_tensor_free(&ig[k]);
    }
    sd_tensor_free(&yc);
    sd_tensor_free(&yg);
    return pass ? 0 : 1;
}

int gpucheck_ops(int quick)
{
    sd_backend *cpu;
    sd_error err = {0};
    if (sd_backend_create(&cpu, "cpu", SD_DTYPE_F32, &err) != SD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int fails = 0;
    printf("%-4s %-36s %-5s %10s %12s %16s\n", "", "op (CUDA vs CPU reference)", "dtype", "rel L2", "gpu time", "rate");
    sd_dtype dts[2] = {SD_DTYPE_F16, SD_DTYPE_BF16};
    for (int d = 0; d < 2; d++) {
        sd_backend *gpu;
        if (gc_backend(&gpu, dts[d], &err) != SD_OK) {
            fprintf(stderr, "%s\n", err.msg);
            sd_backend_free(cpu);
            return 1;
        }
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            if (!quick || cases[i].quick)
                fails += run_case(&cases[i], cpu, gpu, dts[d], (int)i);
        sd_backend_free(gpu);
    }
    printf("ops: %d failed\n", fails);
    sd_backend_free(cpu);
    return fails;
}
