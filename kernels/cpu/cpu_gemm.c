/* cpu_gemm.c - matrix products of the CPU backend through OpenBLAS: linear
 * layers, and convolutions as im2col + sgemm, tiled over output rows so the
 * column buffer stays small even for the VAE's 1024x1024 maps. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/sgemm.h"

/* Column buffers are capped at this many floats (64 MiB). */
#define IM2COL_MAX_FLOATS (16u << 20)

sd_status sd_cpu_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                        sd_act act, int64_t M, int64_t N, int64_t K, sd_error *err)
{
    (void)be;
    (void)err;
    float *Y = F32(y);
    if (M == 0 || N == 0)
        return SD_OK;
    sd_sgemm(1, M, N, K, 1.0f, CF32(x), K, CF32(w), K, 0.0f, Y, N);
    if (b || act != SD_ACT_NONE) {
        const float *B = b ? CF32(b) : NULL;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < M; i++) {
            float *row = Y + i * N;
            for (int64_t j = 0; j < N; j++)
                row[j] = cpu_act(row[j] + (B ? B[j] : 0.0f), act);
        }
    }
    return SD_OK;
}

/* col[(c*kh + i)*kw + j][r*OW + ow] for output rows [r0, r0+rows) */
static void im2col_rows(float *col, const float *x, int64_t C, int64_t H, int64_t W, int kh, int kw, int stride,
                        int pt, int pl, int64_t OW, int64_t r0, int64_t rows)
{
    int64_t ncols = rows * OW;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        for (int i = 0; i < kh; i++) {
            for (int j = 0; j < kw; j++) {
                float *dst = col + ((c * kh + i) * kw + j) * ncols;
                const float *src = x + c * H * W;
                for (int64_t r = 0; r < rows; r++) {
                    int64_t ih = (r0 + r) * stride - pt + i;
                    float *d = dst + r * OW;
                    if (ih < 0 || ih >= H) {
                        memset(d, 0, (size_t)OW * sizeof *d);
                        continue;
                    }
                    const float *s = src + ih * W;
                    for (int64_t ow = 0; ow < OW; ow++) {
                        int64_t iw = ow * stride - pl + j;
                        d[ow] = (iw >= 0 && iw < W) ? s[iw] : 0.0f;
                    }
                }
            }
        }
    }
}

sd_status sd_cpu_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                        int stride, int pt, int pb, int pl, int pr, sd_error *err)
{
    (void)be;
    (void)pb;
    (void)pr;
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = w->shape[0];
    int kh = (int)w->shape[2], kw = (int)w->shape[3];
    int64_t OH = y->shape[2], OW = y->shape[3];
    int64_t K = C * kh * kw, P = OH * OW;
    const float *X = CF32(x), *Wt = CF32(w);
    float *Y = F32(y);
    int direct = kh == 1 && kw == 1 && stride == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
    int64_t rows_per_tile = OH;
    if (!direct && K * OW > 0 && (uint64_t)(K * OH * OW) > IM2COL_MAX_FLOATS) {
        rows_per_tile = (int64_t)(IM2COL_MAX_FLOATS / (uint64_t)(K * OW));
        if (rows_per_tile < 1)
            rows_per_tile = 1;
    }
    float *col = NULL;
    if (!direct) {
        col = malloc((size_t)(K * rows_per_tile * OW) * sizeof *col);
        if (!col)
            return sd_fail(err, SD_ERR_NOMEM, "conv2d: out of memory for a %lldx%lld column buffer", (long long)K,
                           (long long)(rows_per_tile * OW));
    }
    for (int64_t n = 0; n < B; n++) {
        const float *xn = X + n * C * H * W;
        float *yn = Y + n * O * P;
        if (direct) {
            sd_sgemm(0, O, P, C, 1.0f, Wt, C, xn, P, 0.0f, yn, P);
            continue;
        }
        for (int64_t r0 = 0; r0 < OH; r0 += rows_per_tile) {
            int64_t rows = OH - r0 < rows_per_tile ? OH - r0 : rows_per_tile;
            im2col_rows(col, xn, C, H, W, kh, kw, stride, pt, pl, OW, r0, rows);
            sd_sgemm(0, O, rows * OW, K, 1.0f, Wt, K, col, rows * OW, 0.0f, yn + r0 * OW, P);
        }
    }
    free(col);
    if (b) {
        const float *Bv = CF32(b);
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t n = 0; n < B; n++)
            for (int64_t o = 0; o < O; o++) {
                float *p = Y + (n * O + o) * P;
                for (int64_t i = 0; i < P; i++)
                    p[i] += Bv[o];
            }
    }
    return SD_OK;
}
