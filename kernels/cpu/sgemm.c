/* sgemm.c - see sgemm.h. The CPU backend's one matrix product, with results
 * that depend on nothing but the numbers: not on M (a batch of one or of
 * two), not on where a row sits in the batch, not on the thread count, not
 * on the CPU model or its vector width.
 *
 * The contract, per element: acc = 0; for k = 0 .. K-1: acc = fma(a[i][k],
 * b[k][j], acc), one fused multiply-add (exactly rounded, so the same bits
 * from an AVX-512 or AVX2 unit or from libm's fmaf on a CPU without one);
 * then c = alpha * acc (+ beta * c). Vector code only spreads that over j
 * (16 columns at a time), which changes no rounding, so every kernel below
 * gives the same bits, the remainder loops too.
 *
 * Why not OpenBLAS: its kernels differ by CPU (Haswell, SkylakeX, Zen pick
 * other summation orders and, for small products, other code paths), so the
 * same image came out 1 level apart on an AMD EPYC for a batch of one and of
 * two (a CFG pair against generate). OpenBLAS stays the peer in
 * bench-gemm_cpu. This file is built without sanitizers (as OpenBLAS was
 * never instrumented): the tests' ASan build would otherwise spend minutes
 * checking the loads of its inner loop. */
#include "kernels/cpu/sgemm.h"

#include <stdlib.h>
#include <string.h>

#include <immintrin.h>
#include <math.h>

#define NR 16  /* columns of a packed panel of op(B) */
#define MB 96  /* rows of A per parallel work item: a block of A stays in L2 across panels */

/* op(B) columns [j0, j0 + 16) as P[k * 16 + jj], zero past N */
static void pack_panel(float *P, int transB, const float *B, int64_t ldb, int64_t K, int64_t N, int64_t j0)
{
    int64_t w = N - j0 < NR ? N - j0 : NR;
    for (int64_t k = 0; k < K; k++) {
        float *p = P + k * NR;
        for (int64_t jj = 0; jj < w; jj++)
            p[jj] = transB ? B[(j0 + jj) * ldb + k] : B[k * ldb + j0 + jj];
        for (int64_t jj = w; jj < NR; jj++)
            p[jj] = 0.0f;
    }
}

/* R rows of A against one packed panel: out[r][0..16) = the fma chain over
 * k. One kernel per ISA; the same arithmetic in each. */
#define AVX512_TILE(R)                                                                                               \
    __attribute__((target("avx512f"))) static void tile##R##_avx512(const float *A, int64_t lda, const float *P,     \
                                                                     int64_t K, float *out, int carry)                \
    {                                                                                                                \
        __m512 acc[R];                                                                                               \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[r] =                                                \
            carry ? _mm512_loadu_ps(out + r * NR) : _mm512_setzero_ps();                                             \
        for (int64_t k = 0; k < K; k++) {                                                                            \
            __m512 b = _mm512_loadu_ps(P + k * NR);                                                                  \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                                      \
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(A[r * lda + k]), b, acc[r]);                                 \
        }                                                                                                            \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) _mm512_storeu_ps(out + r * NR, acc[r]);               \
    }
#define AVX2_TILE(R)                                                                                                 \
    __attribute__((target("avx2,fma"))) static void tile##R##_avx2(const float *A, int64_t lda, const float *P,      \
                                                                    int64_t K, float *out, int carry)                 \
    {                                                                                                                \
        __m256 lo[R], hi[R];                                                                                         \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                        \
            lo[r] = carry ? _mm256_loadu_ps(out + r * NR) : _mm256_setzero_ps();                                     \
            hi[r] = carry ? _mm256_loadu_ps(out + r * NR + 8) : _mm256_setzero_ps();                                 \
        }                                                                                                            \
        for (int64_t k = 0; k < K; k++) {                                                                            \
            __m256 b0 = _mm256_loadu_ps(P + k * NR), b1 = _mm256_loadu_ps(P + k * NR + 8);                            \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                    \
                __m256 a = _mm256_set1_ps(A[r * lda + k]);                                                           \
                lo[r] = _mm256_fmadd_ps(a, b0, lo[r]);                                                               \
                hi[r] = _mm256_fmadd_ps(a, b1, hi[r]);                                                               \
            }                                                                                                        \
        }                                                                                                            \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                                        \
            _mm256_storeu_ps(out + r * NR, lo[r]);                                                                   \
            _mm256_storeu_ps(out + r * NR + 8, hi[r]);                                                               \
        }                                                                                                            \
    }
AVX512_TILE(8)
AVX512_TILE(1)
AVX2_TILE(4)
AVX2_TILE(1)

/* any x86-64 CPU: libm's fmaf is exactly rounded, as the units above */
static void tile_scalar(const float *A, int64_t lda, const float *P, int64_t K, float *out, int carry, int R)
{
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NR; j++) {
            float acc = carry ? out[r * NR + j] : 0.0f;
            for (int64_t k = 0; k < K; k++)
                acc = fmaf(A[r * lda + k], P[k * NR + j], acc);
            out[r * NR + j] = acc;
        }
}
static void tile4_scalar(const float *A, int64_t lda, const float *P, int64_t K, float *out, int carry)
{
    tile_scalar(A, lda, P, K, out, carry, 4);
}
static void tile1_scalar(const float *A, int64_t lda, const float *P, int64_t K, float *out, int carry)
{
    tile_scalar(A, lda, P, K, out, carry, 1);
}

/* out[r * 16 + 0..16) = (carry ? out : 0) continued by the fma chain over
 * this stretch of k: a chain carried through memory between stretches is
 * the same chain (a float is stored exactly), so blocking k changes no bit */
typedef void (*tile_fn)(const float *, int64_t, const float *, int64_t, float *, int);

/* the widest kernels this CPU runs, and the big one's row count (the
 * results are the same whichever: only the speed differs).
 * SDXL_SGEMM_ISA=avx512|avx2|scalar picks a narrower one, so the suite can
 * check on one machine that every kernel gives the same bits. */
static tile_fn pick_tile(int *rows, tile_fn *one)
{
    __builtin_cpu_init();
    const char *want = getenv("SDXL_SGEMM_ISA");
    int avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want && !strcmp(want, "avx2"))
        avx512 = 0;
    else if (want && !strcmp(want, "scalar"))
        avx512 = avx2 = 0;
    if (avx512) {
        *rows = 8;
        *one = tile1_avx512;
        return tile8_avx512;
    }
    *rows = 4;
    if (avx2) {
        *one = tile1_avx2;
        return tile4_avx2;
    }
    *one = tile1_scalar;
    return tile4_scalar;
}

/* the packed panels, kept per thread across calls: packing weights for
 * every linear layer would otherwise fault in fresh pages each time */
static float *scratch(size_t n)
{
    static __thread float *buf;
    static __thread size_t cap;
    if (n > cap) {
        free(buf);
        buf = malloc(n * sizeof *buf);
        if (!buf)
            abort(); /* the reference backend: out of memory here is fatal */
        cap = n;
    }
    return buf;
}

#define KC 256 /* k per stretch: a panel's stretch (16 KiB) stays in L1 across a block's rows */
#define PG 4   /* panels per work item (their accumulators: 24 KiB of stack) */

void sd_sgemm(int transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    int64_t panels = (N + NR - 1) / NR;
    /* every panel packed contiguous: reading B[K, N] in place strides ldb
     * floats per k (16 KiB for a conv's 64x64 map), which thrashes L1 sets
     * and the TLB (measured 2-4x slower) */
    float *P = scratch((size_t)(panels * K * NR));
    int rows;
    tile_fn one, tile = pick_tile(&rows, &one);
    int64_t blocks = (M + MB - 1) / MB;
    /* one parallel region per product, and none for small ones: the results
     * do not depend on the thread count, and the tiny models' thousands of
     * small products spent more on waking threads than on arithmetic */
#pragma omp parallel if ((double)M * (double)N * (double)K > 4e6)
    {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < panels; p++)
            pack_panel(P + p * K * NR, transB, B, ldb, K, N, p * NR);
        /* a work item: a block of rows against a group of panels, their
         * chains kept in acc while k goes by in stretches (each stretch of
         * A serves the group's panels from L2), then stored once */
        int64_t groups = (panels + PG - 1) / PG;
#pragma omp for collapse(2) schedule(static)
        for (int64_t blk = 0; blk < blocks; blk++)
            for (int64_t grp = 0; grp < groups; grp++) {
                float acc[PG][MB * NR];
                int64_t i0 = blk * MB, i1 = i0 + MB < M ? i0 + MB : M;
                int64_t p0 = grp * PG, p1 = p0 + PG < panels ? p0 + PG : panels;
                for (int64_t k0 = 0; k0 < K; k0 += KC) {
                    int64_t kc = K - k0 < KC ? K - k0 : KC;
                    for (int64_t p = p0; p < p1; p++)
                        for (int64_t i = i0; i < i1;) {
                            int r = i + rows <= i1 ? rows : 1;
                            (r == rows ? tile : one)(A + i * lda + k0, lda, P + (p * K + k0) * NR, kc,
                                                     acc[p - p0] + (i - i0) * NR, k0 > 0);
                            i += r;
                        }
                }
                for (int64_t p = p0; p < p1; p++) {
                    int64_t j0 = p * NR, w = N - j0 < NR ? N - j0 : NR;
                    for (int64_t i = i0; i < i1; i++)
                        for (int64_t j = 0; j < w; j++) {
                            float t = acc[p - p0][(i - i0) * NR + j], v = alpha == 1.0f ? t : alpha * t;
                            float *c = C + i * ldc + j0 + j;
                            *c = beta == 0.0f ? v : v + beta * *c;
                        }
                }
            }
    }
}
