// cuda_norm.cu - group norm (optionally fused with SiLU) and layer norm.
// Statistics in fp32 with Welford's update (no cancellation when the mean is
// large against the spread); the normalisation is one fused elementwise pass.
#include "kernels/cuda/cuda_internal.h"

struct welford {
    float mean, m2, n;
};

/* one more value into a running mean and sum of squared deviations */
__device__ __forceinline__ void welford_push(welford &w, float v)
{
    w.n += 1.0f;
    float d = v - w.mean;
    w.mean += d / w.n;
    w.m2 += d * (v - w.mean);
}

__device__ __forceinline__ welford welford_merge(welford a, welford b)
{
    float n = a.n + b.n;
    if (n == 0.0f)
        return a;
    float d = b.mean - a.mean;
    welford r;
    r.n = n;
    r.mean = a.mean + d * (b.n / n);
    r.m2 = a.m2 + b.m2 + d * d * (a.n * b.n / n);
    return r;
}

/* Warp-wide Welford reduction: lane 0 ends with the warp's statistics. */
__device__ welford warp_welford(welford w)
{
    for (int off = 16; off; off >>= 1) {
        welford o;
        o.mean = __shfl_down_sync(0xffffffffu, w.mean, off);
        o.m2 = __shfl_down_sync(0xffffffffu, w.m2, off);
        o.n = __shfl_down_sync(0xffffffffu, w.n, off);
        w = welford_merge(w, o);
    }
    return w;
}

/* Block-wide Welford reduction (blockDim.x a multiple of 32, <= 1024). */
__device__ welford block_welford(welford w)
{
    __shared__ welford part[32];
    w = warp_welford(w);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0)
        part[warp] = w;
    __syncthreads();
    if (warp == 0) {
        int nw = blockDim.x >> 5;
        w = lane < nw ? part[lane] : welford{0.0f, 0.0f, 0.0f};
        w = warp_welford(w);
        if (lane == 0)
            part[0] = w;
    }
    __syncthreads();
    welford r = part[0];
    __syncthreads();
    return r;
}

/* One block per (batch, group, slice): partial statistics of a slice of the
 * group's contiguous elements, so large groups spread over many blocks. */
template <typename T>
__global__ void gn_partial_kernel(float *part, const T *x, int64_t group_elems, int slices)
{
    int64_t bg = blockIdx.x / slices;
    int slice = blockIdx.x % slices;
    int64_t per = (group_elems + slices - 1) / slices;
    int64_t start = slice * per, end = min(group_elems, start + per);
    const T *p = x + bg * group_elems;
    welford w = {0.0f, 0.0f, 0.0f};
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
        welford_push(w, ld_f(&p[i]));
    }
    w = block_welford(w);
    if (threadIdx.x == 0) {
        part[blockIdx.x * 3 + 0] = w.mean;
        part[blockIdx.x * 3 + 1] = w.m2;
        part[blockIdx.x * 3 + 2] = w.n;
    }
}

__global__ void gn_finish_kernel(float *stats, const float *part, int nbg, int slices, float eps)
{
    int bg = blockIdx.x * blockDim.x + threadIdx.x;
    if (bg >= nbg)
        return;
    welford w = {0.0f, 0.0f, 0.0f};
    for (int s = 0; s < slices; s++) {
        const float *p = part + (bg * slices + s) * 3;
        w = welford_merge(w, welford{p[0], p[1], p[2]});
    }
    stats[bg * 2] = w.mean;
    stats[bg * 2 + 1] = rsqrtf(w.m2 / fmaxf(w.n, 1.0f) + eps);
}

/* One row of blocks per (batch, channel) plane: the plane's statistics and
 * affine parameters are loaded once, and no thread divides 64-bit indices
 * (which made the first version run at a tenth of memory bandwidth). */
template <typename T>
__global__ void gn_apply_kernel(T *y, const T *x, const float *stats, const T *gamma, const T *beta, int C, int HW,
                                int cpg, int planes, int silu)
{
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        int c = plane % C, n = plane / C;
        int bg = n * (C / cpg) + c / cpg;
        float mean = stats[bg * 2], rstd = stats[bg * 2 + 1];
        float a = rstd * ld_f(&gamma[c]), bb = ld_f(&beta[c]) - mean * a;
        const T *xp = x + (size_t)plane * HW;
        T *yp = y + (size_t)plane * HW;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            float v = ld_f(&xp[i]) * a + bb;
            if (silu)
                v = v / (1.0f + __expf(-v));
            yp[i] = from_f<T>(v);
        }
    }
}


template <typename T>
static sd_status group_norm_t(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                              const sd_tensor *beta, int groups, float eps, int silu, sd_error *err)
{
    int64_t B = x->shape[0], C = x->shape[1], total = sd_tensor_numel(x), HW = total / (B * C);
    int64_t cpg = C / groups, group_elems = cpg * HW;
    int nbg = (int)(B * groups);
    /* enough blocks to cover the machine: ~4 per SM on 132 SMs */
    int slices = (int)min((int64_t)((528 + nbg - 1) / nbg), max((int64_t)1, group_elems / 4096));
    if (slices < 1)
        slices = 1;
    void *scratch = NULL;
    SD_TRY(cuda_scratch(be, (size_t)nbg * (slices * 3 + 2) * sizeof(float), &scratch, err));
    float *part = (float *)scratch, *stats = part + (size_t)nbg * slices * 3;
    cudaStream_t s = cuda_st(be)->stream;
    gn_partial_kernel<T><<<nbg * slices, 256, 0, s>>>(part, (const T *)x->data, group_elems, slices);
    gn_finish_kernel<<<(nbg + 127) / 128, 128, 0, s>>>(stats, part, nbg, slices, eps);
    gn_apply_kernel<T><<<cuda_plane_grid(HW, B * C), 256, 0, s>>>((T *)y->data, (const T *)x->data, stats,
                                                             (const T *)gamma->data, (const T *)beta->data, (int)C,
                                                             (int)HW, (int)cpg, (int)(B * C), silu);
    cudaError_t e = cudaGetLastError();
    cuda_scratch_free(be, scratch);
    if (e != cudaSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "cuda: group_norm [%lld,%lld,...] %d groups: %s", (long long)B,
                       (long long)C, groups, cudaGetErrorString(e));
    return SD_OK;
}

sd_status cuda_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                          const sd_tensor *beta, int groups, float eps, int silu, sd_error *err)
{
    return CUDA_DISPATCH(be, group_norm_t, be, y, x, gamma, beta, groups, eps, silu, err);
}

/* One block per row. */
template <typename T>
__global__ void layer_norm_kernel(T *y, const T *x, const T *gamma, const T *beta, int64_t D, float eps)
{
    const T *xr = x + (int64_t)blockIdx.x * D;
    T *yr = y + (int64_t)blockIdx.x * D;
    welford w = {0.0f, 0.0f, 0.0f};
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        welford_push(w, ld_f(&xr[i]));
    }
    w = block_welford(w);
    float rstd = rsqrtf(w.m2 / fmaxf(w.n, 1.0f) + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        yr[i] = from_f<T>((ld_f(&xr[i]) - w.mean) * rstd * ld_f(&gamma[i]) + ld_f(&beta[i]));
}

template <typename T>
static sd_status layer_norm_t(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                              const sd_tensor *beta, float eps, sd_error *err)
{
    int64_t D = x->shape[x->ndim - 1], rows = sd_tensor_numel(x) / D;
    if (rows == 0)
        return SD_OK;
    layer_norm_kernel<T><<<(unsigned)rows, 256, 0, cuda_st(be)->stream>>>(
        (T *)y->data, (const T *)x->data, (const T *)gamma->data, (const T *)beta->data, D, eps);
    SD_CUDA_LAUNCH_CHECK(err, "layer_norm");
    return SD_OK;
}

sd_status cuda_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                          const sd_tensor *beta, float eps, sd_error *err)
{
    return CUDA_DISPATCH(be, layer_norm_t, be, y, x, gamma, beta, eps, err);
}
