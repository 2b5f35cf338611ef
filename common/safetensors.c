/* safetensors.c - validating reader (mmap) and atomic writer. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const sd_st_tensor *)a)->name, ((const sd_st_tensor *)b)->name);
}

static int cmp_tensor_begin(const void *a, const void *b)
{
    const sd_st_tensor *x = *(const sd_st_tensor *const *)a;
    const sd_st_tensor *y = *(const sd_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

void sd_st_close(sd_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->metadata_json);
    if (f->map)
        munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

/* Parses one tensor entry of the header into t. */
static sd_status parse_entry(sd_st_tensor *t, const char *name, json_t *v, const char *path,
                             sd_error *err)
{
    if (!json_is_object(v))
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    json_t *jdt = json_object_get(v, "dtype");
    json_t *jshape = json_object_get(v, "shape");
    json_t *joff = json_object_get(v, "data_offsets");
    if (!json_is_string(jdt))
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': missing or non-string 'dtype'", path, name);
    if (sd_dtype_parse(json_string_value(jdt), &t->dtype) != 0)
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                       json_string_value(jdt));
    if (!json_is_array(jshape))
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': missing or non-array 'shape'", path, name);
    if (json_array_size(jshape) > SD_ST_MAX_DIMS)
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", path, name,
                       json_array_size(jshape), SD_ST_MAX_DIMS);
    if (!json_is_array(joff) || json_array_size(joff) != 2)
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': 'data_offsets' must be [begin, end]", path,
                       name);
    const char *extra_key;
    json_t *extra_val;
    json_object_foreach(v, extra_key, extra_val) {
        if (strcmp(extra_key, "dtype") && strcmp(extra_key, "shape") && strcmp(extra_key, "data_offsets"))
            return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': unexpected key '%s'", path, name,
                           extra_key);
    }
    t->ndim = (int)json_array_size(jshape);
    uint64_t bytes = sd_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        json_t *jd = json_array_get(jshape, (size_t)d);
        if (!json_is_integer(jd) || json_integer_value(jd) < 0)
            return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                           path, name, d);
        uint64_t dim = (uint64_t)json_integer_value(jd);
        t->shape[d] = (int64_t)dim;
        if (dim != 0 && bytes > UINT64_MAX / dim)
            return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': shape overflows", path, name);
        bytes *= dim;
    }
    for (int k = 0; k < 2; k++) {
        json_t *jo = json_array_get(joff, (size_t)k);
        if (!json_is_integer(jo) || json_integer_value(jo) < 0)
            return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': data_offsets[%d] is not a non-negative integer",
                           path, name, k);
    }
    t->begin = (uint64_t)json_integer_value(json_array_get(joff, 0));
    t->end = (uint64_t)json_integer_value(json_array_get(joff, 1));
    if (t->end < t->begin)
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s': data_offsets end %llu < begin %llu", path, name,
                       (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end - t->begin != bytes)
        return sd_fail(err, SD_ERR_FORMAT,
                       "%s: tensor '%s': shape x dtype size is %llu bytes but data_offsets span %llu",
                       path, name, (unsigned long long)bytes, (unsigned long long)(t->end - t->begin));
    return SD_OK;
}

static sd_status parse_metadata(sd_st_file *f, json_t *v, const char *path, sd_error *err)
{
    if (!json_is_object(v))
        return sd_fail(err, SD_ERR_FORMAT, "%s: '__metadata__' is not an object", path);
    const char *k;
    json_t *mv;
    json_object_foreach(v, k, mv) {
        if (!json_is_string(mv))
            return sd_fail(err, SD_ERR_FORMAT, "%s: '__metadata__.%s' is not a string", path, k);
    }
    f->metadata_json = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    return f->metadata_json ? SD_OK : sd_fail(err, SD_ERR_NOMEM, "%s: out of memory", path);
}

/* Checks that sorted by offset the tensors tile [0, data_size) exactly. */
static sd_status check_layout(sd_st_file *f, uint64_t data_size, const char *path, sd_error *err)
{
    if (f->n == 0) {
        if (data_size != 0)
            return sd_fail(err, SD_ERR_FORMAT, "%s: %llu data bytes but no tensors", path,
                           (unsigned long long)data_size);
        return SD_OK;
    }
    sd_st_tensor **order = malloc(f->n * sizeof *order);
    if (!order)
        return sd_fail(err, SD_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < f->n; i++)
        order[i] = &f->tensors[i];
    qsort(order, f->n, sizeof *order, cmp_tensor_begin);
    uint64_t pos = 0;
    sd_status st = SD_OK;
    for (size_t i = 0; i < f->n && st == SD_OK; i++) {
        const sd_st_tensor *t = order[i];
        if (t->begin < pos)
            st = sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' overlaps the previous tensor (begin %llu < %llu)",
                         path, t->name, (unsigned long long)t->begin, (unsigned long long)pos);
        else if (t->begin > pos)
            st = sd_fail(err, SD_ERR_FORMAT, "%s: hole in the data before tensor '%s' (begin %llu, expected %llu)",
                         path, t->name, (unsigned long long)t->begin, (unsigned long long)pos);
        else if (t->end > data_size)
            st = sd_fail(err, SD_ERR_FORMAT,
                         "%s: tensor '%s' ends at %llu, past the end of the data (%llu bytes)", path, t->name,
                         (unsigned long long)t->end, (unsigned long long)data_size);
        pos = t->end;
    }
    if (st == SD_OK && pos != data_size)
        st = sd_fail(err, SD_ERR_FORMAT, "%s: %llu trailing data bytes not covered by any tensor", path,
                     (unsigned long long)(data_size - pos));
    free(order);
    return st;
}

sd_status sd_st_parse(sd_st_file **out, const void *buf, size_t size, const char *path, sd_error *err)
{
    *out = NULL;
    if (size < 8)
        return sd_fail(err, SD_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", path, size);
    const unsigned char *p = buf;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > size - 8)
        return sd_fail(err, SD_ERR_FORMAT, "%s: header length %llu exceeds the file size %zu", path,
                       (unsigned long long)hlen, size);
    if (hlen > SD_ST_MAX_HEADER)
        return sd_fail(err, SD_ERR_FORMAT, "%s: header length %llu is over the %u-byte limit", path,
                       (unsigned long long)hlen, SD_ST_MAX_HEADER);
    if (hlen < 2)
        return sd_fail(err, SD_ERR_FORMAT, "%s: header length %llu is too short for JSON", path,
                       (unsigned long long)hlen);
    if (p[8] != '{')
        return sd_fail(err, SD_ERR_FORMAT, "%s: header does not start with '{'", path);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sd_fail(err, SD_ERR_FORMAT, "%s: header is not valid JSON (%s at byte %d)", path, jerr.text,
                       jerr.position);
    sd_st_file *f = calloc(1, sizeof *f);
    sd_status st = SD_OK;
    if (!f || !(f->path = strdup(path))) {
        st = sd_fail(err, SD_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (!json_is_object(root)) {
        st = sd_fail(err, SD_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto fail;
    }
    f->header_len = (size_t)hlen;
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = sd_fail(err, SD_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((st = parse_metadata(f, val, path, err)) != SD_OK)
                goto fail;
            continue;
        }
        if (key[0] == '\0' || strlen(key) > 4096) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s: empty or over-long tensor name", path);
            goto fail;
        }
        sd_st_tensor *t = &f->tensors[f->n];
        if ((st = parse_entry(t, key, val, path, err)) != SD_OK)
            goto fail;
        if (!(t->name = strdup(key))) {
            st = sd_fail(err, SD_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        f->n++;
    }
    uint64_t data_size = size - 8 - hlen;
    if ((st = check_layout(f, data_size, path, err)) != SD_OK)
        goto fail;
    const unsigned char *data = p + 8 + hlen;
    for (size_t i = 0; i < f->n; i++)
        f->tensors[i].data = data + f->tensors[i].begin;
    qsort(f->tensors, f->n, sizeof *f->tensors, cmp_tensor_name);
    json_decref(root);
    *out = f;
    return SD_OK;
fail:
    json_decref(root);
    sd_st_close(f);
    return st;
}

sd_status sd_st_open(sd_st_file **out, const char *path, sd_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sd_fail(err, SD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return sd_fail(err, SD_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return sd_fail(err, SD_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return sd_fail(err, SD_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    sd_st_file *f;
    sd_status st = sd_st_parse(&f, map, size, path, err);
    if (st != SD_OK) {
        munmap(map, size);
        return st;
    }
    f->map = map;
    f->map_size = size;
    *out = f;
    return SD_OK;
}

const sd_st_tensor *sd_st_find(const sd_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0)
            return &f->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t sd_st_numel(const sd_st_tensor *t)
{
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d];
    return n;
}

int64_t *sd_st_copy_i64(const sd_st_tensor *t)
{
    if (t->dtype != SD_DTYPE_I64)
        return NULL;
    size_t n = (size_t)sd_st_numel(t);
    int64_t *out = malloc((n ? n : 1) * sizeof *out);
    if (out && n)
        memcpy(out, t->data, n * sizeof *out);
    return out;
}
