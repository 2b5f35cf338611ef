/* sgemm.h - the one single-precision matrix product the CPU backend uses:
 * row-major C[M,N] = alpha * A[M,K] op(B) + beta * C, with op(B) = B[K,N] or
 * B[N,K]^T. Deterministic by construction (see sgemm.c): each element is a
 * sum over k in order, the same bits for any M, thread count and x86-64 CPU. */
#ifndef SDXL_KERNELS_CPU_SGEMM_H
#define SDXL_KERNELS_CPU_SGEMM_H

#include <stdint.h>

void sd_sgemm(int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

#endif
