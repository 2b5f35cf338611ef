/* check_ops.c - every op of ops.h (the table of tests/ops/op_cases.h) on the
 * CUDA backend against the CPU backend, at SDXL shapes, in fp16, bf16 and fp32. Inputs are fresh random values
 * (a new seed per case and dtype), rounded to the storage dtype first so both
 * backends see identical numbers; the GPU output is poisoned with NaN before
 * each run, so an unwritten element fails. Pass: relative L2 error under 1e-2
 * (bf16 keeps 8 significant bits, about 4e-3 relative per rounding: 1e-2
 * leaves room for a few roundings and fails any indexing or reduction bug,
 * which gives errors of order 1). fp32 (the upcast VAE): 1e-4, as both
 * backends then compute in fp32 and differ only in summation order and
 * __expf (1e-6 to 1e-5 over the longest sums, K = 11520); TF32 products or a
 * 16-bit rounding anywhere would give 5e-4 or more. NaN never passes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/gpu/gpucheck.h"
#include "tests/ops/op_cases.h"

#define TOL 1e-2
#define TOL_F32 1e-4

static int run_case(const op_case *c, sd_backend *cpu, sd_backend *gpu, sd_dtype dt, int idx)
{
    sd_error err = {0};
    sd_tensor ic[OP_MAXIN], ig[OP_MAXIN], *pc[OP_MAXIN] = {0}, *pg[OP_MAXIN] = {0};
    memset(ic, 0, sizeof ic);
    memset(ig, 0, sizeof ig);
    op_cases_seed(0x9E3779B97F4A7C15ull * (unsigned long long)(idx + 1) + (unsigned long long)dt * 17 +
                  (unsigned long long)time(NULL));
    int ok = 1;
    for (int k = 0; k < c->nin && ok; k++) {
        int64_t n = op_case_in_numel(c, k);
        float *h = malloc((size_t)n * sizeof *h);
        op_cases_fill(h, (size_t)n, c->scale[k], dt);
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
    int pass = ok && rel < (dt == SD_DTYPE_F32 ? TOL_F32 : TOL);
    char rate[32] = "";
    if (c->flops > 0 && ms > 0)
        snprintf(rate, sizeof rate, "%.1f TFLOP/s", c->flops / (ms * 1e-3) * 1e-12);
    printf("%-4s %-36s %-5s %10.2e %9.3f ms %16s %s\n", pass ? "ok" : "FAIL", c->name,
           sd_dtype_user_name(dt), rel, ms, rate, ok ? "" : err.msg);
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
    sd_dtype dts[3] = {SD_DTYPE_F16, SD_DTYPE_BF16, SD_DTYPE_F32};
    for (int d = 0; d < 3; d++) {
        sd_backend *gpu;
        if (gc_backend(&gpu, dts[d], &err) != SD_OK) {
            fprintf(stderr, "%s\n", err.msg);
            sd_backend_free(cpu);
            return 1;
        }
        for (int i = 0; i < op_cases_sdxl_count; i++)
            if (!quick || op_cases_sdxl[i].quick)
                fails += run_case(&op_cases_sdxl[i], cpu, gpu, dts[d], i);
        sd_backend_free(gpu);
    }
    printf("ops: %d failed\n", fails);
    sd_backend_free(cpu);
    return fails;
}
