/* cpu_internal.h - shared pieces of the CPU backend (fp32 everywhere). */
#ifndef SDXL_KERNELS_CPU_INTERNAL_H
#define SDXL_KERNELS_CPU_INTERNAL_H

#include <math.h>

#include "kernels/backend_impl.h"

#define F32(t) ((float *)(t)->data)
#define CF32(t) ((const float *)(t)->data)

static inline float cpu_act(float x, sd_act act)
{
    switch (act) {
    case SD_ACT_SILU:
        return x / (1.0f + expf(-x));
    case SD_ACT_GELU:
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case SD_ACT_QUICK_GELU:
        return x / (1.0f + expf(-1.702f * x));
    default:
        return x;
    }
}

sd_status sd_cpu_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                        sd_act act, int64_t M, int64_t N, int64_t K, sd_error *err);
sd_status sd_cpu_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                        int stride, int pt, int pb, int pl, int pr, sd_error *err);
sd_status sd_cpu_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                            const sd_tensor *beta, int groups, float eps, int silu, sd_error *err);
sd_status sd_cpu_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                            const sd_tensor *beta, float eps, sd_error *err);
sd_status sd_cpu_attention(sd_backend *be, sd_tensor *o, const sd_tensor *q, const sd_tensor *k,
                           const sd_tensor *v, const sd_tensor *key_mask, int heads, int causal, sd_error *err);

#endif
