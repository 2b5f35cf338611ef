/* ops.h - the one interface model code calls for computation.
 *
 * A backend (CPU reference or CUDA) owns device memory and implements the
 * operations below. Model code never names a backend: it creates one with
 * sd_backend_create("cpu" | "cuda:N") and passes tensors around.
 *
 * Layouts: images and feature maps are NCHW; token sequences are [B, S, D]
 * (row-major, D fastest). Every op checks shapes and dtypes here, in the
 * front end, and fails with a message naming the op and the shapes, so both
 * backends reject bad calls the same way.
 *
 * Numerics: the CPU backend stores and computes fp32. The CUDA backend stores
 * weights and activations in fp16 or bf16 and accumulates in fp32; softmax
 * and norms run in fp32. */
#ifndef SDXL_KERNELS_OPS_H
#define SDXL_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SD_MAX_DIMS 4

typedef struct sd_backend sd_backend;

typedef struct {
    sd_backend *be;
    sd_dtype dtype;
    int ndim;
    int64_t shape[SD_MAX_DIMS];
    void *data;   /* device memory (host memory for the CPU backend) */
    size_t bytes; /* numel * element size */
    int owned;    /* 1: freed by sd_tensor_free; 0: borrowed (e.g. mmap) */
} sd_tensor;

typedef enum {
    SD_ACT_NONE,
    SD_ACT_SILU,
    SD_ACT_GELU,       /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    SD_ACT_QUICK_GELU, /* x * sigmoid(1.702 x), CLIP-L's */
} sd_act;

/* ---- backends ---- */

/* "cpu" or "cuda" / "cuda:N". compute_dtype applies to the CUDA backend
 * (F16 or BF16; F32 for the CPU). */
sd_status sd_backend_create(sd_backend **out, const char *device, sd_dtype compute_dtype, sd_error *err);
void sd_backend_free(sd_backend *be);
const char *sd_backend_name(const sd_backend *be);
/* 1 and *bytes: the memory the backend's work holds now (a GPU's used
 * memory, the CPU process's resident memory); 0 when it cannot say. */
int sd_backend_memory_in_use(sd_backend *be, size_t *bytes);
/* dtype of activations and weights on this backend */
sd_dtype sd_backend_dtype(const sd_backend *be);
/* Waits for queued work (a no-op on the CPU). */
sd_status sd_backend_sync(sd_backend *be, sd_error *err);

/* Captured graphs (the CUDA backend; unsupported on the CPU): the work
 * queued between capture_begin and capture_end is recorded, not run, and
 * sd_backend_graph_launch queues it again as a whole with the same
 * addresses. Nothing between begin and end may wait for the device (no
 * downloads, no sync); memory it uses must stay allocated (kernels/arena.h). */
int sd_backend_can_capture(const sd_backend *be);
sd_status sd_backend_capture_begin(sd_backend *be, sd_error *err);
sd_status sd_backend_capture_end(sd_backend *be, void **graph, sd_error *err);
sd_status sd_backend_graph_launch(sd_backend *be, void *graph, sd_error *err);
void sd_backend_graph_free(sd_backend *be, void *graph);

/* Floating-point operations issued through ops.h since the last reset
 * (matrix products, convolutions and attention; 2 per multiply-add), for
 * benchmarks that report GFLOP/s against a floor. */
unsigned long long sd_ops_flops(void);
void sd_ops_flops_reset(void);

/* ---- tensors ---- */

int64_t sd_tensor_numel(const sd_tensor *t);
/* Allocates an uninitialised tensor in the backend's dtype. */
sd_status sd_tensor_alloc(sd_backend *be, sd_tensor *t, int ndim, const int64_t *shape, sd_error *err);
/* Convenience for up to 4 dims: sd_tensor_alloc4(be, &t, 3, (int64_t[]){B, S, D}). */
void sd_tensor_free(sd_tensor *t);
/* Creates a tensor from host data of any float dtype, converting to the
 * backend's dtype. If the backend can use the host memory as is (CPU, F32
 * source) and borrow is set, the tensor points at it without copying (the
 * caller keeps src alive: used for mmap'd weights). */
sd_status sd_tensor_from_host(sd_backend *be, sd_tensor *t, const void *src, sd_dtype src_dtype, int ndim,
                              const int64_t *shape, int borrow, sd_error *err);
/* Overwrites a tensor with numel host values of src_dtype, converted. */
sd_status sd_tensor_upload(sd_tensor *t, const void *src, sd_dtype src_dtype, sd_error *err);
/* C[M,N] += alpha * A[M,K] @ B[K,N] on host fp32 memory, row-major, by the
 * CPU backend's deterministic sgemm (any caller needing a host product:
 * merging a LoRA into a weight before upload). */
void sd_host_sgemm_acc(int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B, float *C);
/* Copies a tensor to host memory as fp32 (dst holds numel floats). */
sd_status sd_tensor_to_host_f32(const sd_tensor *t, float *dst, sd_error *err);
/* Reinterprets a tensor with another shape of equal numel (a view: shares data). */
sd_status sd_tensor_view(sd_tensor *view, const sd_tensor *t, int ndim, const int64_t *shape, sd_error *err);
/* Formats a shape as "[2,4,8,8]" into buf. */
const char *sd_shape_str(const sd_tensor *t, char *buf, size_t len);

/* ---- operations (y is preallocated with the stated shape) ---- */

/* y[M,N] = act(x[M,K] W[N,K]^T + b[N]); x and y may have leading dims that
 * multiply to M. b may be NULL. */
sd_status sd_op_linear(sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b, sd_act act,
                       sd_error *err);
/* 2-D convolution, NCHW, weights [O, C, kh, kw], symmetric zero padding. */
sd_status sd_op_conv2d(sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b, int stride,
                       int pad, sd_error *err);
/* As conv2d with explicit padding (top, bottom, left, right): the VAE
 * encoder's downsampler pads (0, 1, 0, 1). */
sd_status sd_op_conv2d_pad4(sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b, int stride,
                            int pad_top, int pad_bottom, int pad_left, int pad_right, sd_error *err);
/* Group norm over NCHW (or [B, C] rows), optional fused SiLU. y may be x. */
sd_status sd_op_group_norm(sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma, const sd_tensor *beta,
                           int groups, float eps, int fuse_silu, sd_error *err);
/* Layer norm over the last dim. y may be x. */
sd_status sd_op_layer_norm(sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma, const sd_tensor *beta,
                           float eps, sd_error *err);
/* Multi-head attention: q [B, Sq, H*D], k and v [B, Sk, H*D] -> o [B, Sq, H*D],
 * softmax(q k^T / sqrt(D)) v per head; causal masks key j > query i. */
sd_status sd_op_attention(sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v, int heads,
                          int causal, sd_error *err);
/* The same with a key mask [B, Sk] (transformers' attention_mask): key j of
 * batch b is attended only where key_mask[b, j] > 0; a query with no key
 * left gets zeros. compel's down-weighting masks tokens of CLIP's input. */
sd_status sd_op_attention_masked(sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                                 const sd_tensor *key_mask, int heads, int causal, sd_error *err);
/* y = act(x), same shape; y may be x. */
sd_status sd_op_act(sd_tensor *y, const sd_tensor *x, sd_act act, sd_error *err);
/* x [M, 2N] -> y [M, N] = x[:, :N] * gelu(x[:, N:]) (diffusers' GEGLU). */
sd_status sd_op_geglu(sd_tensor *y, const sd_tensor *x, sd_error *err);
/* Nearest-neighbour resize NCHW to y's H and W (2x in SDXL). */
sd_status sd_op_upsample_nearest(sd_tensor *y, const sd_tensor *x, sd_error *err);
/* y = a + b (same shapes); y may be a or b. */
sd_status sd_op_add(sd_tensor *y, const sd_tensor *a, const sd_tensor *b, sd_error *err);
/* y[b,c,h,w] = x[b,c,h,w] + bias[b,c] (time embedding into a resnet). */
sd_status sd_op_add_channel_bias(sd_tensor *y, const sd_tensor *x, const sd_tensor *bias, sd_error *err);
/* y = x * s; y may be x. */
sd_status sd_op_scale(sd_tensor *y, const sd_tensor *x, float s, sd_error *err);
/* Concatenation along axis (1: channels of NCHW; ndim-1: features). */
sd_status sd_op_concat(sd_tensor *y, const sd_tensor *a, const sd_tensor *b, int axis, sd_error *err);
/* [B, C, H, W] <-> [B, H*W, C] */
sd_status sd_op_nchw_to_nlc(sd_tensor *y, const sd_tensor *x, sd_error *err);
sd_status sd_op_nlc_to_nchw(sd_tensor *y, const sd_tensor *x, sd_error *err);
/* Sinusoidal embedding of n host timesteps into y [n, dim], as diffusers'
 * get_timestep_embedding (max_period 10000, scale 1). */
sd_status sd_op_timestep_embedding(sd_tensor *y, const float *timesteps, int n, int dim, int flip_sin_to_cos,
                                   float freq_shift, sd_error *err);
/* y[b, s, :] = table[ids[b*S+s], :] (+ pos[s, :] if pos). ids on the host. */
sd_status sd_op_embedding(sd_tensor *y, const int64_t *ids, const sd_tensor *table, const sd_tensor *pos,
                          sd_error *err);
/* y[b, :] = x[b, rows[b], :] for x [B, S, D]; rows on the host. */
sd_status sd_op_gather_rows(sd_tensor *y, const sd_tensor *x, const int64_t *rows, sd_error *err);
/* y = x (same numel). */
sd_status sd_op_copy(sd_tensor *y, const sd_tensor *x, sd_error *err);

#ifdef __cplusplus
}
#endif

#endif
