/* gpucheck_main.c - entry point of sdxl-gpucheck (see gpucheck.h). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gpu/gpucheck.h"

const char *gc_device(void)
{
    const char *d = getenv("SDXL_GPUCHECK_DEVICE");
    return d && *d ? d : "cuda:0";
}

sd_status gc_backend(sd_backend **be, sd_dtype dt, sd_error *err)
{
    int cpu = !strcmp(gc_device(), "cpu");
    return sd_backend_create(be, gc_device(), cpu ? SD_DTYPE_F32 : dt, err);
}

void gc_poison(sd_tensor *t)
{
    if (!strcmp(sd_backend_name(t->be), "cpu")) {
        memset(t->data, 0xFF, t->bytes);
        return;
    }
    cudaMemset(t->data, 0xFF, t->bytes);
    cudaDeviceSynchronize();
}

double gc_rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sdxl-gpucheck ops [--quick] | goldens TESTDATA | bench MODEL [RES] [BATCH] [STEPS]\n");
        return 2;
    }
    if (!strcmp(argv[1], "ops"))
        return gpucheck_ops(argc > 2 && !strcmp(argv[2], "--quick")) ? 1 : 0;
    if (!strcmp(argv[1], "goldens") && argc > 2)
        return gpucheck_goldens(argv[2]) ? 1 : 0;
    if (!strcmp(argv[1], "bench") && argc > 2)
        return gpucheck_bench(argv[2], argc > 3 ? atoi(argv[3]) : 1024, argc > 4 ? atoi(argv[4]) : 2,
                              argc > 5 ? atoi(argv[5]) : 30)
                   ? 1
                   : 0;
    fprintf(stderr, "sdxl-gpucheck: unknown command '%s'\n", argv[1]);
    return 2;
}
