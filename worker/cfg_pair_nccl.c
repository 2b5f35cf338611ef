/* cfg_pair_nccl.c - see cfg_pair_nccl.h. */
#include "worker/cfg_pair_nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if SDXL_HAVE_CUDA
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>

/* NCCL is opened at run time, not linked: its library is 200+ MiB and only
 * a pair of CUDA workers needs it, so every other process (and a machine
 * without NCCL) runs without it. */
static struct {
    int tried, ok;
    char why[256];
    ncclResult_t (*get_unique_id)(ncclUniqueId *);
    ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*all_gather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*comm_destroy)(ncclComm_t);
    const char *(*error_string)(ncclResult_t);
} nccl;

static sd_status load_nccl(sd_error *err)
{
    if (!nccl.tried) {
        nccl.tried = 1;
        void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!h)
            h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(nccl.why, sizeof nccl.why, "%s", dlerror());
        } else {
            *(void **)&nccl.get_unique_id = dlsym(h, "ncclGetUniqueId");
            *(void **)&nccl.comm_init_rank = dlsym(h, "ncclCommInitRank");
            *(void **)&nccl.all_gather = dlsym(h, "ncclAllGather");
            *(void **)&nccl.comm_destroy = dlsym(h, "ncclCommDestroy");
            *(void **)&nccl.error_string = dlsym(h, "ncclGetErrorString");
            nccl.ok = nccl.get_unique_id && nccl.comm_init_rank && nccl.all_gather && nccl.comm_destroy &&
                      nccl.error_string;
            if (!nccl.ok)
                snprintf(nccl.why, sizeof nccl.why, "libnccl lacks a symbol this build needs");
        }
    }
    if (!nccl.ok)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "NCCL (libnccl.so.2) cannot be loaded: %s", nccl.why);
    return SD_OK;
}

struct sd_nccl_pair {
    ncclComm_t comm;
    cudaStream_t stream;
    int device;
    float *dev_mine, *dev_all;
    size_t cap; /* floats in dev_mine */
};

_Static_assert(SD_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "NCCL unique id size");

int sd_nccl_built(void)
{
    return 1;
}

sd_status sd_nccl_unique_id(unsigned char id[SD_NCCL_ID_BYTES], sd_error *err)
{
    SD_TRY(load_nccl(err));
    ncclUniqueId u;
    ncclResult_t r = nccl.get_unique_id(&u);
    if (r != ncclSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "ncclGetUniqueId: %s", nccl.error_string(r));
    memcpy(id, u.internal, SD_NCCL_ID_BYTES);
    return SD_OK;
}

sd_status sd_nccl_pair_init(sd_nccl_pair **out, const unsigned char id[SD_NCCL_ID_BYTES], int rank, int device,
                            sd_error *err)
{
    *out = NULL;
    SD_TRY(load_nccl(err));
    sd_nccl_pair *p = calloc(1, sizeof *p);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    p->device = device;
    cudaError_t ce = cudaSetDevice(device);
    if (ce == cudaSuccess)
        ce = cudaStreamCreateWithFlags(&p->stream, cudaStreamNonBlocking);
    if (ce != cudaSuccess) {
        free(p);
        return sd_fail(err, SD_ERR_BACKEND, "cfg pair on cuda:%d: %s", device, cudaGetErrorString(ce));
    }
    ncclUniqueId u;
    memcpy(u.internal, id, SD_NCCL_ID_BYTES);
    ncclResult_t r = nccl.comm_init_rank(&p->comm, 2, u, rank);
    if (r != ncclSuccess) {
        cudaStreamDestroy(p->stream);
        free(p);
        return sd_fail(err, SD_ERR_BACKEND, "ncclCommInitRank (rank %d of 2, cuda:%d): %s", rank, device,
                       nccl.error_string(r));
    }
    *out = p;
    return SD_OK;
}

sd_status sd_nccl_pair_allgather(sd_nccl_pair *p, const float *mine, float *all, size_t n, sd_error *err)
{
    cudaError_t ce = cudaSetDevice(p->device);
    if (ce == cudaSuccess && n > p->cap) {
        cudaFree(p->dev_mine);
        cudaFree(p->dev_all);
        p->dev_mine = p->dev_all = NULL;
        p->cap = 0;
        ce = cudaMalloc((void **)&p->dev_mine, n * sizeof(float));
        if (ce == cudaSuccess)
            ce = cudaMalloc((void **)&p->dev_all, 2 * n * sizeof(float));
        if (ce == cudaSuccess)
            p->cap = n;
    }
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(p->dev_mine, mine, n * sizeof(float), cudaMemcpyHostToDevice, p->stream);
    if (ce != cudaSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "cfg pair exchange: %s", cudaGetErrorString(ce));
    ncclResult_t r = nccl.all_gather(p->dev_mine, p->dev_all, n, ncclFloat32, p->comm, p->stream);
    if (r != ncclSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "ncclAllGather: %s", nccl.error_string(r));
    ce = cudaMemcpyAsync(all, p->dev_all, 2 * n * sizeof(float), cudaMemcpyDeviceToHost, p->stream);
    if (ce == cudaSuccess)
        ce = cudaStreamSynchronize(p->stream);
    if (ce != cudaSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "cfg pair exchange: %s", cudaGetErrorString(ce));
    return SD_OK;
}

void sd_nccl_pair_free(sd_nccl_pair *p)
{
    if (!p)
        return;
    cudaSetDevice(p->device);
    nccl.comm_destroy(p->comm);
    cudaFree(p->dev_mine);
    cudaFree(p->dev_all);
    cudaStreamDestroy(p->stream);
    free(p);
}

#else /* built without the CUDA toolkit */

int sd_nccl_built(void)
{
    return 0;
}

sd_status sd_nccl_unique_id(unsigned char id[SD_NCCL_ID_BYTES], sd_error *err)
{
    (void)id;
    return sd_fail(err, SD_ERR_UNSUPPORTED, "NCCL is not built in (no CUDA toolkit at build time)");
}

sd_status sd_nccl_pair_init(sd_nccl_pair **out, const unsigned char id[SD_NCCL_ID_BYTES], int rank, int device,
                            sd_error *err)
{
    (void)id, (void)rank, (void)device;
    *out = NULL;
    return sd_fail(err, SD_ERR_UNSUPPORTED, "NCCL is not built in (no CUDA toolkit at build time)");
}

sd_status sd_nccl_pair_allgather(sd_nccl_pair *p, const float *mine, float *all, size_t n, sd_error *err)
{
    (void)p, (void)mine, (void)all, (void)n;
    return sd_fail(err, SD_ERR_UNSUPPORTED, "NCCL is not built in");
}

void sd_nccl_pair_free(sd_nccl_pair *p)
{
    (void)p;
}
#endif
