/* safetensors_write.c - the writer half of safetensors.h: tensors are stored
 * sorted by name (as the reference writer does), the header padded with
 * spaces to a multiple of 8 bytes, and the file written atomically. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "safetensors.h"

typedef struct {
    char *name;
    sd_dtype dtype;
    int ndim;
    int64_t shape[SD_ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
    void *owned;
    sd_st_fill_fn fill;
    void *fill_user;
} writer_entry;

struct sd_st_writer {
    writer_entry *e;
    size_t n, cap;
    json_t *metadata;
};

sd_st_writer *sd_st_writer_new(void)
{
    return calloc(1, sizeof(sd_st_writer));
}

void sd_st_writer_free(sd_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].owned);
    }
    free(w->e);
    json_decref(w->metadata);
    free(w);
}

static sd_status add_entry(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim,
                           const int64_t *shape, writer_entry **out, sd_error *err)
{
    if (ndim < 0 || ndim > SD_ST_MAX_DIMS)
        return sd_fail(err, SD_ERR_INVALID, "tensor '%s': %d dimensions", name, ndim);
    if (strcmp(name, "__metadata__") == 0 || name[0] == '\0')
        return sd_fail(err, SD_ERR_INVALID, "tensor name '%s' is reserved or empty", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return sd_fail(err, SD_ERR_INVALID, "tensor '%s' added twice", name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        writer_entry *ne = realloc(w->e, nc * sizeof *ne);
        if (!ne)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        w->e = ne;
        w->cap = nc;
    }
    writer_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    e->nbytes = sd_dtype_size(dtype);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) {
            free(e->name);
            return sd_fail(err, SD_ERR_INVALID, "tensor '%s': negative dimension", name);
        }
        e->shape[d] = shape[d];
        e->nbytes *= (size_t)shape[d];
    }
    w->n++;
    *out = e;
    return SD_OK;
}

sd_status sd_st_writer_add(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, sd_error *err)
{
    writer_entry *e;
    SD_TRY(add_entry(w, name, dtype, ndim, shape, &e, err));
    e->data = data;
    return SD_OK;
}

sd_status sd_st_writer_add_copy(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim,
                                const int64_t *shape, const void *data, sd_error *err)
{
    writer_entry *e;
    SD_TRY(add_entry(w, name, dtype, ndim, shape, &e, err));
    e->owned = malloc(e->nbytes ? e->nbytes : 1);
    if (!e->owned)
        return sd_fail(err, SD_ERR_NOMEM, "tensor '%s': out of memory", name);
    memcpy(e->owned, data, e->nbytes);
    e->data = e->owned;
    return SD_OK;
}

sd_status sd_st_writer_add_fill(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim,
                                const int64_t *shape, sd_st_fill_fn fill, void *user, sd_error *err)
{
    writer_entry *e;
    SD_TRY(add_entry(w, name, dtype, ndim, shape, &e, err));
    e->fill = fill;
    e->fill_user = user;
    return SD_OK;
}

sd_status sd_st_writer_set_metadata(sd_st_writer *w, const char *key, const char *value, sd_error *err)
{
    if (!w->metadata && !(w->metadata = json_object()))
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (json_object_set_new(w->metadata, key, json_string(value)) != 0)
        return sd_fail(err, SD_ERR_INVALID, "metadata '%s': not valid UTF-8", key);
    return SD_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const writer_entry *)a)->name, ((const writer_entry *)b)->name);
}

static sd_status build_header(sd_st_writer *w, char **out, size_t *out_len, sd_error *err)
{
    json_t *root = json_object();
    if (!root)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (w->metadata)
        json_object_set(root, "__metadata__", w->metadata);
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        writer_entry *e = &w->e[i];
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++)
            json_array_append_new(shape, json_integer(e->shape[d]));
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", sd_dtype_name(e->dtype), "shape", shape,
                                "data_offsets", (json_int_t)off, (json_int_t)(off + e->nbytes));
        if (!ent || json_object_set_new(root, e->name, ent) != 0) {
            json_decref(root);
            return sd_fail(err, SD_ERR_INVALID, "tensor '%s': cannot encode header entry", e->name);
        }
        off += e->nbytes;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!s)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    size_t len = strlen(s);
    size_t padded = (len + 7) & ~(size_t)7;
    char *h = realloc(s, padded + 1);
    if (!h) {
        free(s);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    memset(h + len, ' ', padded - len);
    h[padded] = '\0';
    *out = h;
    *out_len = padded;
    return SD_OK;
}

sd_status sd_st_writer_save(sd_st_writer *w, const char *path, sd_error *err)
{
    qsort(w->e, w->n, sizeof *w->e, cmp_entry);
    char *header = NULL;
    size_t hlen = 0;
    SD_TRY(build_header(w, &header, &hlen, err));
    sd_atomic_file af;
    sd_status st = sd_atomic_open(&af, path, err);
    if (st != SD_OK) {
        free(header);
        return st;
    }
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (fwrite(lenbuf, 1, 8, af.fp) != 8 || fwrite(header, 1, hlen, af.fp) != hlen)
        st = sd_fail(err, SD_ERR_IO, "%s: write failed", path);
    free(header);
    void *scratch = NULL;
    size_t scratch_cap = 0;
    for (size_t i = 0; i < w->n && st == SD_OK; i++) {
        writer_entry *e = &w->e[i];
        const void *src = e->data;
        if (e->fill) {
            if (e->nbytes > scratch_cap) {
                void *ns = realloc(scratch, e->nbytes);
                if (!ns) {
                    st = sd_fail(err, SD_ERR_NOMEM, "tensor '%s': out of memory", e->name);
                    break;
                }
                scratch = ns;
                scratch_cap = e->nbytes;
            }
            st = e->fill(scratch, e->nbytes, e->fill_user, err);
            if (st != SD_OK) {
                sd_error_prefix(err, st, "tensor '%s': ", e->name);
                break;
            }
            src = scratch;
        }
        if (e->nbytes && fwrite(src, 1, e->nbytes, af.fp) != e->nbytes)
            st = sd_fail(err, SD_ERR_IO, "%s: write failed at tensor '%s'", path, e->name);
    }
    free(scratch);
    if (st != SD_OK) {
        sd_atomic_abort(&af);
        return st;
    }
    return sd_atomic_commit(&af, err);
}
