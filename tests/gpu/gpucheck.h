/* gpucheck.h - the GPU machine's checks and timings (sdxl-gpucheck):
 *   ops      every op of ops.h on the CUDA backend against the CPU backend at
 *            SDXL shapes, fp16, bf16 and fp32, fresh random inputs, outputs poisoned
 *   goldens  the tiny models of ../shared/testdata on the GPU against diffusers
 *   bench    full-size SDXL UNet step, VAE decode, text encoders, vs the floor
 * Each prints a table and returns the number of failures. */
#ifndef SDXL_TESTS_GPU_GPUCHECK_H
#define SDXL_TESTS_GPU_GPUCHECK_H

#include "common/clock.h"
#include "kernels/ops.h"

int gpucheck_ops(int quick);
int gpucheck_goldens(const char *testdata);
int gpucheck_bench(const char *model, int res, int batch, int steps);

/* The device under test: $SDXL_GPUCHECK_DEVICE, default cuda:0 ("cpu"
 * rehearses the whole script on a machine without a GPU). */
const char *gc_device(void);
/* Creates the backend under test in dtype (F32 when rehearsing on the CPU). */
sd_status gc_backend(sd_backend **be, sd_dtype dt, sd_error *err);
/* Poisons a device tensor with NaN bit patterns (0xFF bytes). */
void gc_poison(sd_tensor *t);
/* relative L2 of a vs b in double; +inf if a has a NaN */
double gc_rel_l2(const float *a, const float *b, size_t n);

#endif
