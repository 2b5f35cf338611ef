/* bench gemm_cpu - the CPU backend's matrix products (sd_op_linear, and
 * sd_op_conv2d as im2col + our deterministic GEMM, kernels/cpu/sgemm.c)
 * against OpenBLAS' own sgemm on the same shapes, measured in the same run:
 * the ratio says what determinism across CPUs and batch sizes costs on this
 * machine (OpenBLAS' kernels are faster, and give other bits on other CPUs).
 * Shapes are SDXL's at a 64x64 latent (512x512 image). Without OpenBLAS
 * (BLAS=none) the peer column is our own sgemm. */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cpu/sgemm.h"
#include "kernels/ops.h"
#include "tests/bench/bench_util.h"

static void fill(float *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
}

#ifndef SDXL_NO_BLAS
#include <cblas.h>
#define PEER "OpenBLAS"
static void peer_sgemm(int transB, int M, int N, int K, const float *A, const float *B, int ldb, float *C)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, K, B, ldb, 0.0f,
                C, N);
}
#else
#define PEER "our sgemm"
static void peer_sgemm(int transB, int M, int N, int K, const float *A, const float *B, int ldb, float *C)
{
    sd_sgemm(transB, M, N, K, 1.0f, A, K, B, ldb, 0.0f, C, N);
}
#endif

static double time_sgemm(int M, int N, int K, const float *A, const float *B, float *C, int reps)
{
    peer_sgemm(1, M, N, K, A, B, K, C);
    double t0 = sd_now_s();
    for (int r = 0; r < reps; r++)
        peer_sgemm(1, M, N, K, A, B, K, C);
    return (sd_now_s() - t0) / reps;
}

int main(void)
{
    sd_backend *be;
    sd_error err = {0};
    if (sd_backend_create(&be, "cpu", SD_DTYPE_F32, &err) != SD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    static const struct {
        const char *what;
        int M, N, K;
    } lin[] = {
        {"attn q/k/v 32x32 tokens, 640", 1024, 640, 640},
        {"GEGLU in 32x32 tokens, 640->5120", 1024, 5120, 640},
        {"GEGLU out 16x16 tokens, 5120->1280", 256, 1280, 5120},
        {"CLIP-bigG mlp 77 tokens, 1280->5120", 77, 5120, 1280},
    };
    printf("%-40s %12s %12s %8s\n", "linear (bias fused)", "ours GF/s", PEER " GF/s", "ratio");
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
        int M = lin[i].M, N = lin[i].N, K = lin[i].K;
        int64_t xs[2] = {M, K}, ws[2] = {N, K}, bs[1] = {N}, ys[2] = {M, N};
        sd_tensor x, w, b, y;
        sd_tensor_alloc(be, &x, 2, xs, &err);
        sd_tensor_alloc(be, &w, 2, ws, &err);
        sd_tensor_alloc(be, &b, 1, bs, &err);
        sd_tensor_alloc(be, &y, 2, ys, &err);
        fill(x.data, (size_t)M * K, 1);
        fill(w.data, (size_t)N * K, 2);
        fill(b.data, (size_t)N, 3);
        int reps = 5;
        sd_op_linear(&y, &x, &w, &b, SD_ACT_NONE, &err);
        double t0 = sd_now_s();
        for (int r = 0; r < reps; r++)
            sd_op_linear(&y, &x, &w, &b, SD_ACT_NONE, &err);
        double ours = (sd_now_s() - t0) / reps;
        double ref = time_sgemm(M, N, K, x.data, w.data, y.data, reps);
        double fl = 2.0 * M * N * K;
        printf("%-40s %12.1f %12.1f %8.2f\n", lin[i].what, fl / ours * 1e-9, fl / ref * 1e-9, ref / ours);
        sd_tensor_free(&x);
        sd_tensor_free(&w);
        sd_tensor_free(&b);
        sd_tensor_free(&y);
    }
    static const struct {
        const char *what;
        int C, O, H;
    } conv[] = {
        {"conv3x3 320->320 at 64x64", 320, 320, 64},
        {"conv3x3 640->640 at 32x32", 640, 640, 32},
        {"conv3x3 1280->1280 at 16x16", 1280, 1280, 16},
    };
    printf("%-40s %12s %12s %8s\n", "conv2d (im2col + sgemm)", "ours GF/s", PEER " GF/s", "ratio");
    for (size_t i = 0; i < sizeof conv / sizeof conv[0]; i++) {
        int C = conv[i].C, O = conv[i].O, H = conv[i].H, P = H * H, K = C * 9;
        int64_t xs[4] = {1, C, H, H}, ws[4] = {O, C, 3, 3}, bs[1] = {O}, ys[4] = {1, O, H, H};
        sd_tensor x, w, b, y;
        sd_tensor_alloc(be, &x, 4, xs, &err);
        sd_tensor_alloc(be, &w, 4, ws, &err);
        sd_tensor_alloc(be, &b, 1, bs, &err);
        sd_tensor_alloc(be, &y, 4, ys, &err);
        fill(x.data, (size_t)C * P, 4);
        fill(w.data, (size_t)O * K, 5);
        fill(b.data, (size_t)O, 6);
        int reps = 3;
        sd_op_conv2d(&y, &x, &w, &b, 1, 1, &err);
        double t0 = sd_now_s();
        for (int r = 0; r < reps; r++)
            sd_op_conv2d(&y, &x, &w, &b, 1, 1, &err);
        double ours = (sd_now_s() - t0) / reps;
        /* the same product as a plain GEMM: [O, K] x [K, P] */
        float *A = malloc((size_t)O * K * sizeof *A), *Bm = malloc((size_t)K * P * sizeof *Bm),
              *Cm = malloc((size_t)O * P * sizeof *Cm);
        fill(A, (size_t)O * K, 7);
        fill(Bm, (size_t)K * P, 8);
        peer_sgemm(0, O, P, K, A, Bm, P, Cm);
        t0 = sd_now_s();
        for (int r = 0; r < reps; r++)
            peer_sgemm(0, O, P, K, A, Bm, P, Cm);
        double ref = (sd_now_s() - t0) / reps;
        double fl = 2.0 * O * P * K;
        printf("%-40s %12.1f %12.1f %8.2f\n", conv[i].what, fl / ours * 1e-9, fl / ref * 1e-9, ref / ours);
        free(A);
        free(Bm);
        free(Cm);
        sd_tensor_free(&x);
        sd_tensor_free(&w);
        sd_tensor_free(&b);
        sd_tensor_free(&y);
    }
    printf("(ratio = " PEER " time / ours: below 1 is what our deterministic GEMM costs against it)\n");
    sd_backend_free(be);
    return 0;
}
