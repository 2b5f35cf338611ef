// cuda_backend.cu - the CUDA backend: device and stream, cuBLASLt handle,
// the caching allocator, transfers, and the vtable over the kernels in the
// other cuda_*.cu files. Weights and activations are fp16, bf16 or fp32;
// every kernel accumulates in fp32.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_internal.h"

#define WORKSPACE_BYTES (64u << 20)

static void cuda_destroy(sd_backend *be)
{
    cuda_state *s = cuda_st(be);
    if (s) {
        cudaSetDevice(s->device);
        if (s->stream)
            cudaStreamSynchronize(s->stream);
        for (int i = 0; i < s->nblocks; i++)
            cudaFree(s->blocks[i].ptr);
        free(s->blocks);
        if (s->workspace)
            cudaFree(s->workspace);
        if (s->lt)
            cublasLtDestroy(s->lt);
        if (s->stream)
            cudaStreamDestroy(s->stream);
        free(s);
    }
    free(be);
}

static sd_status cuda_sync(sd_backend *be, sd_error *err)
{
    SD_CUDA_TRY(cudaStreamSynchronize(cuda_st(be)->stream), err, "stream synchronize");
    return SD_OK;
}

/* Best fit among free cached blocks of at most twice the request; else a new
 * cudaMalloc (retried once after releasing every free block). */
static sd_status cuda_alloc(sd_backend *be, size_t bytes, void **ptr, sd_error *err)
{
    cuda_state *s = cuda_st(be);
    size_t want = (bytes + 255) & ~(size_t)255;
    if (want == 0)
        want = 256;
    int best = -1;
    for (int i = 0; i < s->nblocks; i++) {
        cuda_block *b = &s->blocks[i];
        if (!b->in_use && b->size >= want && b->size <= 2 * want && (best < 0 || b->size < s->blocks[best].size))
            best = i;
    }
    if (best >= 0) {
        s->blocks[best].in_use = 1;
        *ptr = s->blocks[best].ptr;
        s->bytes_in_use += s->blocks[best].size;
    } else {
        if (s->nblocks == s->capblocks) {
            int nc = s->capblocks ? s->capblocks * 2 : 1024;
            cuda_block *nb = (cuda_block *)realloc(s->blocks, (size_t)nc * sizeof *nb);
            if (!nb)
                return sd_fail(err, SD_ERR_NOMEM, "cuda: out of host memory");
            s->blocks = nb;
            s->capblocks = nc;
        }
        void *p = NULL;
        cudaError_t e = cudaMalloc(&p, want);
        if (e != cudaSuccess && s->live_graphs == 0) {
            cudaGetLastError();
            /* give cached free blocks back and try again (not while a captured
             * graph may still write to them) */
            cudaStreamSynchronize(s->stream);
            int w = 0;
            for (int i = 0; i < s->nblocks; i++) {
                if (!s->blocks[i].in_use) {
                    cudaFree(s->blocks[i].ptr);
                    s->bytes_reserved -= s->blocks[i].size;
                } else {
                    s->blocks[w++] = s->blocks[i];
                }
            }
            s->nblocks = w;
            e = cudaMalloc(&p, want);
        }
        if (e != cudaSuccess) {
            cudaGetLastError();
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            return sd_fail(err, SD_ERR_NOMEM, "cuda: cannot allocate %zu bytes (%.2f GiB in use, %.2f GiB free of %.2f)",
                           bytes, (double)s->bytes_in_use / (1 << 30), (double)free_b / (1 << 30),
                           (double)total_b / (1 << 30));
        }
        s->mallocs++;
        s->blocks[s->nblocks++] = (cuda_block){p, want, 1};
        s->bytes_reserved += want;
        s->bytes_in_use += want;
        *ptr = p;
    }
    if (s->bytes_in_use > s->peak_in_use)
        s->peak_in_use = s->bytes_in_use;
    return SD_OK;
}

static void cuda_release(sd_backend *be, void *ptr)
{
    cuda_state *s = cuda_st(be);
    for (int i = s->nblocks - 1; i >= 0; i--) {
        if (s->blocks[i].ptr == ptr) {
            s->blocks[i].in_use = 0;
            s->bytes_in_use -= s->blocks[i].size;
            return;
        }
    }
}

sd_status cuda_scratch(sd_backend *be, size_t bytes, void **ptr, sd_error *err)
{
    return cuda_alloc(be, bytes, ptr, err);
}

void cuda_scratch_free(sd_backend *be, void *ptr)
{
    cuda_release(be, ptr);
}

static sd_status cuda_upload(sd_backend *be, void *dst, const void *src, sd_dtype src_dtype, size_t n,
                             sd_error *err)
{
    cuda_state *s = cuda_st(be);
    size_t es = sd_dtype_size(be->dtype);
    if (src_dtype == be->dtype) {
        SD_CUDA_TRY(cudaMemcpyAsync(dst, src, n * es, cudaMemcpyHostToDevice, s->stream), err, "upload");
        return cuda_sync(be, err);
    }
    /* convert on the host in chunks: fp32 first, then the device dtype */
    const size_t chunk = 1u << 22;
    float *f = (float *)malloc(chunk * sizeof(float));
    void *h = malloc(chunk * es);
    sd_status st = (!f || !h) ? sd_fail(err, SD_ERR_NOMEM, "cuda upload: out of host memory") : SD_OK;
    for (size_t off = 0; off < n && st == SD_OK; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        if (sd_convert_to_f32(f, (const char *)src + off * sd_dtype_size(src_dtype), src_dtype, len) != 0 ||
            sd_convert_from_f32(h, be->dtype, f, len) != 0) {
            st = sd_fail(err, SD_ERR_UNSUPPORTED, "cuda upload: cannot convert %s", sd_dtype_name(src_dtype));
            break;
        }
        /* on the backend's stream, after the work queued there (which may
         * still read a block the allocator handed out again): a plain
         * cudaMemcpy would not wait for a non-blocking stream */
        cudaError_t e = cudaMemcpyAsync((char *)dst + off * es, h, len * es, cudaMemcpyHostToDevice, s->stream);
        if (e != cudaSuccess)
            st = sd_fail(err, SD_ERR_BACKEND, "cuda: upload: %s", cudaGetErrorString(e));
        else
            st = cuda_sync(be, err); /* h is refilled next */
    }
    free(f);
    free(h);
    return st;
}

static sd_status cuda_download(sd_backend *be, float *dst, const void *src, size_t n, sd_error *err)
{
    size_t es = sd_dtype_size(be->dtype);
    SD_TRY(cuda_sync(be, err));
    void *h = malloc(n * es + 1);
    if (!h)
        return sd_fail(err, SD_ERR_NOMEM, "cuda download: out of host memory");
    cudaError_t e = cudaMemcpy(h, src, n * es, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        free(h);
        return sd_fail(err, SD_ERR_BACKEND, "cuda: download: %s", cudaGetErrorString(e));
    }
    sd_convert_to_f32(dst, h, be->dtype, n);
    free(h);
    return SD_OK;
}

/* CUDA graphs: a UNet step is queued once under stream capture and then
 * relaunched whole, saving ~1,500 kernel launches of host time per step.
 * Relaxed capture mode: the caching allocator may still call cudaMalloc for
 * an op's scratch while capturing (it should not in steady state; relaxed
 * keeps that legal rather than failing the capture). */
static sd_status cuda_graph_begin(sd_backend *be, sd_error *err)
{
    SD_CUDA_TRY(cudaStreamBeginCapture(cuda_st(be)->stream, cudaStreamCaptureModeRelaxed), err,
                "cudaStreamBeginCapture");
    return SD_OK;
}

static sd_status cuda_graph_end(sd_backend *be, void **graph, sd_error *err)
{
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    *graph = NULL;
    SD_CUDA_TRY(cudaStreamEndCapture(cuda_st(be)->stream, &g), err, "cudaStreamEndCapture");
    cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "cuda: cudaGraphInstantiate: %s", cudaGetErrorString(e));
    *graph = exec;
    cuda_st(be)->live_graphs++;
    return SD_OK;
}

static sd_status cuda_graph_launch(sd_backend *be, void *graph, sd_error *err)
{
    SD_CUDA_TRY(cudaGraphLaunch((cudaGraphExec_t)graph, cuda_st(be)->stream), err, "cudaGraphLaunch");
    return SD_OK;
}

static void cuda_graph_free(sd_backend *be, void *graph)
{
    if (graph) {
        cudaGraphExecDestroy((cudaGraphExec_t)graph);
        cuda_st(be)->live_graphs--;
    }
}

/* the device's used memory (every process's: what nvidia-smi shows) */
static sd_status cuda_memory_in_use(sd_backend *be, size_t *bytes, sd_error *err)
{
    (void)be;
    size_t free_b = 0, total_b = 0;
    SD_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b), err, "cudaMemGetInfo");
    *bytes = total_b - free_b;
    return SD_OK;
}

static const sd_backend_vtable cuda_vtable = {
    "cuda",
    cuda_destroy,
    cuda_sync,
    cuda_alloc,
    cuda_release,
    cuda_upload,
    cuda_download,
    cuda_linear,
    cuda_conv2d,
    cuda_group_norm,
    cuda_layer_norm,
    cuda_attention,
    cuda_act,
    cuda_geglu,
    cuda_upsample,
    cuda_add,
    cuda_add_channel_bias,
    cuda_scale,
    cuda_concat,
    cuda_nchw_to_nlc,
    cuda_nlc_to_nchw,
    cuda_embedding,
    cuda_gather_rows,
    cuda_copy,
    cuda_graph_begin,
    cuda_graph_end,
    cuda_graph_launch,
    cuda_graph_free,
    cuda_memory_in_use,
};

extern "C" sd_status sd_cuda_backend_create(sd_backend **out, int device, sd_dtype dtype, sd_error *err)
{
    *out = NULL;
    int n = sd_cuda_device_count();
    if (device >= n)
        return sd_fail(err, SD_ERR_INVALID, "device cuda:%d: %d CUDA device%s visible", device, n, n == 1 ? "" : "s");
    SD_CUDA_TRY(cudaSetDevice(device), err, "cudaSetDevice");
    sd_backend *be = (sd_backend *)calloc(1, sizeof *be);
    cuda_state *s = (cuda_state *)calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    be->vt = &cuda_vtable;
    be->dtype = dtype;
    be->impl = s;
    s->device = device;
    snprintf(be->name, sizeof be->name, "cuda:%d (%s)", device, sd_dtype_user_name(dtype));
    sd_status st = SD_OK;
    cudaError_t e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess)
        st = sd_fail(err, SD_ERR_BACKEND, "cuda:%d: stream: %s", device, cudaGetErrorString(e));
    if (st == SD_OK && cublasLtCreate(&s->lt) != CUBLAS_STATUS_SUCCESS)
        st = sd_fail(err, SD_ERR_BACKEND, "cuda:%d: cublasLtCreate failed", device);
    if (st == SD_OK) {
        s->workspace_size = WORKSPACE_BYTES;
        e = cudaMalloc(&s->workspace, s->workspace_size);
        if (e != cudaSuccess)
            st = sd_fail(err, SD_ERR_BACKEND, "cuda:%d: workspace: %s", device, cudaGetErrorString(e));
    }
    if (st != SD_OK) {
        cuda_destroy(be);
        return st;
    }
    *out = be;
    return SD_OK;
}

extern "C" void sd_cuda_backend_stats(sd_backend *be, sd_cuda_stats *out)
{
    cuda_state *s = cuda_st(be);
    out->bytes_reserved = s->bytes_reserved;
    out->bytes_in_use = s->bytes_in_use;
    out->peak_in_use = s->peak_in_use;
    out->mallocs = s->mallocs;
}
