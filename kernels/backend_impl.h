/* backend_impl.h - what a backend implements behind ops.h. The front end
 * (ops.c) has already checked shapes and dtypes when these are called, so an
 * implementation only computes, and fails only for its own reasons (device
 * errors, out of memory). Private to kernels/. */
#ifndef SDXL_KERNELS_BACKEND_IMPL_H
#define SDXL_KERNELS_BACKEND_IMPL_H

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;
    void (*destroy)(sd_backend *be);
    sd_status (*sync)(sd_backend *be, sd_error *err);
    sd_status (*alloc)(sd_backend *be, size_t bytes, void **ptr, sd_error *err);
    void (*release)(sd_backend *be, void *ptr);
    /* host -> device with conversion from src_dtype to the backend dtype */
    sd_status (*upload)(sd_backend *be, void *dst, const void *src, sd_dtype src_dtype, size_t n, sd_error *err);
    sd_status (*download_f32)(sd_backend *be, float *dst, const void *src, size_t n, sd_error *err);
    sd_status (*linear)(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                        sd_act act, int64_t M, int64_t N, int64_t K, sd_error *err);
    sd_status (*conv2d)(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                        int stride, int pt, int pb, int pl, int pr, sd_error *err);
    sd_status (*group_norm)(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                            const sd_tensor *beta, int groups, float eps, int silu, sd_error *err);
    sd_status (*layer_norm)(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma,
                            const sd_tensor *beta, float eps, sd_error *err);
    /* key_mask: NULL, or [B, Sk] in the backend dtype (attend where > 0) */
    sd_status (*attention)(sd_backend *be, sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                           const sd_tensor *key_mask, int heads, int causal, sd_error *err);
    sd_status (*act)(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act, sd_error *err);
    sd_status (*geglu)(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
    sd_status (*upsample_nearest)(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
    sd_status (*add)(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, sd_error *err);
    sd_status (*add_channel_bias)(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *bias,
                                  sd_error *err);
    sd_status (*scale)(sd_backend *be, sd_tensor *y, const sd_tensor *x, float s, sd_error *err);
    sd_status (*concat)(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, int axis,
                        sd_error *err);
    sd_status (*nchw_to_nlc)(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
    sd_status (*nlc_to_nchw)(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
    /* y [n, dim] from host values computed in fp32 on the host */
    sd_status (*embedding)(sd_backend *be, sd_tensor *y, const int64_t *ids, const sd_tensor *table,
                           const sd_tensor *pos, sd_error *err);
    sd_status (*gather_rows)(sd_backend *be, sd_tensor *y, const sd_tensor *x, const int64_t *rows, sd_error *err);
    sd_status (*copy)(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err);
    /* Optional (NULL: unsupported): record the work queued between
     * graph_begin and graph_end into a graph that graph_launch queues again
     * as a whole, reading and writing the same addresses. */
    sd_status (*graph_begin)(sd_backend *be, sd_error *err);
    sd_status (*graph_end)(sd_backend *be, void **graph, sd_error *err);
    sd_status (*graph_launch)(sd_backend *be, void *graph, sd_error *err);
    void (*graph_free)(sd_backend *be, void *graph);
    /* Optional: the memory its work holds now (a GPU: the device's used
     * memory; the CPU: the process's resident memory), for the metrics. */
    sd_status (*memory_in_use)(sd_backend *be, size_t *bytes, sd_error *err);
} sd_backend_vtable;

struct sd_backend {
    const sd_backend_vtable *vt;
    sd_dtype dtype; /* of weights and activations */
    char name[64];
    void *impl;
    struct sd_arena *arena; /* entered arena serving tensor memory, or NULL (kernels/arena.h) */
};

/* The entered arena's side of sd_tensor_alloc / sd_tensor_free: take serves
 * an allocation; give_back returns 1 if ptr was allocated in this run (and
 * is now released to it), 0 if it belongs to the backend. */
sd_status sd_arena_take(struct sd_arena *a, size_t bytes, void **ptr, sd_error *err);
int sd_arena_give_back(struct sd_arena *a, void *ptr);

sd_status sd_cpu_backend_create(sd_backend **out, sd_error *err);
#ifdef SDXL_HAVE_CUDA
sd_status sd_cuda_backend_create(sd_backend **out, int device, sd_dtype dtype, sd_error *err);
#endif

#ifdef __cplusplus
}
#endif

#endif
