/* ops.c - the front end of ops.h: backend selection, tensor bookkeeping and
 * the shape/dtype checks shared by every backend. */
#include "kernels/ops.h"
#include "kernels/cpu/sgemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend_impl.h"
#include "kernels/device.h"

/* ---- FLOP accounting ---- */

static _Atomic unsigned long long flop_count;

unsigned long long sd_ops_flops(void)
{
    return flop_count;
}

void sd_ops_flops_reset(void)
{
    flop_count = 0;
}

/* ---- backends ---- */

sd_status sd_backend_create(sd_backend **out, const char *device, sd_dtype compute_dtype, sd_error *err)
{
    *out = NULL;
    sd_device d;
    SD_TRY(sd_device_parse(device, &d, err));
    if (d.kind == SD_DEVICE_KIND_CPU)
        return sd_cpu_backend_create(out, err);
#ifdef SDXL_HAVE_CUDA
    if (compute_dtype != SD_DTYPE_F16 && compute_dtype != SD_DTYPE_BF16 && compute_dtype != SD_DTYPE_F32)
        return sd_fail(err, SD_ERR_INVALID, "device '%s': the CUDA backend computes in f16, bf16 or f32, not %s",
                       device, sd_dtype_user_name(compute_dtype));
    return sd_cuda_backend_create(out, d.index, compute_dtype, err);
#else
    (void)compute_dtype;
    return sd_fail(err, SD_ERR_UNSUPPORTED, "device '%s': this build has no CUDA backend (nvcc was not found)",
                   device);
#endif
}

void sd_backend_free(sd_backend *be)
{
    if (be)
        be->vt->destroy(be);
}

int sd_backend_can_capture(const sd_backend *be)
{
    return be->vt->graph_begin != NULL;
}

sd_status sd_backend_capture_begin(sd_backend *be, sd_error *err)
{
    if (!be->vt->graph_begin)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "backend %s cannot capture graphs", be->name);
    return be->vt->graph_begin(be, err);
}

sd_status sd_backend_capture_end(sd_backend *be, void **graph, sd_error *err)
{
    if (!be->vt->graph_end)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "backend %s cannot capture graphs", be->name);
    return be->vt->graph_end(be, graph, err);
}

sd_status sd_backend_graph_launch(sd_backend *be, void *graph, sd_error *err)
{
    if (!be->vt->graph_launch)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "backend %s cannot launch graphs", be->name);
    return be->vt->graph_launch(be, graph, err);
}

void sd_backend_graph_free(sd_backend *be, void *graph)
{
    if (be->vt->graph_free && graph)
        be->vt->graph_free(be, graph);
}

const char *sd_backend_name(const sd_backend *be)
{
    return be->name;
}

int sd_backend_memory_in_use(sd_backend *be, size_t *bytes)
{
    sd_error err;
    return be && be->vt->memory_in_use && be->vt->memory_in_use(be, bytes, &err) == SD_OK;
}

sd_dtype sd_backend_dtype(const sd_backend *be)
{
    return be->dtype;
}

sd_status sd_backend_sync(sd_backend *be, sd_error *err)
{
    return be->vt->sync(be, err);
}

/* ---- tensors ---- */

int64_t sd_tensor_numel(const sd_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

const char *sd_shape_str(const sd_tensor *t, char *buf, size_t len)
{
    size_t pos = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (pos < len)
        snprintf(buf + pos, len - pos, "]");
    return buf;
}

static sd_status set_shape(sd_tensor *t, int ndim, const int64_t *shape, sd_error *err)
{
    if (ndim < 1 || ndim > SD_MAX_DIMS)
        return sd_fail(err, SD_ERR_INVALID, "tensor with %d dimensions (1 to %d supported)", ndim, SD_MAX_DIMS);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return sd_fail(err, SD_ERR_INVALID, "negative dimension %lld", (long long)shape[i]);
        t->shape[i] = shape[i];
    }
    for (int i = ndim; i < SD_MAX_DIMS; i++)
        t->shape[i] = 1;
    return SD_OK;
}

/* Tensor memory comes from the entered arena, if any, else the backend. */
static sd_status tensor_memory(sd_backend *be, size_t bytes, void **ptr, sd_error *err)
{
    if (be->arena)
        return sd_arena_take(be->arena, bytes, ptr, err);
    return be->vt->alloc(be, bytes, ptr, err);
}

sd_status sd_tensor_alloc(sd_backend *be, sd_tensor *t, int ndim, const int64_t *shape, sd_error *err)
{
    memset(t, 0, sizeof *t);
    SD_TRY(set_shape(t, ndim, shape, err));
    t->be = be;
    t->dtype = be->dtype;
    t->bytes = (size_t)sd_tensor_numel(t) * sd_dtype_size(t->dtype);
    SD_TRY(tensor_memory(be, t->bytes, &t->data, err));
    t->owned = 1;
    return SD_OK;
}

void sd_tensor_free(sd_tensor *t)
{
    if (t->owned && t->data && !(t->be->arena && sd_arena_give_back(t->be->arena, t->data)))
        t->be->vt->release(t->be, t->data);
    memset(t, 0, sizeof *t);
}

sd_status sd_tensor_from_host(sd_backend *be, sd_tensor *t, const void *src, sd_dtype src_dtype, int ndim,
                              const int64_t *shape, int borrow, sd_error *err)
{
    memset(t, 0, sizeof *t);
    if (!sd_dtype_is_float(src_dtype))
        return sd_fail(err, SD_ERR_UNSUPPORTED, "cannot load a %s tensor as floating point", sd_dtype_name(src_dtype));
    SD_TRY(set_shape(t, ndim, shape, err));
    t->be = be;
    t->dtype = be->dtype;
    t->bytes = (size_t)sd_tensor_numel(t) * sd_dtype_size(t->dtype);
    if (borrow && src_dtype == be->dtype && !strcmp(be->vt->name, "cpu") && (uintptr_t)src % sizeof(float) == 0) {
        t->data = (void *)src;
        t->owned = 0;
        return SD_OK;
    }
    SD_TRY(tensor_memory(be, t->bytes, &t->data, err));
    t->owned = 1;
    sd_status st = be->vt->upload(be, t->data, src, src_dtype, (size_t)sd_tensor_numel(t), err);
    if (st != SD_OK)
        sd_tensor_free(t);
    return st;
}

sd_status sd_tensor_upload(sd_tensor *t, const void *src, sd_dtype src_dtype, sd_error *err)
{
    if (!sd_dtype_is_float(src_dtype))
        return sd_fail(err, SD_ERR_UNSUPPORTED, "cannot upload %s values into a tensor", sd_dtype_name(src_dtype));
    return t->be->vt->upload(t->be, t->data, src, src_dtype, (size_t)sd_tensor_numel(t), err);
}

sd_status sd_tensor_to_host_f32(const sd_tensor *t, float *dst, sd_error *err)
{
    return t->be->vt->download_f32(t->be, dst, t->data, (size_t)sd_tensor_numel(t), err);
}

sd_status sd_tensor_view(sd_tensor *view, const sd_tensor *t, int ndim, const int64_t *shape, sd_error *err)
{
    sd_tensor v = *t;
    v.owned = 0;
    SD_TRY(set_shape(&v, ndim, shape, err));
    if (sd_tensor_numel(&v) != sd_tensor_numel(t)) {
        char a[64], b[64];
        return sd_fail(err, SD_ERR_INVALID, "view %s of a %s tensor changes the element count", sd_shape_str(&v, a, 64),
                       sd_shape_str(t, b, 64));
    }
    *view = v;
    return SD_OK;
}

/* ---- checks ---- */

static sd_status shape_error(sd_error *err, const char *op, const char *what, const sd_tensor *a,
                             const sd_tensor *b)
{
    char sa[96], sb[96] = "";
    sd_shape_str(a, sa, sizeof sa);
    if (b)
        sd_shape_str(b, sb, sizeof sb);
    return sd_fail(err, SD_ERR_INVALID, "%s: %s (%s%s%s)", op, what, sa, b ? " vs " : "", sb);
}

static int same_shape(const sd_tensor *a, const sd_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

static sd_status check_backend(const char *op, sd_error *err, int n, const sd_tensor *const *ts)
{
    const sd_backend *be = NULL;
    for (int i = 0; i < n; i++) {
        if (!ts[i])
            continue;
        if (!ts[i]->data && sd_tensor_numel(ts[i]) > 0)
            return sd_fail(err, SD_ERR_INVALID, "%s: operand %d has no data", op, i);
        if (!be)
            be = ts[i]->be;
        else if (ts[i]->be != be)
            return sd_fail(err, SD_ERR_INVALID, "%s: operands live on different backends", op);
    }
    return SD_OK;
}
#define CHECK_BE(op, ...)                                                                  \
    do {                                                                                   \
        const sd_tensor *ts_[] = {__VA_ARGS__};                                            \
        SD_TRY(check_backend(op, err, (int)(sizeof ts_ / sizeof ts_[0]), ts_));            \
    } while (0)

/* ---- operations ---- */

sd_status sd_op_linear(sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b, sd_act act,
                       sd_error *err)
{
    CHECK_BE("linear", y, x, w, b);
    if (w->ndim != 2)
        return shape_error(err, "linear", "weight must be [N, K]", w, NULL);
    int64_t N = w->shape[0], K = w->shape[1];
    if (x->shape[x->ndim - 1] != K)
        return shape_error(err, "linear", "input's last dim differs from the weight's K", x, w);
    int64_t M = sd_tensor_numel(x) / K;
    if (y->shape[y->ndim - 1] != N || sd_tensor_numel(y) != M * N)
        return shape_error(err, "linear", "output must be [M, N]", y, w);
    if (b && (b->ndim != 1 || b->shape[0] != N))
        return shape_error(err, "linear", "bias must be [N]", b, w);
    flop_count += 2ull * (unsigned long long)(M * N * K);
    return y->be->vt->linear(y->be, y, x, w, b, act, M, N, K, err);
}

sd_status sd_op_conv2d_pad4(sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b, int stride,
                            int pt, int pb, int pl, int pr, sd_error *err)
{
    CHECK_BE("conv2d", y, x, w, b);
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4)
        return shape_error(err, "conv2d", "input, weight and output must be 4-D", x, w);
    if (w->shape[1] != x->shape[1])
        return shape_error(err, "conv2d", "input channels differ from the weight's", x, w);
    if (stride < 1 || pt < 0 || pb < 0 || pl < 0 || pr < 0)
        return sd_fail(err, SD_ERR_INVALID, "conv2d: bad stride %d or padding", stride);
    int64_t oh = (x->shape[2] + pt + pb - w->shape[2]) / stride + 1;
    int64_t ow = (x->shape[3] + pl + pr - w->shape[3]) / stride + 1;
    if (y->shape[0] != x->shape[0] || y->shape[1] != w->shape[0] || y->shape[2] != oh || y->shape[3] != ow)
        return shape_error(err, "conv2d", "output shape does not match input, weight, stride and padding", y, w);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return shape_error(err, "conv2d", "bias must be [out_channels]", b, w);
    flop_count += 2ull * (unsigned long long)(y->shape[0] * y->shape[1] * oh * ow) *
                  (unsigned long long)(w->shape[1] * w->shape[2] * w->shape[3]);
    return y->be->vt->conv2d(y->be, y, x, w, b, stride, pt, pb, pl, pr, err);
}

sd_status sd_op_conv2d(sd_tensor *y, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b, int stride,
                       int pad, sd_error *err)
{
    return sd_op_conv2d_pad4(y, x, w, b, stride, pad, pad, pad, pad, err);
}

sd_status sd_op_group_norm(sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma, const sd_tensor *beta,
                           int groups, float eps, int fuse_silu, sd_error *err)
{
    CHECK_BE("group_norm", y, x, gamma, beta);
    if (!same_shape(x, y) || x->ndim < 2)
        return shape_error(err, "group_norm", "output must have the input's shape", y, x);
    int64_t C = x->shape[1];
    if (groups < 1 || C % groups)
        return sd_fail(err, SD_ERR_INVALID, "group_norm: %lld channels do not split into %d groups", (long long)C,
                       groups);
    if (gamma->ndim != 1 || gamma->shape[0] != C || beta->ndim != 1 || beta->shape[0] != C)
        return shape_error(err, "group_norm", "weight and bias must be [C]", gamma, x);
    return y->be->vt->group_norm(y->be, y, x, gamma, beta, groups, eps, fuse_silu, err);
}

sd_status sd_op_layer_norm(sd_tensor *y, const sd_tensor *x, const sd_tensor *gamma, const sd_tensor *beta,
                           float eps, sd_error *err)
{
    CHECK_BE("layer_norm", y, x, gamma, beta);
    if (!same_shape(x, y))
        return shape_error(err, "layer_norm", "output must have the input's shape", y, x);
    int64_t D = x->shape[x->ndim - 1];
    if (gamma->ndim != 1 || gamma->shape[0] != D || beta->ndim != 1 || beta->shape[0] != D)
        return shape_error(err, "layer_norm", "weight and bias must be [D]", gamma, x);
    return y->be->vt->layer_norm(y->be, y, x, gamma, beta, eps, err);
}

sd_status sd_op_attention(sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v, int heads,
                          int causal, sd_error *err)
{
    return sd_op_attention_masked(o, q, k, v, NULL, heads, causal, err);
}

sd_status sd_op_attention_masked(sd_tensor *o, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                                 const sd_tensor *key_mask, int heads, int causal, sd_error *err)
{
    CHECK_BE("attention", o, q, k, v);
    if (key_mask && (key_mask->be != o->be || key_mask->ndim != 2 || key_mask->shape[0] != k->shape[0] ||
                     key_mask->shape[1] != k->shape[1]))
        return shape_error(err, "attention", "the key mask must be [B, Sk] on the same backend", key_mask, k);
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || !same_shape(o, q))
        return shape_error(err, "attention", "q, k, v, o must be [B, S, H*D] with o shaped as q", q, o);
    if (k->shape[0] != q->shape[0] || !same_shape(k, v) || k->shape[2] != q->shape[2])
        return shape_error(err, "attention", "k and v must be [B, Sk, H*D] matching q", k, q);
    if (heads < 1 || q->shape[2] % heads)
        return sd_fail(err, SD_ERR_INVALID, "attention: width %lld does not split into %d heads",
                       (long long)q->shape[2], heads);
    if (causal && k->shape[1] != q->shape[1])
        return shape_error(err, "attention", "causal attention needs Sq == Sk", q, k);
    flop_count += 4ull * (unsigned long long)(q->shape[0] * q->shape[1] * k->shape[1] * q->shape[2]);
    return o->be->vt->attention(o->be, o, q, k, v, key_mask, heads, causal, err);
}

sd_status sd_op_act(sd_tensor *y, const sd_tensor *x, sd_act act, sd_error *err)
{
    CHECK_BE("act", y, x);
    if (sd_tensor_numel(y) != sd_tensor_numel(x))
        return shape_error(err, "act", "output must have the input's size", y, x);
    if (act == SD_ACT_NONE)
        return y->data == x->data ? SD_OK : sd_op_copy(y, x, err);
    return y->be->vt->act(y->be, y, x, act, err);
}

sd_status sd_op_geglu(sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    CHECK_BE("geglu", y, x);
    int64_t two_n = x->shape[x->ndim - 1];
    if (two_n % 2 || y->shape[y->ndim - 1] * 2 != two_n || sd_tensor_numel(y) * 2 != sd_tensor_numel(x))
        return shape_error(err, "geglu", "output must be the input with half the last dim", y, x);
    return y->be->vt->geglu(y->be, y, x, err);
}

sd_status sd_op_upsample_nearest(sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    CHECK_BE("upsample", y, x);
    if (x->ndim != 4 || y->ndim != 4 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1])
        return shape_error(err, "upsample", "NCHW tensors with equal N and C expected", y, x);
    return y->be->vt->upsample_nearest(y->be, y, x, err);
}

sd_status sd_op_add(sd_tensor *y, const sd_tensor *a, const sd_tensor *b, sd_error *err)
{
    CHECK_BE("add", y, a, b);
    if (sd_tensor_numel(a) != sd_tensor_numel(b) || sd_tensor_numel(y) != sd_tensor_numel(a))
        return shape_error(err, "add", "operands must have equal sizes", a, b);
    return y->be->vt->add(y->be, y, a, b, err);
}

sd_status sd_op_add_channel_bias(sd_tensor *y, const sd_tensor *x, const sd_tensor *bias, sd_error *err)
{
    CHECK_BE("add_channel_bias", y, x, bias);
    if (x->ndim != 4 || !same_shape(x, y) || bias->ndim != 2 || bias->shape[0] != x->shape[0] ||
        bias->shape[1] != x->shape[1])
        return shape_error(err, "add_channel_bias", "x [B,C,H,W] and bias [B,C] expected", x, bias);
    return y->be->vt->add_channel_bias(y->be, y, x, bias, err);
}

sd_status sd_op_scale(sd_tensor *y, const sd_tensor *x, float s, sd_error *err)
{
    CHECK_BE("scale", y, x);
    if (sd_tensor_numel(y) != sd_tensor_numel(x))
        return shape_error(err, "scale", "output must have the input's size", y, x);
    return y->be->vt->scale(y->be, y, x, s, err);
}

sd_status sd_op_concat(sd_tensor *y, const sd_tensor *a, const sd_tensor *b, int axis, sd_error *err)
{
    CHECK_BE("concat", y, a, b);
    if (a->ndim != b->ndim || y->ndim != a->ndim || axis < 0 || axis >= a->ndim)
        return shape_error(err, "concat", "operands must have equal rank and a valid axis", a, b);
    for (int i = 0; i < a->ndim; i++) {
        int64_t want = i == axis ? a->shape[i] + b->shape[i] : a->shape[i];
        if ((i != axis && a->shape[i] != b->shape[i]) || y->shape[i] != want)
            return shape_error(err, "concat", "shapes do not concatenate", a, b);
    }
    return y->be->vt->concat(y->be, y, a, b, axis, err);
}

sd_status sd_op_nchw_to_nlc(sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    CHECK_BE("nchw_to_nlc", y, x);
    if (x->ndim != 4 || y->ndim != 3 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[2] * x->shape[3] ||
        y->shape[2] != x->shape[1])
        return shape_error(err, "nchw_to_nlc", "[B,C,H,W] -> [B,H*W,C] expected", x, y);
    return y->be->vt->nchw_to_nlc(y->be, y, x, err);
}

sd_status sd_op_nlc_to_nchw(sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    CHECK_BE("nlc_to_nchw", y, x);
    if (y->ndim != 4 || x->ndim != 3 || x->shape[0] != y->shape[0] || x->shape[1] != y->shape[2] * y->shape[3] ||
        x->shape[2] != y->shape[1])
        return shape_error(err, "nlc_to_nchw", "[B,H*W,C] -> [B,C,H,W] expected", x, y);
    return y->be->vt->nlc_to_nchw(y->be, y, x, err);
}

sd_status sd_op_timestep_embedding(sd_tensor *y, const float *timesteps, int n, int dim, int flip_sin_to_cos,
                                   float freq_shift, sd_error *err)
{
    if (y->ndim != 2 || y->shape[0] != n || y->shape[1] != dim || dim < 2)
        return shape_error(err, "timestep_embedding", "output must be [n, dim]", y, NULL);
    /* Computed on the host in fp32, exactly in the order torch does it, then
     * uploaded: n x dim values are tiny. */
    float *host = malloc((size_t)n * (size_t)dim * sizeof *host);
    if (!host)
        return sd_fail(err, SD_ERR_NOMEM, "timestep_embedding: out of memory");
    int half = dim / 2;
    const float log_max_period = 9.21034049987792968750f; /* (float)log(10000) */
    for (int i = 0; i < n; i++) {
        float *row = host + (size_t)i * (size_t)dim;
        for (int j = 0; j < half; j++) {
            float exponent = -log_max_period * (float)j;
            exponent = exponent / ((float)half - freq_shift);
            float arg = timesteps[i] * expf(exponent);
            float s = sinf(arg), c = cosf(arg);
            row[j] = flip_sin_to_cos ? c : s;
            row[half + j] = flip_sin_to_cos ? s : c;
        }
        if (dim % 2)
            row[dim - 1] = 0.0f;
    }
    sd_status st = y->be->vt->upload(y->be, y->data, host, SD_DTYPE_F32, (size_t)n * (size_t)dim, err);
    free(host);
    return st;
}

sd_status sd_op_embedding(sd_tensor *y, const int64_t *ids, const sd_tensor *table, const sd_tensor *pos,
                          sd_error *err)
{
    CHECK_BE("embedding", y, table, pos);
    if (y->ndim != 3 || table->ndim != 2 || table->shape[1] != y->shape[2])
        return shape_error(err, "embedding", "y [B,S,D] and table [V,D] expected", y, table);
    if (pos && (pos->ndim != 2 || pos->shape[0] < y->shape[1] || pos->shape[1] != y->shape[2]))
        return shape_error(err, "embedding", "positions must be [>=S, D]", pos, y);
    int64_t n = y->shape[0] * y->shape[1];
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= table->shape[0])
            return sd_fail(err, SD_ERR_INVALID, "embedding: token id %lld at position %lld is outside the vocabulary "
                           "of %lld", (long long)ids[i], (long long)i, (long long)table->shape[0]);
    return y->be->vt->embedding(y->be, y, ids, table, pos, err);
}

sd_status sd_op_gather_rows(sd_tensor *y, const sd_tensor *x, const int64_t *rows, sd_error *err)
{
    CHECK_BE("gather_rows", y, x);
    if (x->ndim != 3 || y->ndim != 2 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[2])
        return shape_error(err, "gather_rows", "x [B,S,D] -> y [B,D] expected", x, y);
    for (int64_t b = 0; b < x->shape[0]; b++)
        if (rows[b] < 0 || rows[b] >= x->shape[1])
            return sd_fail(err, SD_ERR_INVALID, "gather_rows: row %lld out of range", (long long)rows[b]);
    return y->be->vt->gather_rows(y->be, y, x, rows, err);
}

sd_status sd_op_copy(sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    CHECK_BE("copy", y, x);
    if (sd_tensor_numel(y) != sd_tensor_numel(x))
        return shape_error(err, "copy", "sizes differ", y, x);
    return y->be->vt->copy(y->be, y, x, err);
}

void sd_host_sgemm_acc(int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B, float *C)
{
    sd_sgemm(0, M, N, K, alpha, A, K, B, N, 1.0f, C, N);
}
