/* param_loader.c - see param_loader.h. */
#include "worker/engine/weights/param_loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/lora.h"
#include "worker/engine/weights/lora_merge.h"

sd_status sd_param_begin(sd_param_loader *pl, sd_backend *be, const sd_weights *w, sd_error *err)
{
    memset(pl, 0, sizeof *pl);
    pl->be = be;
    pl->w = w;
    pl->used = calloc(w->n ? w->n : 1, 1);
    if (!pl->used)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    return SD_OK;
}

void sd_param_prefix(sd_param_loader *pl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pl->prefix, sizeof pl->prefix, fmt, ap);
    va_end(ap);
}

static long find_index(const sd_weights *w, const char *name)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(w->tensors[mid]->name, name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

void sd_param_begin_record(sd_param_loader *pl, sd_param_list *list)
{
    memset(pl, 0, sizeof *pl);
    pl->record = list;
}

void sd_param_list_free(sd_param_list *l)
{
    free(l->p);
    memset(l, 0, sizeof *l);
}

unsigned long long sd_param_list_numel(const sd_param_list *l)
{
    unsigned long long total = 0;
    for (int i = 0; i < l->n; i++) {
        unsigned long long n = 1;
        for (int d = 0; d < l->p[i].ndim; d++)
            n *= (unsigned long long)l->p[i].shape[d];
        total += n;
    }
    return total;
}

static sd_status record(sd_param_loader *pl, const char *full, int ndim, const int64_t *shape, sd_tensor **out,
                        sd_error *err)
{
    static sd_tensor placeholder;
    sd_param_list *l = pl->record;
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 512;
        sd_param_info *np = realloc(l->p, (size_t)nc * sizeof *np);
        if (!np)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        l->p = np;
        l->cap = nc;
    }
    sd_param_info *pi = &l->p[l->n++];
    snprintf(pi->name, sizeof pi->name, "%s", full);
    pi->ndim = ndim;
    for (int i = 0; i < ndim && i < 4; i++)
        pi->shape[i] = shape[i];
    *out = &placeholder;
    return SD_OK;
}

/* The tensor was copied (converted, or uploaded to a device): drop its pages
 * of the file mapping, so a model's weights are held once, not twice
 * (mapped pages of the file plus the converted copy). */
static void release_source_pages(const sd_st_tensor *t)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t b = ((uintptr_t)t->data + (t->end - t->begin)) & ~(page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* The parameter in fp32 with every LoRA delta naming it merged. */
static sd_status merge_lora(const sd_param_loader *pl, const char *full, const sd_st_tensor *t, size_t first,
                            size_t count, float **out, sd_error *err)
{
    size_t numel = sd_st_numel(t);
    float *w = malloc(numel * sizeof *w);
    if (!w)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_convert_to_f32(w, t->data, t->dtype, numel);
    for (size_t k = first; k < first + count; k++) {
        sd_status st = sd_lora_merge(w, (size_t)t->shape[0], numel / (size_t)t->shape[0], pl->lora->d[k], err);
        if (st != SD_OK) {
            free(w);
            return sd_error_prefix(err, st, "%s: ", full);
        }
    }
    *out = w;
    return SD_OK;
}

static sd_status load(sd_param_loader *pl, const char *name, int ndim, const int64_t *shape, sd_tensor **out,
                      int optional, sd_error *err)
{
    *out = NULL;
    char full[512];
    snprintf(full, sizeof full, "%s%s", pl->prefix, name);
    if (pl->record)
        return record(pl, full, ndim, shape, out, err);
    long idx = find_index(pl->w, full);
    if (idx < 0) {
        if (optional)
            return SD_OK;
        /* a single file's own key, when it is one in the original layout */
        char key[400];
        if (sd_weights_file_key(pl->w, full, key, sizeof key))
            return sd_fail(err, SD_ERR_MISSING, "%s: key '%s' is missing (diffusers' '%s')", pl->w->description, key,
                           full);
        return sd_fail(err, SD_ERR_MISSING, "%s: tensor '%s' is missing", pl->w->description, full);
    }
    const sd_st_tensor *t = pl->w->tensors[idx];
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char want[128] = "[", got[128] = "[";
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), i ? ",%lld" : "%lld", (long long)shape[i]);
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), i ? ",%lld" : "%lld", (long long)t->shape[i]);
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' has shape %s], the config implies %s]",
                       pl->w->description, full, got, want);
    }
    if (!sd_dtype_is_float(t->dtype))
        return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' is %s, not floating point", pl->w->description, full,
                       sd_dtype_name(t->dtype));
    if (pl->n_owned == pl->cap_owned) {
        int nc = pl->cap_owned ? pl->cap_owned * 2 : 256;
        sd_tensor **no = realloc(pl->owned, (size_t)nc * sizeof *no);
        if (!no)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        pl->owned = no;
        pl->cap_owned = nc;
    }
    sd_tensor *tt = calloc(1, sizeof *tt);
    if (!tt)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    size_t nlora = 0, first = pl->lora ? sd_lora_deltas_find(pl->lora, full, &nlora) : 0;
    float *merged = NULL;
    sd_status st = nlora ? merge_lora(pl, full, t, first, nlora, &merged, err) : SD_OK;
    if (st == SD_OK && merged)
        st = sd_tensor_from_host(pl->be, tt, merged, SD_DTYPE_F32, ndim, shape, 0, err);
    else if (st == SD_OK)
        st = sd_tensor_from_host(pl->be, tt, t->data, t->dtype, ndim, shape, 1, err);
    free(merged);
    if (st != SD_OK) {
        free(tt);
        return sd_error_prefix(err, st, "%s: tensor '%s': ", pl->w->description, full);
    }
    pl->owned[pl->n_owned++] = tt;
    pl->borrowed += !tt->owned;
    if (tt->owned)
        release_source_pages(t);
    pl->used[idx] = 1;
    pl->bytes += tt->bytes;
    *out = tt;
    return SD_OK;
}

sd_status sd_param_get(sd_param_loader *pl, const char *name, int ndim, const int64_t *shape, sd_tensor **out,
                        sd_error *err)
{
    return load(pl, name, ndim, shape, out, 0, err);
}

sd_status sd_param_get_opt(sd_param_loader *pl, const char *name, int ndim, const int64_t *shape,
                            sd_tensor **out, sd_error *err)
{
    return load(pl, name, ndim, shape, out, 1, err);
}

void sd_param_skip_prefix(sd_param_loader *pl, const char *prefix)
{
    if (pl->record)
        return;
    size_t lp = strlen(prefix);
    for (size_t i = 0; i < pl->w->n; i++)
        if (!strncmp(pl->w->tensors[i]->name, prefix, lp))
            pl->used[i] = 1;
}

sd_status sd_param_check_all_used(sd_param_loader *pl, const char *const *ignore, sd_error *err)
{
    if (pl->record)
        return SD_OK;
    for (size_t i = 0; i < pl->w->n; i++) {
        if (pl->used[i])
            continue;
        const char *name = pl->w->tensors[i]->name;
        int skip = 0;
        for (int k = 0; ignore && ignore[k] && !skip; k++) {
            size_t ln = strlen(name), ls = strlen(ignore[k]);
            skip = ln >= ls && strcmp(name + ln - ls, ignore[k]) == 0;
        }
        if (!skip)
            return sd_fail(err, SD_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of the model the config describes)",
                           pl->w->description, name);
    }
    return SD_OK;
}

void sd_param_end(sd_param_loader *pl)
{
    free(pl->used);
    pl->used = NULL;
}

void sd_param_free_all(sd_tensor **owned, int n)
{
    for (int i = 0; i < n; i++) {
        sd_tensor_free(owned[i]);
        free(owned[i]);
    }
    free(owned);
}

sd_status sd_param_set_open(sd_param_set *ps, sd_param_loader *pl, sd_backend *be, const sd_component *c,
                            const char *variant, sd_error *err)
{
    memset(ps, 0, sizeof *ps);
    memset(pl, 0, sizeof *pl);
    SD_TRY(sd_weights_open(&ps->w, c, variant, err));
    ps->mapped = 1;
    sd_status st = sd_param_begin(pl, be, &ps->w, err);
    pl->lora = c->lora;
    if (st != SD_OK) {
        sd_weights_close(&ps->w);
        ps->mapped = 0;
    }
    return st;
}

void sd_param_set_finish(sd_param_set *ps, sd_param_loader *pl, int ok)
{
    ps->owned = pl->owned;
    ps->n_owned = pl->n_owned;
    ps->bytes = pl->bytes;
    int borrowed = pl->borrowed;
    sd_param_end(pl);
    pl->owned = NULL;
    pl->n_owned = 0;
    if (!ok) {
        sd_param_set_free(ps);
        return;
    }
    if (!borrowed && ps->mapped) {
        sd_weights_close(&ps->w);
        ps->mapped = 0;
    }
}

void sd_param_set_free(sd_param_set *ps)
{
    sd_param_free_all(ps->owned, ps->n_owned);
    if (ps->mapped)
        sd_weights_close(&ps->w);
    memset(ps, 0, sizeof *ps);
}
