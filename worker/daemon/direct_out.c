/* direct_out.c - see direct_out.h. */
#include "worker/daemon/direct_out.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/output_item.h"

static const char *out_str(const sd_msg *task, const char *key)
{
    return json_string_value(json_object_get(json_object_get(task->hdr, "out"), key));
}

const char *sd_direct_out_dir(const sd_msg *task)
{
    const char *dir = out_str(task, "dir");
    return dir ? dir : "";
}

int sd_direct_out_ready(sd_direct_out *c, const sd_msg *task, int *checked)
{
    const char *job = json_string_value(json_object_get(task->hdr, "job"));
    const char *dir = out_str(task, "dir"), *ext = out_str(task, "ext"), *token = out_str(task, "token");
    *checked = 0;
    if (!job || !dir || !ext || !token || strlen(token) != 32 || strchr(ext, '/'))
        return 0;
    if (strcmp(c->job, job) || strcmp(c->token, token)) {
        snprintf(c->job, sizeof c->job, "%s", job);
        snprintf(c->token, sizeof c->token, "%s", token);
        c->ok = sd_output_marker_matches(dir, job, token);
        *checked = 1;
    }
    return c->ok;
}

sd_status sd_direct_out_write(const sd_msg *task, long long idx, const void *image, size_t len, const json_t *info,
                              int sync, sd_error *err)
{
    json_t *meta = json_deep_copy(info);
    if (!json_is_object(meta)) {
        json_decref(meta);
        meta = json_object();
    }
    json_object_del(meta, "source"); /* as the coordinator writes it (broker_results.c) */
    char *text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    int staged = json_is_true(json_object_get(json_object_get(task->hdr, "out"), "staged"));
    sd_status st = text ? sd_output_item_write(out_str(task, "dir"), staged, (int)idx, out_str(task, "ext"), image, len,
                                               text, sync, err)
                        : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    free(text);
    return st;
}
