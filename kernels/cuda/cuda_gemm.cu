// cuda_gemm.cu - matrix products on the tensor cores through cuBLASLt:
// linear layers (bias fused as the matmul epilogue) and convolutions as
// im2col + one strided-batched GEMM per call (the column buffer comes from
// the caching allocator; an implicit-GEMM kernel that skips it is the next
// step for the 3x3 convolutions). fp16/bf16 in on the tensor cores, fp32
// accumulation; fp32 in (the upcast VAE) as plain fp32 GEMMs: CUBLAS_COMPUTE_32F
// never rounds inputs to TF32, so the products are what diffusers' fp32 VAE
// computes on the CPU.
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.h"

/* the most a convolution's column buffer takes (see cuda_conv2d) */
#define COL_BYTES ((size_t)256 << 20)

static cudaDataType_t cuda_dt(sd_dtype d)
{
    return d == SD_DTYPE_F32 ? CUDA_R_32F : d == SD_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

#define LT_TRY(call, what)                                                                          \
    do {                                                                                            \
        cublasStatus_t lt_s_ = (call);                                                              \
        if (lt_s_ != CUBLAS_STATUS_SUCCESS) {                                                       \
            st = sd_fail(err, SD_ERR_BACKEND, "cublasLt: %s failed (status %d) for %s", what,       \
                         (int)lt_s_, shape);                                                        \
            goto done;                                                                              \
        }                                                                                           \
    } while (0)

/* cuBLASLt's heuristic query costs tens of microseconds of host time; a
 * UNet step asks for the same few dozen shapes hundreds of times, so the
 * chosen algorithm is cached per shape. */
typedef struct {
    int64_t key[9];
    cublasLtMatmulAlgo_t algo;
    int used;
} algo_entry;
#define ALGO_CACHE 1024
static algo_entry algo_cache[ALGO_CACHE];

static algo_entry *algo_slot(const int64_t key[9], int *hit)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 9; i++)
        h = (h ^ (uint64_t)key[i]) * 1099511628211ull;
    for (int probe = 0; probe < ALGO_CACHE; probe++) {
        algo_entry *e = &algo_cache[(h + (uint64_t)probe) % ALGO_CACHE];
        if (!e->used) {
            *hit = 0;
            return e;
        }
        if (!memcmp(e->key, key, sizeof e->key)) {
            *hit = 1;
            return e;
        }
    }
    *hit = 0;
    return NULL; /* full: no caching */
}

/* D (col-major m x n, ld m) = op(A) * op(B) [+ bias over rows], batched.
 * A: col-major, op(A) is m x k. B: col-major, op(B) is k x n. */
sd_status cuda_lt_matmul(sd_backend *be, int transA, int transB, int64_t m, int64_t n, int64_t k, const void *A,
                         int64_t lda, int64_t strideA, const void *B, int64_t ldb, int64_t strideB, void *D,
                         int64_t ldd, int64_t strideD, int batch, const void *bias, float alpha, int d_f32,
                         sd_error *err)
{
    cuda_state *s = cuda_st(be);
    cudaDataType_t dt = cuda_dt(be->dtype), ddt = d_f32 ? CUDA_R_32F : dt;
    char shape[160];
    snprintf(shape, sizeof shape, "m=%lld n=%lld k=%lld batch=%d", (long long)m, (long long)n, (long long)k, batch);
    sd_status st = SD_OK;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t ta = transA ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    float beta = 0.0f;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    LT_TRY(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA");
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB");
    if (bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "EPILOGUE");
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias), "BIAS");
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &dt, sizeof dt), "BIAS type");
    }
    LT_TRY(cublasLtMatrixLayoutCreate(&la, dt, transA ? k : m, transA ? m : k, lda), "layout A");
    LT_TRY(cublasLtMatrixLayoutCreate(&lb, dt, transB ? n : k, transB ? k : n, ldb), "layout B");
    LT_TRY(cublasLtMatrixLayoutCreate(&ld, ddt, m, n, ldd), "layout D");
    if (batch > 1) {
        cublasLtMatrixLayout_t ls[3] = {la, lb, ld};
        int64_t strides[3] = {strideA, strideB, strideD};
        for (int i = 0; i < 3; i++) {
            LT_TRY(cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch),
                   "batch count");
            LT_TRY(cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i],
                                                    sizeof strides[i]),
                   "batch stride");
        }
    }
    {
        int64_t key[9] = {transA * 2 + transB + (bias ? 4 : 0) + (d_f32 ? 8 : 0) + (int64_t)dt * 16, m, n, k, lda, ldb,
                          ldd, batch,
                          (int64_t)(((uintptr_t)A | (uintptr_t)B | (uintptr_t)D) & 15)};
        int hit = 0;
        algo_entry *slot = algo_slot(key, &hit);
        if (hit) {
            heur.algo = slot->algo;
            found = 1;
        } else {
            LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
            LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                        &s->workspace_size, sizeof s->workspace_size),
                   "workspace");
            LT_TRY(cublasLtMatmulAlgoGetHeuristic(s->lt, op, la, lb, ld, ld, pref, 1, &heur, &found),
                   "AlgoGetHeuristic");
            if (!found) {
                st = sd_fail(err, SD_ERR_BACKEND, "cublasLt: no algorithm for %s", shape);
                goto done;
            }
            if (slot) {
                memcpy(slot->key, key, sizeof key);
                slot->algo = heur.algo;
                slot->used = 1;
            }
        }
    }
    LT_TRY(cublasLtMatmul(s->lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &heur.algo, s->workspace,
                          s->workspace_size, s->stream),
           "Matmul");
done:
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (la)
        cublasLtMatrixLayoutDestroy(la);
    if (lb)
        cublasLtMatrixLayoutDestroy(lb);
    if (ld)
        cublasLtMatrixLayoutDestroy(ld);
    if (op)
        cublasLtMatmulDescDestroy(op);
    return st;
}

sd_status cuda_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                      sd_act act, int64_t M, int64_t N, int64_t K, sd_error *err)
{
    if (M == 0 || N == 0)
        return SD_OK;
    /* row-major Y[M,N] = X[M,K] W[N,K]^T  <=>  col-major Y^T (N x M) = W^T' ... :
     * A = W as col-major K x N (transposed -> N x K), B = X as col-major K x M */
    sd_status st = cuda_lt_matmul(be, 1, 0, N, M, K, w->data, K, 0, x->data, K, 0, y->data, N, 0, 1,
                                  b ? b->data : NULL, 1.0f, 0, err);
    if (st != SD_OK)
        return sd_error_prefix(err, st, "linear [%lld x %lld] x [%lld x %lld]^T: ", (long long)M, (long long)K,
                               (long long)N, (long long)K);
    if (act != SD_ACT_NONE)
        return cuda_act(be, y, y, act, err);
    return SD_OK;
}

/* col[(c*kh + i)*kw + j][q] for one image and the np output pixels from p0
 * on (q = p - p0): one thread per (channel, output pixel) computes its
 * coordinates once and writes the kh*kw taps, each write coalesced across
 * neighbouring pixels. */
template <typename T>
__global__ void im2col_kernel(T *__restrict__ col, const T *__restrict__ x, int C, int H, int W, int kh, int kw,
                              int stride, int pt, int pl, int OW, int p0, int np)
{
    int64_t total = (int64_t)C * np;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        int q = (int)(idx % np), c = (int)(idx / np);
        int p = p0 + q, oh = p / OW, ow = p - oh * OW;
        const T *xc = x + (int64_t)c * H * W;
        T *dst = col + (int64_t)c * kh * kw * np + q;
        for (int i = 0; i < kh; i++) {
            int ih = oh * stride - pt + i;
            for (int j = 0; j < kw; j++) {
                int iw = ow * stride - pl + j;
                T v = from_f<T>(0.0f);
                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                    v = xc[ih * W + iw];
                dst[(int64_t)(i * kw + j) * np] = v;
            }
        }
    }
}

/* one row of blocks per (batch, channel) plane: no 64-bit divisions */
template <typename T> __global__ void add_bias_nc_kernel(T *y, const T *bias, int C, int P, int planes)
{
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        float bv = ld_f(&bias[plane % C]);
        T *yp = y + (size_t)plane * P;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < P; i += gridDim.x * blockDim.x)
            yp[i] = from_f<T>(ld_f(&yp[i]) + bv);
    }
}

template <typename T> static sd_status add_bias_nc_t(sd_backend *be, sd_tensor *y, const sd_tensor *bias, sd_error *err)
{
    int64_t C = y->shape[1], P = sd_tensor_numel(y) / (y->shape[0] * C), planes = y->shape[0] * C;
    add_bias_nc_kernel<T><<<cuda_plane_grid(P, planes), 256, 0, cuda_st(be)->stream>>>(
        (T *)y->data, (const T *)bias->data, (int)C, (int)P, (int)planes);
    SD_CUDA_LAUNCH_CHECK(err, "conv bias");
    return SD_OK;
}

sd_status cuda_add_bias_nc(sd_backend *be, sd_tensor *y, const sd_tensor *bias, sd_error *err)
{
    return CUDA_DISPATCH(be, add_bias_nc_t, be, y, bias, err);
}

/* the column buffer of one image, in the backend's element type */
template <typename T>
static sd_status im2col_t(sd_backend *be, void *col, const void *x, int C, int H, int W, int kh, int kw, int stride,
                          int pt, int pl, int OW, int p0, int np, sd_error *err)
{
    im2col_kernel<T><<<cuda_blocks((size_t)C * np), 256, 0, cuda_st(be)->stream>>>(
        (T *)col, (const T *)x, C, H, W, kh, kw, stride, pt, pl, OW, p0, np);
    SD_CUDA_LAUNCH_CHECK(err, "im2col");
    return SD_OK;
}

sd_status cuda_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                      int stride, int pt, int pb, int pl, int pr, sd_error *err)
{
    (void)pb;
    (void)pr;
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    int64_t OH = y->shape[2], OW = y->shape[3], P = OH * OW, K = C * kh * kw;
    size_t es = sd_dtype_size(be->dtype);
    char what[160];
    snprintf(what, sizeof what, "conv2d x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] stride %d: ", (long long)B,
             (long long)C, (long long)H, (long long)W, (long long)O, (long long)C, (long long)kh, (long long)kw, stride);
    sd_status st = SD_OK;
    int direct = kh == 1 && kw == 1 && stride == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
    if (direct) {
        /* Y[b] (O x P row-major) = W (O x C) X[b] (C x P): col-major Y^T = X^T W^T */
        for (int64_t n = 0; n < B && st == SD_OK; n++)
            st = cuda_lt_matmul(be, 0, 0, P, O, C, (const char *)x->data + n * C * P * (int64_t)es, P, 0, w->data, C, 0,
                           (char *)y->data + n * O * P * (int64_t)es, P, 0, 1, NULL, 1.0f, 0, err);
    } else {
        /* one image at a time: the weights are shared, and cuBLASLt's batch
         * strides cannot broadcast them; and within an image, bands of
         * output pixels whose column buffer fits COL_BYTES (the VAE's last
         * level at 1024x1024 would need K x P = 1152 x 1M values, 4.5 GiB in
         * f32); bands are multiples of 256 pixels, so every band's output
         * keeps the 16-byte alignment cuBLASLt prefers */
        int64_t np = (int64_t)(COL_BYTES / ((size_t)K * es)) / 256 * 256;
        np = np < 256 ? 256 : np > P ? P : np;
        void *col = NULL;
        st = cuda_scratch(be, (size_t)(K * np) * es, &col, err);
        for (int64_t n = 0; n < B && st == SD_OK; n++) {
            const char *xb = (const char *)x->data + n * C * H * W * (int64_t)es;
            char *yb = (char *)y->data + n * O * P * (int64_t)es;
            for (int64_t p0 = 0; p0 < P && st == SD_OK; p0 += np) {
                int64_t nb = P - p0 < np ? P - p0 : np;
                st = CUDA_DISPATCH(be, im2col_t, be, col, xb, (int)C, (int)H, (int)W, (int)kh, (int)kw, stride, pt,
                                   pl, (int)OW, (int)p0, (int)nb, err);
                /* Y[n][:, band] (O x nb, row stride P) = W (O x K) col (K x nb):
                 * col-major Y^T band (nb x O, ld P) = col^T W^T */
                if (st == SD_OK)
                    st = cuda_lt_matmul(be, 0, 0, nb, O, K, col, nb, 0, w->data, K, 0, yb + p0 * (int64_t)es, P, 0, 1,
                                        NULL, 1.0f, 0, err);
            }
        }
        if (col)
            cuda_scratch_free(be, col);
    }
    if (st == SD_OK && b)
        st = cuda_add_bias_nc(be, y, b, err);
    if (st != SD_OK)
        st = sd_error_prefix(err, st, "%s", what);
    return st;
}
