/* sgemm.c - see sgemm.h. The portable version blocks over N and K so a panel
 * of B stays in cache, and leaves the inner loop to the compiler's vectoriser;
 * it runs at a fraction of OpenBLAS' speed, which is enough for a reference. */
#include "kernels/cpu/sgemm.h"

#include <stdlib.h>
#include <string.h>

#ifndef SDXL_NO_BLAS
#include <cblas.h>

void sd_sgemm(int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A,
                (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

#else

#define NB 256
#define KB 256

void sd_sgemm(int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        for (int64_t j = 0; j < N; j++)
            c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    }
    for (int64_t n0 = 0; n0 < N; n0 += NB) {
        int64_t nb = N - n0 < NB ? N - n0 : NB;
        for (int64_t k0 = 0; k0 < K; k0 += KB) {
            int64_t kb = K - k0 < KB ? K - k0 : KB;
            /* pack the B panel as [kb][nb] */
            float *panel = malloc((size_t)(kb * nb) * sizeof *panel);
            if (!panel)
                abort(); /* a reference build only; out of memory here is fatal */
            for (int64_t k = 0; k < kb; k++)
                for (int64_t j = 0; j < nb; j++)
                    panel[k * nb + j] = transB ? B[(n0 + j) * ldb + k0 + k] : B[(k0 + k) * ldb + n0 + j];
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < M; i++) {
                float acc[NB];
                memset(acc, 0, sizeof acc);
                const float *a = A + i * lda + k0;
                for (int64_t k = 0; k < kb; k++) {
                    float av = a[k];
                    const float *p = panel + k * nb;
                    for (int64_t j = 0; j < nb; j++)
                        acc[j] += av * p[j];
                }
                float *c = C + i * ldc + n0;
                for (int64_t j = 0; j < nb; j++)
                    c[j] += alpha * acc[j];
            }
            free(panel);
        }
    }
}

#endif
