/* worker_outputs.c - how a task's inputs and outputs travel (see
 * worker_internal.h): fetched from the workers that hold them, held for the
 * next stage, written into the job's folder, and the worker's metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "proto/tensor_blob.h"
#include "worker/daemon/worker_internal.h"

/* The inputs a task's items name a source for (text conditioning or
 * latents their producer holds), fetched from there and attached to a copy of the task as
 * if the coordinator had sent them: *full is that copy (or NULL when none
 * was needed), blobs[] the fetched data it borrows. Items whose input is
 * gone are listed in lost (a new array, or NULL). */
sd_status worker_fetch_inputs(worker *w, const sd_msg *task, sd_msg *full, int *have_full, void **blobs,
                              json_t **lost, sd_error *err)
{
    json_t *items = json_object_get(task->hdr, "items"), *item;
    const char *job = json_string_value(json_object_get(task->hdr, "job"));
    size_t k;
    *have_full = 0;
    *lost = NULL;
    /* text conditioning and latents are held by their producers; a pair's
     * follower gets the task its leader fetched for */
    if (!strcmp(w->o->role, "text") || !w->sock)
        return SD_OK;
    int timeout_ms = 3 * w->o->heartbeat_ms > 2000 ? 3 * w->o->heartbeat_ms : 2000;
    json_array_foreach(items, k, item) {
        if (k >= MAX_FETCH)
            break;
        size_t len = 0;
        int has_source;
        sd_error ferr = {0};
        sd_status st = w->fetcher ? sd_data_fetch_item(w->fetcher, job, item, timeout_ms, &has_source, &blobs[k], &len,
                                                       &ferr)
                                  : sd_fail(&ferr, SD_ERR_NOMEM, "no fetcher");
        if (!has_source)
            continue;
        if (!*have_full) {
            SD_TRY(sd_msg_clone(full, task, err));
            *have_full = 1;
        }
        if (st != SD_OK) {
            wlog(w, "item %lld: its input is not to be had (%s)",
                 (long long)json_integer_value(json_object_get(item, "idx")), ferr.msg);
            if (!*lost)
                *lost = json_array();
            json_array_append_new(*lost, json_incref(json_object_get(item, "idx")));
            continue;
        }
        w->m.fetched += len;
        char suffix[16];
        snprintf(suffix, sizeof suffix, "%zu", k);
        SD_TRY(sd_blob_attach(full, blobs[k], len, suffix, err));
    }
    return SD_OK;
}

void worker_free_fetched(sd_msg *full, int have_full, void **blobs)
{
    if (have_full)
        sd_msg_free(full);
    for (int k = 0; k < MAX_FETCH; k++)
        free(blobs[k]);
}

/* A text or unet worker keeps what it made (data_plane.h) and tells the
 * coordinator only that it holds it: res becomes a RESULT without tensors. */
sd_status worker_hold_outputs(worker *w, const sd_msg *task, sd_msg *res, json_t *out_items, sd_error *err)
{
    const char *job = json_string_value(json_object_get(task->hdr, "job"));
    size_t k;
    json_t *it;
    json_array_foreach(out_items, k, it) {
        void *blob;
        size_t len;
        char key[96];
        SD_TRY(sd_blob_pack_item(res, (int)k, &blob, &len, err));
        sd_data_key(key, sizeof key, job ? job : "", json_integer_value(json_object_get(it, "idx")));
        sd_error spool_err = {0};
        sd_status st = sd_data_server_hold(w->data, key, blob, len, &spool_err, err);
        free(blob);
        SD_TRY(st);
        /* said when the spool starts failing and when it works again, not
         * for every item of a full disk */
        if (spool_err.code != SD_OK && !w->spool_failing)
            wlog(w, "spool %s cannot be written: outputs held in memory only until it can (%s)", w->spool,
                 spool_err.msg);
        else if (spool_err.code == SD_OK && w->spool_failing)
            wlog(w, "spool %s written again", w->spool);
        w->spool_failing = spool_err.code != SD_OK;
        json_object_set_new(json_object_get(it, "info"), "held", json_true());
    }
    return sd_result_lean(res, err);
}

/* A unet worker's spool: --spool, else /var/tmp/sdxl-spool-UID/ID; then a
 * folder per model identity, so a restart with another model never serves
 * an old one's latents. */
sd_status worker_spool_folder(worker *w, char *out, size_t len, sd_error *err)
{
    char base[PATH_MAX];
    if (w->o->spool)
        snprintf(base, sizeof base, "%s", w->o->spool);
    else
        snprintf(base, sizeof base, "/var/tmp/sdxl-spool-%ld/%s", (long)getuid(), w->o->worker_id);
    if (snprintf(out, len, "%s/%s", base, w->identity) >= (int)len)
        return sd_fail(err, SD_ERR_INVALID, "--spool %s: path too long", base);
    return SD_OK;
}

/* A final worker writes the images into the job's folder itself when the
 * coordinator shares it (common/output_item.h: the marker holds the task's
 * token), and reports only that they are written; else, or when a write
 * fails (a full disk: the coordinator pauses the job), res keeps the bytes
 * and the coordinator writes them. Returns 1 when res became lean. */
int worker_write_outputs(worker *w, const sd_msg *task, sd_msg *res, json_t *out_items)
{
    const char *job = json_string_value(json_object_get(task->hdr, "job"));
    int checked, ok = sd_direct_out_ready(&w->direct, task, &checked);
    if (checked)
        wlog(w, ok ? "job %s: its folder %s is the coordinator's here: this worker writes the images"
                   : "job %s: its folder %s is not the coordinator's here (no marker with its token): images go to "
                     "the coordinator",
             job, sd_direct_out_dir(task));
    if (!ok)
        return 0;
    size_t k;
    json_t *it;
    json_array_foreach(out_items, k, it) {
        char name[32];
        snprintf(name, sizeof name, "image_%zu", k);
        const sd_msg_tensor *img = sd_msg_tensor_get(res, name);
        sd_error err = {0};
        sd_status st = img ? sd_direct_out_write(task, json_integer_value(json_object_get(it, "idx")), img->data,
                                                 img->nbytes, json_object_get(it, "info"), 1, &err)
                           : sd_fail(&err, SD_ERR_FORMAT, "no %s", name);
        if (st != SD_OK) {
            wlog(w, "job %s: writing into %s: %s; the images go to the coordinator", job, sd_direct_out_dir(task),
                 err.msg);
            return 0;
        }
    }
    json_array_foreach(out_items, k, it) json_object_set_new(json_object_get(it, "info"), "written", json_true());
    sd_error err = {0};
    return sd_result_lean(res, &err) == SD_OK;
}

/* The worker's /metrics (Prometheus' text format), at most once a second. */
void worker_render_metrics(worker *w)
{
    double now = sd_now_s();
    if (!w->probe || now - w->m.rendered < 1.0)
        return;
    w->m.rendered = now;
    sd_metrics_buf t = {0};
    char labels[400];
    snprintf(labels, sizeof labels, "role=\"%s\",model=\"%s\",backend=\"%s\"", w->o->role, w->identity,
             w->be ? sd_backend_name(w->be) : "");
    sd_metrics_family(&t, "sdxl_worker_info", "gauge", "The worker's role, model identity and compute backend.");
    sd_metrics_sample(&t, "sdxl_worker_info", labels, 1);
    sd_metrics_family(&t, "sdxl_worker_registered", "gauge", "1 while registered with its coordinator.");
    sd_metrics_sample(&t, "sdxl_worker_registered", NULL, w->registered);
    sd_metrics_family(&t, "sdxl_worker_model_load_seconds", "gauge", "How long loading its model took.");
    sd_metrics_sample(&t, "sdxl_worker_model_load_seconds", NULL, w->m.load_s);
    sd_metrics_family(&t, "sdxl_worker_items_total", "counter", "Items this worker computed.");
    sd_metrics_sample(&t, "sdxl_worker_items_total", NULL, (double)w->m.items);
    sd_metrics_family(&t, "sdxl_worker_tasks_failed_total", "counter", "Tasks this worker reported failed.");
    sd_metrics_sample(&t, "sdxl_worker_tasks_failed_total", NULL, (double)w->m.tasks_failed);
    sd_metrics_family(&t, "sdxl_worker_unet_steps_total", "counter", "Denoising steps run (UNet and refiner).");
    sd_metrics_sample(&t, "sdxl_worker_unet_steps_total", NULL, (double)w->m.steps);
    sd_metrics_family(&t, "sdxl_worker_busy_seconds_total", "counter", "Time spent computing tasks.");
    sd_metrics_sample(&t, "sdxl_worker_busy_seconds_total", NULL, w->m.busy_s);
    sd_metrics_family(&t, "sdxl_worker_data_bytes_total", "counter",
                      "Stage outputs moved worker to worker: fetched from their holders, served to their consumers.");
    sd_metrics_sample(&t, "sdxl_worker_data_bytes_total", "direction=\"fetched\"", (double)w->m.fetched);
    sd_metrics_sample(&t, "sdxl_worker_data_bytes_total", "direction=\"served\"",
                      (double)sd_data_server_served_bytes(w->data));
    size_t mem = 0;
    if (sd_backend_memory_in_use(w->be, &mem)) {
        sd_metrics_family(&t, "sdxl_worker_device_memory_bytes", "gauge",
                          "Memory in use on its device (a GPU: the device's used memory; the CPU backend: the "
                          "process's resident memory).");
        sd_metrics_sample(&t, "sdxl_worker_device_memory_bytes", NULL, (double)mem);
    }
    sd_metrics_family(&t, "sdxl_worker_item_seconds", "histogram", "Compute time of one item.");
    sd_hist_write(&t, "sdxl_worker_item_seconds", NULL, &w->m.item_s);
    if (t.failed)
        sd_metrics_buf_free(&t);
    sd_http_set_metrics(w->probe, t.text);
}
