/* cpu_backend.c - the reference backend: host memory, fp32 storage and
 * arithmetic, OpenBLAS for products (cpu_gemm.c), OpenMP for the rest. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

static void cpu_destroy(sd_backend *be)
{
    free(be);
}

static sd_status cpu_sync(sd_backend *be, sd_error *err)
{
    (void)be;
    (void)err;
    return SD_OK;
}

static sd_status cpu_alloc(sd_backend *be, size_t bytes, void **ptr, sd_error *err)
{
    (void)be;
    /* 64-byte alignment for vector loads; never a zero-byte request */
    size_t sz = (bytes + 63) & ~(size_t)63;
    *ptr = aligned_alloc(64, sz ? sz : 64);
    if (!*ptr)
        return sd_fail(err, SD_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
    return SD_OK;
}

static void cpu_release(sd_backend *be, void *ptr)
{
    (void)be;
    free(ptr);
}

static sd_status cpu_upload(sd_backend *be, void *dst, const void *src, sd_dtype src_dtype, size_t n, sd_error *err)
{
    (void)be;
    if (sd_convert_to_f32(dst, src, src_dtype, n) != 0)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "cpu: cannot convert %s to F32", sd_dtype_name(src_dtype));
    return SD_OK;
}

static sd_status cpu_download(sd_backend *be, float *dst, const void *src, size_t n, sd_error *err)
{
    (void)be;
    (void)err;
    memcpy(dst, src, n * sizeof *dst);
    return SD_OK;
}

static sd_status cpu_act_op(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t n = sd_tensor_numel(x);
    const float *X = CF32(x);
    float *Y = F32(y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        Y[i] = cpu_act(X[i], act);
    return SD_OK;
}

static sd_status cpu_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t N = y->shape[y->ndim - 1], M = sd_tensor_numel(y) / N;
    const float *X = CF32(x);
    float *Y = F32(y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; i++) {
        const float *h = X + i * 2 * N, *g = h + N;
        for (int64_t j = 0; j < N; j++)
            Y[i * N + j] = h[j] * cpu_act(g[j], SD_ACT_GELU);
    }
    return SD_OK;
}

static sd_status cpu_upsample(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t OH = y->shape[2], OW = y->shape[3];
    const float *X = CF32(x);
    float *Y = F32(y);
    /* torch's 'nearest': src = floor(dst * in / out) */
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t c = 0; c < NC; c++)
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t ih = oh * H / OH;
            for (int64_t ow = 0; ow < OW; ow++)
                Y[(c * OH + oh) * OW + ow] = X[(c * H + ih) * W + ow * W / OW];
        }
    return SD_OK;
}

static sd_status cpu_add(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t n = sd_tensor_numel(y);
    const float *A = CF32(a), *B = CF32(b);
    float *Y = F32(y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        Y[i] = A[i] + B[i];
    return SD_OK;
}

static sd_status cpu_add_channel_bias(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_tensor *bias,
                                      sd_error *err)
{
    (void)be;
    (void)err;
    int64_t NC = x->shape[0] * x->shape[1], HW = x->shape[2] * x->shape[3];
    const float *X = CF32(x), *Bv = CF32(bias);
    float *Y = F32(y);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < NC; c++)
        for (int64_t i = 0; i < HW; i++)
            Y[c * HW + i] = X[c * HW + i] + Bv[c];
    return SD_OK;
}

static sd_status cpu_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float s, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t n = sd_tensor_numel(y);
    const float *X = CF32(x);
    float *Y = F32(y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        Y[i] = X[i] * s;
    return SD_OK;
}

static sd_status cpu_concat(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, int axis,
                            sd_error *err)
{
    (void)be;
    (void)err;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++)
        outer *= a->shape[i];
    for (int i = axis + 1; i < a->ndim; i++)
        inner *= a->shape[i];
    int64_t ca = a->shape[axis] * inner, cb = b->shape[axis] * inner;
    const float *A = CF32(a), *B = CF32(b);
    float *Y = F32(y);
    for (int64_t o = 0; o < outer; o++) {
        memcpy(Y + o * (ca + cb), A + o * ca, (size_t)ca * sizeof *Y);
        memcpy(Y + o * (ca + cb) + ca, B + o * cb, (size_t)cb * sizeof *Y);
    }
    return SD_OK;
}

static sd_status cpu_nchw_to_nlc(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t B = x->shape[0], C = x->shape[1], L = x->shape[2] * x->shape[3];
    const float *X = CF32(x);
    float *Y = F32(y);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < B; n++)
        for (int64_t l = 0; l < L; l++)
            for (int64_t c = 0; c < C; c++)
                Y[(n * L + l) * C + c] = X[(n * C + c) * L + l];
    return SD_OK;
}

static sd_status cpu_nlc_to_nchw(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t B = y->shape[0], C = y->shape[1], L = y->shape[2] * y->shape[3];
    const float *X = CF32(x);
    float *Y = F32(y);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < B; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t l = 0; l < L; l++)
                Y[(n * C + c) * L + l] = X[(n * L + l) * C + c];
    return SD_OK;
}

static sd_status cpu_embedding(sd_backend *be, sd_tensor *y, const int64_t *ids, const sd_tensor *table,
                               const sd_tensor *pos, sd_error *err)
{
    (void)be;
    (void)err;
    int64_t B = y->shape[0], S = y->shape[1], D = y->shape[2];
    float *Y = F32(y);
    for (int64_t n = 0; n < B; n++)
        for (int64_t s = 0; s < S; s++) {
            float *row = Y + (n * S + s) * D;
            const float *e = CF32(table) + ids[n * S + s] * D;
            for (int64_t d = 0; d < D; d++)
                row[d] = e[d] + (pos ? CF32(pos)[s * D + d] : 0.0f);
        }
    return SD_OK;
}

static sd_status cpu_gather_rows(sd_backend *be, sd_tensor *y, const sd_tensor *x, const int64_t *rows,
                                 sd_error *err)
{
    (void)be;
    (void)err;
    int64_t B = x->shape[0], S = x->shape[1], D = x->shape[2];
    for (int64_t n = 0; n < B; n++)
        memcpy(F32(y) + n * D, CF32(x) + (n * S + rows[n]) * D, (size_t)D * sizeof(float));
    return SD_OK;
}

static sd_status cpu_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_error *err)
{
    (void)be;
    (void)err;
    if (y->data != x->data)
        memmove(y->data, x->data, (size_t)sd_tensor_numel(x) * sizeof(float));
    return SD_OK;
}

/* the process's resident memory (/proc/self/statm): a CPU backend's "device" */
static sd_status cpu_memory_in_use(sd_backend *be, size_t *bytes, sd_error *err)
{
    (void)be;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    int ok = f && fscanf(f, "%lu %lu", &size, &resident) == 2;
    if (f)
        fclose(f);
    if (!ok)
        return sd_fail(err, SD_ERR_IO, "/proc/self/statm: unreadable");
    *bytes = (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
    return SD_OK;
}

static const sd_backend_vtable cpu_vtable = {
    .name = "cpu",
    .memory_in_use = cpu_memory_in_use,
    .destroy = cpu_destroy,
    .sync = cpu_sync,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download_f32 = cpu_download,
    .linear = sd_cpu_linear,
    .conv2d = sd_cpu_conv2d,
    .group_norm = sd_cpu_group_norm,
    .layer_norm = sd_cpu_layer_norm,
    .attention = sd_cpu_attention,
    .act = cpu_act_op,
    .geglu = cpu_geglu,
    .upsample_nearest = cpu_upsample,
    .add = cpu_add,
    .add_channel_bias = cpu_add_channel_bias,
    .scale = cpu_scale,
    .concat = cpu_concat,
    .nchw_to_nlc = cpu_nchw_to_nlc,
    .nlc_to_nchw = cpu_nlc_to_nchw,
    .embedding = cpu_embedding,
    .gather_rows = cpu_gather_rows,
    .copy = cpu_copy,
};

sd_status sd_cpu_backend_create(sd_backend **out, sd_error *err)
{
    sd_backend *be = calloc(1, sizeof *be);
    if (!be)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    be->vt = &cpu_vtable;
    be->dtype = SD_DTYPE_F32;
    snprintf(be->name, sizeof be->name, "cpu");
    *out = be;
    return SD_OK;
}
