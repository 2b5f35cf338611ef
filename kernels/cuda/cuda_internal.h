/* cuda_internal.h - shared pieces of the CUDA backend: its state, the
 * element types (fp16 / bf16 / fp32 storage, fp32 arithmetic), and the launchers
 * each .cu file provides. Private to kernels/cuda/. */
#ifndef SDXL_KERNELS_CUDA_INTERNAL_H
#define SDXL_KERNELS_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/backend_impl.h"
#include "kernels/cuda/cuda_check.h"

/* One cached device block. */
typedef struct {
    void *ptr;
    size_t size;
    int in_use;
} cuda_block;

typedef struct {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_size;
    /* caching allocator: blocks are reused by size, never returned to the
     * driver until the backend is destroyed, so a denoising loop that
     * allocates the same sizes each step makes no cudaMalloc after the first */
    cuda_block *blocks;
    int nblocks, capblocks;
    size_t bytes_reserved, bytes_in_use, peak_in_use;
    unsigned long long mallocs; /* cudaMalloc calls, for tests */
    /* captured graphs alive: they hold the addresses of the scratch blocks
     * they were captured with, so free blocks are never given back then */
    int live_graphs;
} cuda_state;

static inline cuda_state *cuda_st(sd_backend *be)
{
    return (cuda_state *)be->impl;
}

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
__device__ __forceinline__ float ld_f(const __half *p) { return __half2float(*p); }
__device__ __forceinline__ float ld_f(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ float ld_f(const float *p) { return *p; }

/* Scratch memory from the caching allocator. */
sd_status cuda_scratch(sd_backend *be, size_t bytes, void **ptr, sd_error *err);
void cuda_scratch_free(sd_backend *be, void *ptr);

/* Grid size for n elements at 256 threads, capped for grid-stride loops. */
static inline unsigned cuda_blocks(size_t n)
{
    size_t b = (n + 255) / 256;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

/* cuBLASLt: D (col-major m x n, ld ldd) = alpha op(A) op(B) [+ bias over
 * rows], A and B in the backend dtype, D in it too or in fp32 (d_f32). */
sd_status cuda_lt_matmul(sd_backend *be, int transA, int transB, int64_t m, int64_t n, int64_t k, const void *A,
                         int64_t lda, int64_t strideA, const void *B, int64_t ldb, int64_t strideB, void *D,
                         int64_t ldd, int64_t strideD, int batch, const void *bias, float alpha, int d_f32,
                         sd_error *err);

/* Grid for row- or plane-wise kernels: x blocks (of 256 threads) cover a row
 * of n elements, one row of blocks per plane on y (kernels loop when planes
 * exceed the y limit). Keeps per-element index math 32-bit and divide-free. */
static inline dim3 cuda_plane_grid(int64_t n, int64_t planes)
{
    int64_t bx = (n + 255) / 256;
    return dim3((unsigned)(bx > 1024 ? 1024 : bx < 1 ? 1 : bx),
                (unsigned)(planes > 65535 ? 65535 : planes < 1 ? 1 : planes));
}

/* Launchers (all asynchronous on the backend's stream). */
sd_status cuda_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                      sd_act act, int64_t M, int64_t N, int64_t K, sd_error *err);
sd_status cuda_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                      int stride, int pt, int pb, int pl, int pr, sd_error *err);
sd_status cuda_attention(sd_backend *be, sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                         const sd_tensor *key_mask, int heads, int causal, sd_error *err);
sd_status cuda_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                          const sd_tensor *beta, int groups, float eps, int silu, sd_error *err);
sd_status cuda_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                          const sd_tensor *beta, float eps, sd_error *err);
sd_status cuda_act(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act, sd_error *err);
sd_status cuda_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
sd_status cuda_upsample(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
sd_status cuda_add(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, sd_error *err);
sd_status cuda_add_channel_bias(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *bias,
                                sd_error *err);
sd_status cuda_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float s, sd_error *err);
sd_status cuda_concat(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, int axis,
                      sd_error *err);
sd_status cuda_nchw_to_nlc(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
sd_status cuda_nlc_to_nchw(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
sd_status cuda_embedding(sd_backend *be, sd_tensor *y, const int64_t *ids, const sd_tensor *table,
                         const sd_tensor *pos, sd_error *err);
sd_status cuda_gather_rows(sd_backend *be, sd_tensor *y, const sd_tensor *x, const int64_t *rows, sd_error *err);
sd_status cuda_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
/* y[b, c, :] += bias[c] for a [B, C, P] tensor (conv bias) */
sd_status cuda_add_bias_nc(sd_backend *be, sd_tensor *y, const sd_tensor *bias, sd_error *err);

/* Dispatches a templated launch on the backend dtype. f32 serves the VAE
 * where diffusers upcasts it (force_upcast) and --dtype f32. */
#define CUDA_DISPATCH(be, FN, ...)                                                                        \
    ((be)->dtype == SD_DTYPE_F32    ? FN<float>(__VA_ARGS__)                                              \
     : (be)->dtype == SD_DTYPE_BF16 ? FN<__nv_bfloat16>(__VA_ARGS__)                                      \
                                    : FN<__half>(__VA_ARGS__))

#endif
