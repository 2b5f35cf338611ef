/* outputs.c - see outputs.h. */
#include "coordinator/outputs.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/output_item.h"

void outputs_from_spec(sd_outputs *o, json_t *spec)
{
    memset(o, 0, sizeof *o);
    o->dir = json_string_value(json_object_get(spec, "out"));
    const char *fmt = json_string_value(json_object_get(spec, "format"));
    o->ext = fmt && !strcmp(fmt, "webp") ? "webp" : fmt && !strcmp(fmt, "jpeg") ? "jpg" : "png";
    const char *layout = json_string_value(json_object_get(spec, "layout"));
    o->webdataset = !layout || strcmp(layout, "files") != 0;
    json_t *ss = json_object_get(spec, "shard_size");
    o->shard_size = json_is_integer(ss) && json_integer_value(ss) > 0 ? (int)json_integer_value(ss) : 1000;
    o->total = (int)json_integer_value(json_object_get(spec, "total"));
}

/* the test hook of --fault shard:N (main_coordinator.c): the process dies
 * (as SIGKILL would) at step N of assembling a shard: 1 its temp file
 * created, 2 its members written, 3 renamed into place, 4 after the first
 * staged file is removed */
static int fault_step;

void outputs_set_fault(int step)
{
    fault_step = step;
}

static void fault_at(int step)
{
    if (fault_step == step) {
        fprintf(stderr, "coordinator: fault hook: dying at shard step %d\n", step);
        _exit(137);
    }
}

static char *item_path(const sd_outputs *o, int idx, const char *ext)
{
    return sd_output_item_path(o->dir, o->webdataset, idx, ext);
}

static char *shard_path(const sd_outputs *o, int shard)
{
    char name[32];
    snprintf(name, sizeof name, "%06d.tar", shard);
    return sd_path_join(o->dir, name);
}

sd_status outputs_write_item(const sd_outputs *o, int idx, const void *image, size_t len, json_t *meta, sd_error *err)
{
    char *text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    sd_status st = text ? sd_output_item_write(o->dir, o->webdataset, idx, o->ext, image, len, text, 1, err)
                        : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    free(text);
    return st;
}

int outputs_item_exists(const sd_outputs *o, int idx)
{
    if (o->webdataset) {
        char *sp = shard_path(o, idx / o->shard_size);
        int e = sp && sd_path_exists(sp);
        free(sp);
        if (e)
            return 1;
    }
    return sd_output_item_exists(o->dir, o->webdataset, idx, o->ext);
}

/* ---- tar (ustar) ---- */
static void octal(char *dst, size_t width, unsigned long long v)
{
    snprintf(dst, width, "%0*llo", (int)width - 1, v);
}

static int tar_member(FILE *fp, const char *name, const void *data, size_t len)
{
    unsigned char h[512];
    memset(h, 0, sizeof h);
    snprintf((char *)h, 100, "%s", name);
    octal((char *)h + 100, 8, 0644);
    octal((char *)h + 108, 8, 0);
    octal((char *)h + 116, 8, 0);
    octal((char *)h + 124, 12, len);
    octal((char *)h + 136, 12, 0); /* fixed mtime: identical shards for identical items */
    memset(h + 148, ' ', 8);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    static const unsigned char zero[512];
    size_t pad = (512 - len % 512) % 512;
    return fwrite(h, 1, 512, fp) != 512 || (len && fwrite(data, 1, len, fp) != len) ||
           (pad && fwrite(zero, 1, pad, fp) != pad);
}

/* the staged files of a shard's items, once the shard holds them (or a
 * crash between its rename and these unlinks left them: they go then) */
static void remove_staged(const sd_outputs *o, int shard)
{
    int first = shard * o->shard_size, last = first + o->shard_size;
    if (last > o->total)
        last = o->total;
    int removed = 0;
    for (int i = first; i < last; i++) {
        const char *exts[2] = {o->ext, "json"};
        for (int k = 0; k < 2; k++) {
            char *p = item_path(o, i, exts[k]);
            if (p && unlink(p) == 0 && !removed++)
                fault_at(4);
            free(p);
        }
    }
}

/* Copies the members of an existing shard (headers and data, as they are)
 * into out, noting in held[i - first] each item it holds. 0, or -1 (errno). */
static int copy_members(const char *path, FILE *out, int first, int last, unsigned char *held)
{
    FILE *in = fopen(path, "rb");
    if (!in)
        return -1;
    unsigned char h[512], buf[1 << 16];
    int rc = 0;
    while (fread(h, 1, 512, in) == 512) {
        int blank = 1;
        for (int i = 0; i < 512 && blank; i++)
            blank = h[i] == 0;
        if (blank) /* the end-of-archive blocks */
            break;
        char size_text[13];
        memcpy(size_text, h + 124, 12);
        size_text[12] = '\0';
        unsigned long long size = strtoull(size_text, NULL, 8), left = (size + 511) / 512 * 512;
        int idx = atoi((const char *)h); /* "%08d.ext" */
        if (idx >= first && idx < last)
            held[idx - first] = 1;
        if (fwrite(h, 1, 512, out) != 512)
            rc = -1;
        while (rc == 0 && left > 0) {
            size_t n = fread(buf, 1, left < sizeof buf ? (size_t)left : sizeof buf, in);
            if (n == 0 || fwrite(buf, 1, n, out) != n)
                rc = -1;
            left -= n;
        }
        if (rc)
            break;
    }
    fclose(in);
    return rc;
}

/* Writes shard `shard`: the samples of its done items (finished() == 1)
 * whose files are staged, after those an existing shard already holds (an
 * item retried after its shard was written: the shard is rewritten with it
 * rather than left as it was, which dropped it). A shard with no sample is
 * not written. *written says whether a file was written. */
static sd_status write_shard(const sd_outputs *o, int shard, int (*finished)(void *, int), void *user, int *written,
                             sd_error *err)
{
    *written = 0;
    int first = shard * o->shard_size, last = first + o->shard_size;
    if (last > o->total)
        last = o->total;
    char *path = shard_path(o, shard);
    if (!path)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    int exists = sd_path_exists(path), staged = 0;
    /* done items with staged files: what this write adds (the staged image is
     * checked first: a stat, where finished() asks the store) */
    unsigned char *add = calloc((size_t)(last - first) + 1, 1), *held = calloc((size_t)(last - first) + 1, 1);
    for (int i = first; add && i < last; i++) {
        char *img = item_path(o, i, o->ext), *js = item_path(o, i, "json");
        add[i - first] = img && js && sd_path_exists(img) && sd_path_exists(js) && finished(user, i) == 1;
        staged += add[i - first];
        free(img);
        free(js);
    }
    sd_status st = add && held ? SD_OK : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (st != SD_OK || staged == 0) { /* nothing to add: an existing shard stays as it is */
        if (st == SD_OK && exists)
            remove_staged(o, shard);
        free(path);
        free(add);
        free(held);
        return st;
    }
    sd_atomic_file af;
    st = sd_atomic_open(&af, path, err);
    if (st == SD_OK)
        fault_at(1);
    if (st == SD_OK && exists && copy_members(path, af.fp, first, last, held) != 0)
        st = sd_fail(err, SD_ERR_IO, "%s: cannot copy its samples: %s", path, strerror(errno));
    for (int i = first; i < last && st == SD_OK; i++) {
        if (!add[i - first] || held[i - first])
            continue; /* not done (failed, cancelled: no sample), or held already */
        const char *exts[2] = {o->ext, "json"};
        for (int k = 0; k < 2 && st == SD_OK; k++) {
            char *p = item_path(o, i, exts[k]);
            char *data = NULL;
            size_t len = 0;
            st = p ? sd_read_file(p, &data, &len, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
            char name[64];
            snprintf(name, sizeof name, "%08d.%s", i, exts[k]);
            if (st == SD_OK && tar_member(af.fp, name, data, len))
                st = sd_fail(err, SD_ERR_IO, "%s: write failed: %s", af.tmp, strerror(errno));
            free(data);
            free(p);
        }
    }
    static const unsigned char end[1024];
    if (st == SD_OK && fwrite(end, 1, sizeof end, af.fp) != sizeof end)
        st = sd_fail(err, SD_ERR_IO, "%s: write failed: %s", af.tmp, strerror(errno));
    free(path);
    free(add);
    free(held);
    if (st != SD_OK) {
        if (af.fp)
            sd_atomic_abort(&af);
        return st;
    }
    fflush(af.fp);
    fault_at(2);
    SD_TRY(sd_atomic_commit(&af, err));
    fault_at(3);
    remove_staged(o, shard);
    *written = 1;
    return SD_OK;
}

int outputs_shard_of(const sd_outputs *o, int idx, int *first, int *last)
{
    int s = idx / o->shard_size;
    *first = s * o->shard_size;
    *last = *first + o->shard_size < o->total ? *first + o->shard_size : o->total;
    return s;
}

sd_status outputs_write_shard(const sd_outputs *o, int shard, int (*finished)(void *, int), void *user, int *written,
                              sd_error *err)
{
    *written = 0;
    if (!o->webdataset)
        return SD_OK;
    return write_shard(o, shard, finished, user, written, err);
}

/* Calls each(ctx, idx, info) for every done item, a page at a time;
 * stops at the first error. */
static sd_status each_done(outputs_done_page page, void *user,
                           sd_status (*each)(void *ctx, int idx, json_t *info, sd_error *err), void *ctx, sd_error *err)
{
    for (int after = -1;;) {
        json_t *done = page(user, after, 4096), *d;
        size_t i, got = json_array_size(done);
        sd_status st = SD_OK;
        json_array_foreach(done, i, d) {
            after = (int)json_integer_value(json_object_get(d, "idx"));
            if ((st = each(ctx, after, json_object_get(d, "info"), err)) != SD_OK)
                break;
        }
        json_decref(done);
        if (st != SD_OK || got < 4096)
            return st;
    }
}

typedef struct {
    const sd_outputs *o;
    int (*finished)(void *, int);
    void *user;
    int last_shard;
} flush_ctx;

static sd_status flush_one(void *ctx, int idx, json_t *info, sd_error *err)
{
    (void)info;
    flush_ctx *f = ctx;
    int shard = idx / f->o->shard_size, written;
    if (shard == f->last_shard) /* done items come in order: a shard's first one stands for it */
        return SD_OK;
    f->last_shard = shard;
    return outputs_write_shard(f->o, shard, f->finished, f->user, &written, err);
}

sd_status outputs_flush(const sd_outputs *o, int (*finished)(void *, int), outputs_done_page page, void *user,
                        sd_error *err)
{
    if (!o->webdataset)
        return SD_OK;
    /* only shards that hold a done item can have a sample to write: found
     * from the done items, so a cancelled job of 10^7 items costs nothing
     * here rather than a look at each of them */
    flush_ctx f = {o, finished, user, -1};
    return each_done(page, user, flush_one, &f, err);
}

typedef struct {
    const sd_outputs *o;
    void (*missing)(void *ctx, int idx);
    void *ctx;
} missing_ctx;

static sd_status missing_one(void *ctx, int idx, json_t *info, sd_error *err)
{
    (void)info;
    (void)err;
    missing_ctx *m = ctx;
    if (!outputs_item_exists(m->o, idx))
        m->missing(m->ctx, idx);
    return SD_OK;
}

void outputs_each_missing(const sd_outputs *o, outputs_done_page page, void *user, void (*missing)(void *ctx, int idx),
                          void *ctx)
{
    missing_ctx m = {o, missing, ctx};
    sd_error ignored;
    each_done(page, user, missing_one, &m, &ignored);
}

/* "NAME.tmp.PID" of a process other than this one: an atomic write that a
 * crash cut short (its file was never renamed into place) */
static int stale_temp(const char *name)
{
    const char *t = strstr(name, ".tmp.");
    if (!t || !t[5])
        return 0;
    char *end;
    long pid = strtol(t + 5, &end, 10);
    return !*end && pid > 0 && pid != (long)getpid();
}

static void sweep_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!stale_temp(e->d_name))
            continue;
        char *p = sd_path_join(dir, e->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    closedir(d);
}

void outputs_sweep(const sd_outputs *o)
{
    sweep_dir(o->dir);
    if (o->webdataset) {
        char *staging = sd_path_join(o->dir, ".staging");
        if (staging) {
            sweep_dir(staging);
            rmdir(staging); /* only if empty: items of unwritten shards stay */
        }
        free(staging);
    }
}

typedef struct {
    const sd_outputs *o;
    FILE *fp;
    const char *path;
} metadata_ctx;

static sd_status metadata_line(void *ctx, int idx, json_t *info, sd_error *err)
{
    metadata_ctx *m = ctx;
    json_t *line = json_deep_copy(info);
    char key[16], file[32];
    snprintf(key, sizeof key, "%08d", idx);
    snprintf(file, sizeof file, "%08d.%s", idx, m->o->ext);
    json_object_set_new(line, "key", json_string(key));
    /* file_name: what Hugging Face datasets' imagefolder loader reads */
    json_object_set_new(line, "file_name", json_string(file));
    int bad = json_dumpf(line, m->fp, JSON_COMPACT | JSON_SORT_KEYS) != 0 || fputc('\n', m->fp) == EOF;
    json_decref(line);
    return bad ? sd_fail(err, SD_ERR_IO, "%s: write failed: %s", m->path, strerror(errno)) : SD_OK;
}

sd_status outputs_write_metadata(const sd_outputs *o, outputs_done_page page, void *user, sd_error *err)
{
    if (o->webdataset)
        return SD_OK;
    char *path = sd_path_join(o->dir, "metadata.jsonl");
    if (!path)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_atomic_file af;
    sd_status st = sd_atomic_open(&af, path, err);
    if (st == SD_OK) { /* page by page: a 10^7-item job's metadata is never held whole */
        metadata_ctx m = {o, af.fp, path};
        st = each_done(page, user, metadata_line, &m, err);
        if (st == SD_OK)
            st = sd_atomic_commit(&af, err);
        else
            sd_atomic_abort(&af);
    }
    free(path);
    return st;
}
