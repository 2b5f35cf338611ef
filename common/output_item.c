/* output_item.c - see output_item.h. */
#include "common/output_item.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/fsutil.h"

char *sd_output_item_path(const char *dir, int staged, int idx, const char *ext)
{
    char name[64];
    snprintf(name, sizeof name, "%s%08d.%s", staged ? ".staging/" : "", idx, ext);
    return sd_path_join(dir, name);
}

static sd_status write_file(const char *path, const void *data, size_t len, int sync, sd_error *err)
{
    if (sync)
        return sd_write_file_atomic(path, data, len, err);
    sd_atomic_file af;
    SD_TRY(sd_atomic_open(&af, path, err));
    af.no_sync = 1;
    if (len && fwrite(data, 1, len, af.fp) != len) {
        sd_atomic_abort(&af);
        return sd_fail(err, SD_ERR_IO, "%s: write failed", path);
    }
    return sd_atomic_commit(&af, err);
}

sd_status sd_output_item_write(const char *dir, int staged, int idx, const char *ext, const void *image, size_t len,
                               const char *json_text, int sync, sd_error *err)
{
    char *sub = staged ? sd_path_join(dir, ".staging") : strdup(dir);
    sd_status st = sub ? sd_mkdirs(sub, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    free(sub);
    SD_TRY(st);
    char *img = sd_output_item_path(dir, staged, idx, ext), *js = sd_output_item_path(dir, staged, idx, "json");
    if (!img || !js)
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    /* the image first, its JSON last: a complete JSON marks a complete item */
    if (st == SD_OK)
        st = write_file(img, image, len, sync, err);
    if (st == SD_OK)
        st = write_file(js, json_text, strlen(json_text), sync, err);
    free(img);
    free(js);
    return st;
}

int sd_output_item_exists(const char *dir, int staged, int idx, const char *ext)
{
    char *img = sd_output_item_path(dir, staged, idx, ext), *js = sd_output_item_path(dir, staged, idx, "json");
    int e = img && js && sd_path_exists(img) && sd_path_exists(js);
    free(img);
    free(js);
    return e;
}

char *sd_output_marker_path(const char *dir, const char *job)
{
    char name[96];
    snprintf(name, sizeof name, ".sdxl-job-%s", job);
    return sd_path_join(dir, name);
}

sd_status sd_output_marker_write(const char *dir, const char *job, char token[33], sd_error *err)
{
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return sd_fail(err, SD_ERR_IO, "no random bytes for the marker of job %s", job);
    for (int i = 0; i < 16; i++)
        snprintf(token + 2 * i, 3, "%02x", r[i]);
    SD_TRY(sd_mkdirs(dir, err));
    char *path = sd_output_marker_path(dir, job);
    sd_status st = path ? sd_write_file_atomic(path, token, 32, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    free(path);
    return st;
}

int sd_output_marker_matches(const char *dir, const char *job, const char *token)
{
    char *path = sd_output_marker_path(dir, job), *text = NULL;
    size_t len = 0;
    sd_error err;
    int same = path && sd_read_file(path, &text, &len, &err) == SD_OK && len == 32 && strlen(token) == 32 &&
               !memcmp(text, token, 32);
    free(path);
    free(text);
    return same;
}
