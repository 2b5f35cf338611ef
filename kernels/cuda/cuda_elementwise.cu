// cuda_elementwise.cu - the memory-bound operations: activations, GEGLU,
// residual adds, the time-embedding channel bias, scaling, concatenation,
// NCHW <-> [B, HW, C] transposes (through shared-memory tiles so both sides
// are coalesced), nearest upsampling, embedding lookup and row gathers.
#include "kernels/cuda/cuda_internal.h"

#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float act_f(float x, int act)
{
    switch (act) {
    case SD_ACT_SILU:
        return x / (1.0f + __expf(-x));
    case SD_ACT_GELU:
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case SD_ACT_QUICK_GELU:
        return x / (1.0f + __expf(-1.702f * x));
    default:
        return x;
    }
}

static cudaStream_t stream_of(sd_backend *be)
{
    return cuda_st(be)->stream;
}


#define LAUNCH_CHECK(what)                                                                \
    do {                                                                                  \
        cudaError_t e_ = cudaGetLastError();                                              \
        if (e_ != cudaSuccess)                                                            \
            return sd_fail(err, SD_ERR_BACKEND, "cuda: %s: %s", what, cudaGetErrorString(e_)); \
        return SD_OK;                                                                     \
    } while (0)

template <typename T> __global__ void act_kernel(T *y, const T *x, int64_t n, int act)
{
    GRID_STRIDE(i, n) y[i] = from_f<T>(act_f(ld_f(&x[i]), act));
}

template <typename T> static sd_status act_t(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act, sd_error *err)
{
    int64_t n = sd_tensor_numel(x);
    act_kernel<T><<<cuda_blocks(n), 256, 0, stream_of(be)>>>((T *)y->data, (const T *)x->data, n, (int)act);
    LAUNCH_CHECK("activation");
}

sd_status cuda_act(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act, sd_error *err)
{
    return CUDA_DISPATCH(be, act_t, be, y, x, act, err);
}

/* rows on the grid's y axis (and a y-stride loop), columns on x */
template <typename T> __global__ void geglu_kernel(T *y, const T *x, int N, int64_t rows)
{
    for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
        const T *h = x + row * 2 * N;
        T *yr = y + row * N;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < N; j += gridDim.x * blockDim.x)
            yr[j] = from_f<T>(ld_f(&h[j]) * act_f(ld_f(&h[N + j]), SD_ACT_GELU));
    }
}

template <typename T> static sd_status geglu_t(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    int64_t N = y->shape[y->ndim - 1], rows = sd_tensor_numel(y) / N;
    geglu_kernel<T><<<cuda_plane_grid(N, rows), 256, 0, stream_of(be)>>>((T *)y->data, (const T *)x->data, (int)N, rows);
    LAUNCH_CHECK("geglu");
}

sd_status cuda_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    return CUDA_DISPATCH(be, geglu_t, be, y, x, err);
}

/* one row of blocks per plane; 32-bit index math inside a plane */
template <typename T>
__global__ void upsample_kernel(T *y, const T *x, int64_t NC, int H, int W, int OH, int OW)
{
    for (int64_t c = blockIdx.y; c < NC; c += gridDim.y) {
        const T *xp = x + c * H * W;
        T *yp = y + c * OH * OW;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < OH * OW; i += gridDim.x * blockDim.x) {
            int oh = i / OW, ow = i - oh * OW;
            yp[i] = xp[(int)((int64_t)oh * H / OH) * W + (int)((int64_t)ow * W / OW)];
        }
    }
}

template <typename T> static sd_status upsample_t(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    int64_t NC = x->shape[0] * x->shape[1];
    upsample_kernel<T><<<cuda_plane_grid(y->shape[2] * y->shape[3], NC), 256, 0, stream_of(be)>>>(
        (T *)y->data, (const T *)x->data, NC, (int)x->shape[2], (int)x->shape[3], (int)y->shape[2],
        (int)y->shape[3]);
    LAUNCH_CHECK("upsample");
}

sd_status cuda_upsample(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    return CUDA_DISPATCH(be, upsample_t, be, y, x, err);
}

template <typename T> __global__ void add_kernel(T *y, const T *a, const T *b, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = from_f<T>(ld_f(&a[i]) + ld_f(&b[i]));
}

template <typename T>
static sd_status add_t(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, sd_error *err)
{
    int64_t n = sd_tensor_numel(y);
    add_kernel<T><<<cuda_blocks(n), 256, 0, stream_of(be)>>>((T *)y->data, (const T *)a->data, (const T *)b->data, n);
    LAUNCH_CHECK("add");
}

sd_status cuda_add(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, sd_error *err)
{
    return CUDA_DISPATCH(be, add_t, be, y, a, b, err);
}

/* one row of blocks per (batch, channel) plane: no 64-bit divisions */
template <typename T> __global__ void channel_bias_kernel(T *y, const T *x, const T *bias, int HW, int planes)
{
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        float bv = ld_f(&bias[plane]);
        const T *xp = x + (size_t)plane * HW;
        T *yp = y + (size_t)plane * HW;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x)
            yp[i] = from_f<T>(ld_f(&xp[i]) + bv);
    }
}



template <typename T>
static sd_status channel_bias_t(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *bias,
                                sd_error *err)
{
    int64_t HW = x->shape[2] * x->shape[3], planes = x->shape[0] * x->shape[1];
    channel_bias_kernel<T><<<cuda_plane_grid(HW, planes), 256, 0, stream_of(be)>>>(
        (T *)y->data, (const T *)x->data, (const T *)bias->data, (int)HW, (int)planes);
    LAUNCH_CHECK("add_channel_bias");
}

sd_status cuda_add_channel_bias(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *bias,
                                sd_error *err)
{
    return CUDA_DISPATCH(be, channel_bias_t, be, y, x, bias, err);
}

template <typename T> __global__ void scale_kernel(T *y, const T *x, float s, int64_t n)
{
    GRID_STRIDE(i, n) y[i] = from_f<T>(ld_f(&x[i]) * s);
}

template <typename T> static sd_status scale_t(sd_backend *be, sd_tensor *y, const sd_tensor *x, float s, sd_error *err)
{
    int64_t n = sd_tensor_numel(y);
    scale_kernel<T><<<cuda_blocks(n), 256, 0, stream_of(be)>>>((T *)y->data, (const T *)x->data, s, n);
    LAUNCH_CHECK("scale");
}

sd_status cuda_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float s, sd_error *err)
{
    return CUDA_DISPATCH(be, scale_t, be, y, x, s, err);
}

sd_status cuda_concat(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, int axis, sd_error *err)
{
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++)
        outer *= a->shape[i];
    for (int i = axis + 1; i < a->ndim; i++)
        inner *= a->shape[i];
    size_t es = sd_dtype_size(be->dtype);
    size_t ca = (size_t)(a->shape[axis] * inner) * es, cb = (size_t)(b->shape[axis] * inner) * es;
    cudaStream_t s = stream_of(be);
    /* two strided 2-D copies: rows of ca and cb bytes into rows of ca+cb */
    cudaError_t e = cudaMemcpy2DAsync(y->data, ca + cb, a->data, ca, ca, (size_t)outer, cudaMemcpyDeviceToDevice, s);
    if (e == cudaSuccess)
        e = cudaMemcpy2DAsync((char *)y->data + ca, ca + cb, b->data, cb, cb, (size_t)outer, cudaMemcpyDeviceToDevice,
                              s);
    if (e != cudaSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "cuda: concat axis %d: %s", axis, cudaGetErrorString(e));
    return SD_OK;
}

/* [B, R, Cc] -> [B, Cc, R] through 32x32 tiles */
template <typename T> __global__ void transpose_kernel(T *y, const T *x, int64_t R, int64_t Cc)
{
    __shared__ T tile[32][33];
    int64_t b = blockIdx.z;
    int64_t r0 = (int64_t)blockIdx.y * 32, c0 = (int64_t)blockIdx.x * 32;
    const T *xb = x + b * R * Cc;
    T *yb = y + b * R * Cc;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int64_t r = r0 + k, c = c0 + threadIdx.x;
        if (r < R && c < Cc)
            tile[k][threadIdx.x] = xb[r * Cc + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int64_t c = c0 + k, r = r0 + threadIdx.x;
        if (r < R && c < Cc)
            yb[c * R + r] = tile[threadIdx.x][k];
    }
}

template <typename T>
static sd_status transpose_t(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t B, int64_t R, int64_t Cc,
                             sd_error *err)
{
    dim3 grid((unsigned)((Cc + 31) / 32), (unsigned)((R + 31) / 32), (unsigned)B), block(32, 8);
    transpose_kernel<T><<<grid, block, 0, stream_of(be)>>>((T *)y->data, (const T *)x->data, R, Cc);
    LAUNCH_CHECK("transpose");
}

sd_status cuda_nchw_to_nlc(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    /* x is [B, C, L]: rows C of length L -> [B, L, C] */
    return CUDA_DISPATCH(be, transpose_t, be, y, x, x->shape[0], x->shape[1], x->shape[2] * x->shape[3], err);
}

sd_status cuda_nlc_to_nchw(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    return CUDA_DISPATCH(be, transpose_t, be, y, x, x->shape[0], x->shape[1], x->shape[2], err);
}

template <typename T>
__global__ void embedding_kernel(T *y, const int64_t *ids, const T *table, const T *pos, int64_t S, int64_t D,
                                 int64_t n)
{
    GRID_STRIDE(i, n)
    {
        int64_t d = i % D, t = i / D, s = t % S;
        float v = ld_f(&table[ids[t] * D + d]);
        if (pos)
            v += ld_f(&pos[s * D + d]);
        y[i] = from_f<T>(v);
    }
}

/* Copies a small host array to device scratch (pageable memcpy: the host
 * buffer may be freed as soon as this returns). */
static sd_status upload_ids(sd_backend *be, const int64_t *ids, size_t n, int64_t **dev, sd_error *err)
{
    void *p = NULL;
    SD_TRY(cuda_scratch(be, n * sizeof(int64_t), &p, err));
    cudaError_t e = cudaMemcpyAsync(p, ids, n * sizeof(int64_t), cudaMemcpyHostToDevice, stream_of(be));
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(stream_of(be));
    if (e != cudaSuccess) {
        cuda_scratch_free(be, p);
        return sd_fail(err, SD_ERR_BACKEND, "cuda: copying indices: %s", cudaGetErrorString(e));
    }
    *dev = (int64_t *)p;
    return SD_OK;
}

template <typename T>
static sd_status embedding_t(sd_backend *be, sd_tensor *y, const int64_t *ids, const sd_tensor *table,
                             const sd_tensor *pos, sd_error *err)
{
    int64_t S = y->shape[1], D = y->shape[2], n = sd_tensor_numel(y);
    int64_t *dids;
    SD_TRY(upload_ids(be, ids, (size_t)(y->shape[0] * S), &dids, err));
    embedding_kernel<T><<<cuda_blocks(n), 256, 0, stream_of(be)>>>(
        (T *)y->data, dids, (const T *)table->data, pos ? (const T *)pos->data : (const T *)0, S, D, n);
    cuda_scratch_free(be, dids);
    LAUNCH_CHECK("embedding");
}

sd_status cuda_embedding(sd_backend *be, sd_tensor *y, const int64_t *ids, const sd_tensor *table,
                         const sd_tensor *pos, sd_error *err)
{
    return CUDA_DISPATCH(be, embedding_t, be, y, ids, table, pos, err);
}

sd_status cuda_gather_rows(sd_backend *be, sd_tensor *y, const sd_tensor *x, const int64_t *rows, sd_error *err)
{
    int64_t B = x->shape[0], S = x->shape[1], D = x->shape[2];
    size_t es = sd_dtype_size(be->dtype);
    for (int64_t b = 0; b < B; b++) {
        cudaError_t e = cudaMemcpyAsync((char *)y->data + (size_t)(b * D) * es,
                                        (const char *)x->data + (size_t)((b * S + rows[b]) * D) * es, (size_t)D * es,
                                        cudaMemcpyDeviceToDevice, stream_of(be));
        if (e != cudaSuccess)
            return sd_fail(err, SD_ERR_BACKEND, "cuda: gather_rows: %s", cudaGetErrorString(e));
    }
    return SD_OK;
}

sd_status cuda_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    if (y->data == x->data)
        return SD_OK;
    cudaError_t e = cudaMemcpyAsync(y->data, x->data, (size_t)sd_tensor_numel(x) * sd_dtype_size(be->dtype),
                                    cudaMemcpyDeviceToDevice, stream_of(be));
    if (e != cudaSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "cuda: copy: %s", cudaGetErrorString(e));
    return SD_OK;
}
