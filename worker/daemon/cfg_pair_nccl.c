/* cfg_pair_nccl.c - see cfg_pair_nccl.h. */
#include "worker/daemon/cfg_pair_nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

#if SDXL_HAVE_CUDA && SDXL_HAVE_NCCL
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
    /* non-blocking communicators (NCCL >= 2.14); absent: blocking init */
    ncclResult_t (*comm_init_rank_config)(ncclComm_t *, int, ncclUniqueId, int, ncclConfig_t *);
    ncclResult_t (*get_async_error)(ncclComm_t, ncclResult_t *);
    ncclResult_t (*comm_abort)(ncclComm_t);
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
            *(void **)&nccl.comm_init_rank_config = dlsym(h, "ncclCommInitRankConfig");
            *(void **)&nccl.get_async_error = dlsym(h, "ncclCommGetAsyncError");
            *(void **)&nccl.comm_abort = dlsym(h, "ncclCommAbort");
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
    int nonblocking, timeout_ms, aborted;
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

/* Waits for a non-blocking communicator to leave ncclInProgress (and, with
 * a stream, for the stream to drain), polling its asynchronous error. Past
 * the deadline, or on an error, the communicator is aborted: a dead peer
 * turns into a failed item, never a hang. */
static sd_status wait_comm(sd_nccl_pair *p, cudaStream_t stream, const char *what, sd_error *err)
{
    double deadline = 1e3 * sd_now_s() + p->timeout_ms;
    for (;;) {
        ncclResult_t r = ncclSuccess;
        if (p->nonblocking && nccl.get_async_error(p->comm, &r) != ncclSuccess)
            r = ncclInternalError;
        if (r != ncclSuccess && r != ncclInProgress) {
            nccl.comm_abort(p->comm);
            p->aborted = 1;
            return sd_fail(err, SD_ERR_BACKEND, "%s: NCCL error %s; communicator aborted", what, nccl.error_string(r));
        }
        cudaError_t ce = cudaSuccess;
        if (r == ncclSuccess && stream) {
            ce = cudaStreamQuery(stream);
            if (ce != cudaSuccess && ce != cudaErrorNotReady)
                return sd_fail(err, SD_ERR_BACKEND, "%s: %s", what, cudaGetErrorString(ce));
        }
        if (r == ncclSuccess && ce == cudaSuccess)
            return SD_OK;
        if (1e3 * sd_now_s() > deadline) {
            if (nccl.comm_abort) { /* present whenever the communicator is non-blocking */
                nccl.comm_abort(p->comm);
                p->aborted = 1;
            }
            return sd_fail(err, SD_ERR_IO, "%s: the cfg pair's peer did not answer within %d ms; NCCL communicator aborted",
                           what, p->timeout_ms);
        }
        struct timespec pause = {0, 200000}; /* 0.2 ms: a UNet step is tens of ms */
        nanosleep(&pause, NULL);
    }
}

sd_status sd_nccl_pair_init(sd_nccl_pair **out, const unsigned char id[SD_NCCL_ID_BYTES], int rank, int device,
                            int timeout_ms, sd_error *err)
{
    *out = NULL;
    SD_TRY(load_nccl(err));
    sd_nccl_pair *p = calloc(1, sizeof *p);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    p->device = device;
    p->timeout_ms = timeout_ms;
    cudaError_t ce = cudaSetDevice(device);
    if (ce == cudaSuccess)
        ce = cudaStreamCreateWithFlags(&p->stream, cudaStreamNonBlocking);
    if (ce != cudaSuccess) {
        free(p);
        return sd_fail(err, SD_ERR_BACKEND, "cfg pair on cuda:%d: %s", device, cudaGetErrorString(ce));
    }
    ncclUniqueId u;
    memcpy(u.internal, id, SD_NCCL_ID_BYTES);
    ncclResult_t r = ncclInvalidUsage;
    if (nccl.comm_init_rank_config && nccl.get_async_error && nccl.comm_abort) {
        ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
        cfg.blocking = 0;
        r = nccl.comm_init_rank_config(&p->comm, 2, u, rank, &cfg);
        p->nonblocking = r == ncclSuccess || r == ncclInProgress;
    }
    if (!p->nonblocking) /* an older libnccl: a blocking communicator */
        r = nccl.comm_init_rank(&p->comm, 2, u, rank);
    if (r != ncclSuccess && r != ncclInProgress) {
        cudaStreamDestroy(p->stream);
        free(p);
        return sd_fail(err, SD_ERR_BACKEND, "ncclCommInitRank (rank %d of 2, cuda:%d): %s", rank, device,
                       nccl.error_string(r));
    }
    char what[64];
    snprintf(what, sizeof what, "ncclCommInitRank (rank %d of 2, cuda:%d)", rank, device);
    sd_status st = wait_comm(p, NULL, what, err);
    if (st != SD_OK) {
        if (!p->aborted)
            nccl.comm_destroy(p->comm);
        cudaStreamDestroy(p->stream);
        free(p);
        return st;
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
    if (p->aborted)
        return sd_fail(err, SD_ERR_BACKEND, "cfg pair: the NCCL communicator was aborted after an earlier failure");
    ncclResult_t r = nccl.all_gather(p->dev_mine, p->dev_all, n, ncclFloat32, p->comm, p->stream);
    if (r != ncclSuccess && r != ncclInProgress)
        return sd_fail(err, SD_ERR_BACKEND, "ncclAllGather of %zu floats: %s", n, nccl.error_string(r));
    ce = cudaMemcpyAsync(all, p->dev_all, 2 * n * sizeof(float), cudaMemcpyDeviceToHost, p->stream);
    if (ce != cudaSuccess)
        return sd_fail(err, SD_ERR_BACKEND, "cfg pair exchange: %s", cudaGetErrorString(ce));
    return wait_comm(p, p->stream, "ncclAllGather", err);
}

void sd_nccl_pair_free(sd_nccl_pair *p)
{
    if (!p)
        return;
    cudaSetDevice(p->device);
    if (!p->aborted)
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
                            int timeout_ms, sd_error *err)
{
    (void)id, (void)rank, (void)device, (void)timeout_ms;
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
