/* test_sgemm.c - the CPU backend's GEMM (kernels/cpu/sgemm.c) is
 * deterministic by construction: each element the fma chain over k in
 * order. Checked bit for bit here against a scalar chain written in the
 * test, for every row of a product whatever M, the row's position, the
 * transposition, the kernel (SDXL_SGEMM_ISA) and the thread count. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/sgemm.h"

static void fill(float *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
}

/* the contract, written independently: acc = fmaf(a, b, acc) for k in order */
static float chain(const float *a, const float *B, int64_t ldb, int transB, int64_t j, int64_t K)
{
    float acc = 0.0f;
    for (int64_t k = 0; k < K; k++)
        acc = fmaf(a[k], transB ? B[j * ldb + k] : B[k * ldb + j], acc);
    return acc;
}

static void check_all(const char *isa, int threads)
{
    if (isa)
        setenv("SDXL_SGEMM_ISA", isa, 1);
    else
        unsetenv("SDXL_SGEMM_ISA");
    omp_set_num_threads(threads);
    /* K over one stretch of 256 (carried chains), N not a multiple of 16 */
    enum { M = 37, N = 45, K = 600 };
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *Bt = malloc(sizeof(float) * N * K);
    float *C = malloc(sizeof(float) * M * N), *C1 = malloc(sizeof(float) * N);
    fill(A, (size_t)M * K, 1);
    fill(B, (size_t)K * N, 2);
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++)
            Bt[j * K + k] = B[k * N + j];
    for (int transB = 0; transB < 2; transB++) {
        const float *Bm = transB ? Bt : B;
        int64_t ldb = transB ? K : N;
        sd_sgemm(transB, M, N, K, 1.0f, A, K, Bm, ldb, 0.0f, C, N);
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                float want = chain(A + i * K, Bm, ldb, transB, j, K);
                cr_assert(memcmp(&C[i * N + j], &want, sizeof want) == 0,
                          "isa %s, %d threads, transB %d: C[%d][%d] = %a, the fma chain gives %a", isa ? isa : "best",
                          threads, transB, i, j, C[i * N + j], want);
            }
            /* the same row alone (M = 1): the same bits */
            sd_sgemm(transB, 1, N, K, 1.0f, A + i * K, K, Bm, ldb, 0.0f, C1, N);
            cr_assert(memcmp(C1, C + i * N, sizeof(float) * N) == 0, "row %d alone differs from row %d of %d", i, i, M);
        }
    }
    free(A);
    free(B);
    free(Bt);
    free(C);
    free(C1);
    unsetenv("SDXL_SGEMM_ISA");
}

Test(sgemm, every_element_is_the_fma_chain_whatever_the_kernel_threads_or_batch)
{
    const char *isas[] = {NULL, "avx2", "scalar"};
    for (int t = 1; t <= 2; t++)
        for (int k = 0; k < 3; k++)
            check_all(isas[k], t);
}

Test(sgemm, alpha_and_beta)
{
    float A[2] = {1.5f, -2.0f}, B[2] = {4.0f, 0.25f}, C[1] = {10.0f};
    sd_sgemm(0, 1, 1, 2, 2.0f, A, 2, B, 1, 0.5f, C, 1);
    cr_assert_float_eq(C[0], 2.0f * (1.5f * 4.0f - 2.0f * 0.25f) + 5.0f, 0); /* exact in binary */
}
