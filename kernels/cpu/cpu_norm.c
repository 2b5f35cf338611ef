/* cpu_norm.c - group norm and layer norm of the CPU backend. Statistics are
 * accumulated in double (cheap here, and keeps fp32 results as close to
 * torch's as summation order allows). */
#include "kernels/cpu/cpu_internal.h"

/* mean and 1/sqrt(variance + eps) of n values: two passes in double, since
 * a one-pass sum of squares loses digits when the mean is large */
static void mean_rstd(const float *x, int64_t n, float eps, float *mean_out, float *rstd_out)
{
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++)
        sum += x[i];
    double mean = sum / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        sq += d * d;
    }
    *rstd_out = (float)(1.0 / sqrt(sq / (double)n + (double)eps));
    *mean_out = (float)mean;
}

sd_status sd_cpu_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                            const sd_tensor *beta, int groups, float eps, int silu, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t B = x->shape[0], C = x->shape[1];
    int64_t HW = sd_tensor_numel(x) / (B * C);
    int64_t cpg = C / groups;
    const float *X = CF32(x), *G = CF32(gamma), *Bt = CF32(beta);
    float *Y = F32(y);
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int64_t n = 0; n < B; n++) {
        for (int g = 0; g < groups; g++) {
            const float *xs = X + (n * C + g * cpg) * HW;
            float *ys = Y + (n * C + g * cpg) * HW;
            float fmean, rstd;
            mean_rstd(xs, cpg * HW, eps, &fmean, &rstd);
            for (int64_t c = 0; c < cpg; c++) {
                float a = G[g * cpg + c] * rstd, bb = Bt[g * cpg + c];
                const float *xc = xs + c * HW;
                float *yc = ys + c * HW;
                for (int64_t i = 0; i < HW; i++) {
                    float v = (xc[i] - fmean) * a + bb;
                    yc[i] = silu ? v / (1.0f + expf(-v)) : v;
                }
            }
        }
    }
    return SD_OK;
}

sd_status sd_cpu_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                            const sd_tensor *beta, float eps, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t D = x->shape[x->ndim - 1];
    int64_t rows = sd_tensor_numel(x) / D;
    const float *X = CF32(x), *G = CF32(gamma), *Bt = CF32(beta);
    float *Y = F32(y);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = X + r * D;
        float *yr = Y + r * D;
        float fmean, rstd;
        mean_rstd(xr, D, eps, &fmean, &rstd);
        for (int64_t i = 0; i < D; i++)
            yr[i] = (xr[i] - fmean) * rstd * G[i] + Bt[i];
    }
    return SD_OK;
}
