/* broker_results.c - a worker's RESULT or FAIL for a task: each item
 * advances (its intermediate stored, or its image written) or is charged an
 * attempt; shards and metadata are written as items and jobs end. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/output_item.h"
#include "coordinator/broker_internal.h"
#include "proto/tensor_blob.h"


static int item_finished(void *user, int idx)
{
    broker_job *c = user;
    /* 1 done, 2 failed/cancelled, 0 not yet */
    int s = store_item_state_of(c->b->store, c->job, idx);
    return s == STORE_ITEM_STATE_DONE ? 1 : s >= STORE_ITEM_STATE_FAILED ? 2 : 0;
}

json_t *broker_done_page(void *user, int after, int limit)
{
    broker_job *c = user;
    return store_job_done_page(c->b->store, c->job, after, limit);
}

job_outputs *broker_outputs(broker *b, const char *job)
{
    for (int i = 0; i < OUTPUT_CACHE; i++)
        if (!strcmp(b->outs[i].job, job))
            return &b->outs[i];
    json_t *spec = store_job_spec(b->store, job);
    if (!spec)
        return NULL;
    job_outputs *c = &b->outs[b->next_out++ % OUTPUT_CACHE];
    memset(c, 0, sizeof *c);
    snprintf(c->job, sizeof c->job, "%s", job);
    outputs_from_spec(&c->o, spec);
    snprintf(c->dir, sizeof c->dir, "%s", c->o.dir ? c->o.dir : "");
    c->o.dir = c->dir;
    json_decref(spec);
    return c;
}

static const sd_outputs *outputs_of(broker *b, const char *job)
{
    job_outputs *c = broker_outputs(b, job);
    return c ? &c->o : NULL;
}

json_t *broker_direct_out(broker *b, const char *job)
{
    job_outputs *c = broker_outputs(b, job);
    if (!c || !c->dir[0])
        return NULL;
    if (!c->marked) {
        sd_error err = {0};
        c->marked = sd_output_marker_write(c->dir, job, c->token, &err) == SD_OK ? 1 : -1;
        if (c->marked < 0) /* the bytes come here then, and their write says what is wrong */
            broker_log("job %s: no marker for the final workers in %s: %s", job, c->dir, err.msg);
    }
    return c->marked > 0 ? json_pack("{s:s, s:b, s:s, s:s}", "dir", c->dir, "staged", c->o.webdataset, "ext", c->o.ext,
                                     "token", c->token)
                         : NULL;
}

/* WebDataset: each shard among the task's items whose items have all ended
 * is written now, so a long job yields shards (and empties its staging
 * folder) as it goes; the job's end writes whatever is left. */
static void write_ended_shards(broker *b, const task_t *t, const sd_outputs *o)
{
    if (!o || !o->webdataset)
        return;
    broker_job c = {b, t->job};
    int last_shard = -1;
    for (int k = 0; k < t->n; k++) {
        int first, last, shard = outputs_shard_of(o, t->idx[k], &first, &last), written = 0;
        if (shard == last_shard) /* a batch's items are mostly neighbours */
            continue;
        last_shard = shard;
        int left = store_items_unfinished(b->store, t->job, first, last);
        if (left)
            continue;
        sd_error err;
        if (outputs_write_shard(o, shard, item_finished, &c, &written, &err) != SD_OK)
            broker_log("job %s: writing shard %06d: %s", t->job, shard, err.msg);
        else if (written)
            broker_log("job %s: shard %06d written (items %d-%d); %d items of the job not yet ended", t->job, shard, first,
                  last - 1, store_job_unfinished(b->store, t->job));
    }
}

/* the job has ended: its shards (WebDataset) or metadata.jsonl (files) */
void broker_finish_job_outputs(broker *b, const char *job)
{
    const sd_outputs *o = outputs_of(b, job);
    if (!o)
        return;
    broker_job c = {b, job};
    sd_error err;
    if (outputs_flush(o, item_finished, broker_done_page, &c, &err) != SD_OK)
        broker_log("job %s: writing shards: %s", job, err.msg);
    if (outputs_write_metadata(o, broker_done_page, &c, &err) != SD_OK)
        broker_log("job %s: metadata: %s", job, err.msg);
    outputs_sweep(o);
    job_outputs *jo = broker_outputs(b, job);
    char *marker = jo && jo->marked > 0 ? sd_output_marker_path(jo->dir, job) : NULL;
    if (marker) /* a resubmission writes a new one */
        unlink(marker);
    free(marker);
    if (jo)
        jo->marked = 0;
}

/* An item's UNet result is held by a worker that is gone now but may come
 * back with its spool within the grace (--hold-grace-ms) */
static int holder_may_return(broker *b, const char *job, int idx)
{
    json_t *info = store_item_info(b->store, job, idx);
    json_t *src = json_object_get(info, "source");
    double gone_s = 0;
    int wait = json_is_object(src) && !broker_resolve_source(b, src, &gone_s) && gone_s * 1000.0 < b->o->hold_grace_ms;
    json_decref(info);
    return wait;
}

void broker_handle_result(broker *b, worker_t *w, const sd_msg *m, const unsigned char *route, size_t rl)
{
    long long tid;
    sd_error err;
    if (sd_msg_get_int(m, "task_id", 1, LLONG_MAX, &tid, &err) != SD_OK) {
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    task_t *t = broker_find_task(b, tid);
    if (!t || t->worker < 0 || &b->workers[t->worker] != w) {
        /* a task given up on (the worker was declared dead, or the job was
         * cancelled): its items went elsewhere, the result is dropped */
        b->m.expired++;
        broker_log("result of task %lld from %s ignored: the task is no longer assigned to it", tid, w->id);
        broker_reply(b, route, rl, "ERROR", json_pack("{s:s, s:I}", "reason", "task expired", "task_id", (json_int_t)tid));
        return;
    }
    json_t *items = json_object_get(m->hdr, "items");
    int is_fail = sd_msg_kind_of(m) == SD_MSG_KIND_FAIL;
    json_t *lost = json_object_get(m->hdr, "lost_inputs");
    if (is_fail && json_is_array(lost)) {
        /* inputs its producer no longer held (it died, or was cut off): not
         * the items' failure; those go back to the stage that makes them,
         * the task's others wait for another worker */
        const char *reason = json_string_value(json_object_get(m->hdr, "reason"));
        broker_log("task %lld (%s, job %s) on %s: %s", tid, t->stage, t->job, w->id, reason ? reason : "?");
        for (int k = 0; k < t->n; k++) {
            int gone = 0;
            size_t i;
            json_t *x;
            json_array_foreach(lost, i, x) gone |= json_integer_value(x) == t->idx[k];
            if (gone && !strcmp(t->stage, "final") && holder_may_return(b, t->job, t->idx[k]))
                continue; /* its latents are spooled by a holder that is restarting: it waits for it */
            b->m.inputs_lost += gone;
            if ((gone ? store_item_lost_input(b->store, t->job, t->idx[k], reason ? reason : "input lost",
                                              b->o->max_losses, &err)
                      : store_item_lost(b->store, t->job, t->idx[k], "its task's other inputs were lost",
                                        b->o->max_losses, &err)) != SD_OK)
                broker_log("job %s item %d: store: recording lost work: %s", t->job, t->idx[k], err.msg);
        }
        broker_task_done(b, t);
        broker_reply(b, route, rl, "OK", json_pack("{s:I}", "task_id", (json_int_t)tid));
        return;
    }
    if (is_fail) {
        const char *reason = json_string_value(json_object_get(m->hdr, "reason"));
        broker_log("task %lld (%s, job %s) failed on %s: %s", tid, t->stage, t->job, w->id, reason ? reason : "?");
        /* the one failure charged to the items: their worker says they failed */
        broker_requeue_task(b, t, reason ? reason : "worker reported failure", 1);
        broker_reply(b, route, rl, "OK", json_pack("{s:I}", "task_id", (json_int_t)tid));
        return;
    }
    store_item_state from = broker_input_state(t->stage);
    const sd_outputs *o = !strcmp(t->stage, "final") ? outputs_of(b, t->job) : NULL;
    for (int k = 0; k < t->n; k++) {
        int idx = t->idx[k];
        json_t *info = json_object_get(json_array_get(items, (size_t)k), "info");
        sd_status st = SD_OK;
        if (store_item_state_of(b->store, t->job, idx) != (int)from) {
            /* it moved on meanwhile (cancelled, or done by another task):
             * this result is stale, not the item's failure */
            broker_log("job %s item %d (task %lld): stale result ignored", t->job, idx, tid);
            continue;
        }
        int output_failed = 0, malformed = 0;
        if (!strcmp(t->stage, "final")) {
            char name[32];
            snprintf(name, sizeof name, "image_%d", k);
            const sd_msg_tensor *img = sd_msg_tensor_get(m, name);
            /* written by the worker into the folder we share (broker_direct_out):
             * only checked to be there */
            int written = json_is_true(json_object_get(info, "written"));
            if (!o)
                st = sd_fail(&err, SD_ERR_MISSING, "job %s has no stored spec", t->job);
            else if (written && !sd_output_item_exists(o->dir, o->webdataset, idx, o->ext))
                st = sd_fail(&err, SD_ERR_MISSING, "the worker says it wrote item %d into %s, which lacks it", idx,
                             o->dir), malformed = 1;
            else if (!written && (!img || img->dtype != SD_DTYPE_U8))
                st = sd_fail(&err, SD_ERR_FORMAT, "result lacks %s", name), malformed = 1;
            json_t *meta = json_deep_copy(info ? info : json_object());
            json_object_set_new(meta, "final_worker", json_string(w->id));
            json_object_del(meta, "source"); /* where its latents were: not the image's metadata */
            json_object_del(meta, "written");
            if (st == SD_OK && !written && (st = outputs_write_item(o, idx, img->data, img->nbytes, meta, &err)) != SD_OK)
                output_failed = 1;
            if (st == SD_OK)
                st = store_item_advance(b->store, t->job, idx, from, STORE_ITEM_STATE_DONE, NULL, 0, meta, &err);
            if (st == SD_OK) { /* written and recorded: its latents' holder may forget them */
                broker_release_source(b, t->job, idx, info);
                b->m.done++;
                broker_metrics_observe(b, meta);
                memmove(&b->m.recent[1], &b->m.recent[0], sizeof b->m.recent - sizeof b->m.recent[0]);
                snprintf(b->m.recent[0].job, sizeof b->m.recent[0].job, "%s", t->job);
                b->m.recent[0].idx = idx;
                b->m.nrecent += b->m.nrecent < 8;
            }
            json_decref(meta);
        } else {
            /* keep this item's tensors (suffix _k) as its intermediate,
             * unless its producer holds them (text conditioning, latents:
             * the next stage fetches them there, worker/daemon/data_plane.h) */
            void *blob = NULL;
            size_t len = 0;
            json_t *next_info = json_deep_copy(info ? info : json_object());
            int held = json_is_true(json_object_get(next_info, "held")) && w->data[0];
            json_object_del(next_info, "held");
            json_object_del(next_info, "source"); /* the input it was made from: fetched, done with */
            if (held) /* its holder by id: the dispatch looks up where it serves now */
                json_object_set_new(next_info, "source", json_pack("{s:s}", "worker", w->id));
            else if (sd_blob_pack_item(m, k, &blob, &len, &err) != SD_OK)
                st = sd_error_prefix(&err, err.code, "result: "), malformed = 1;
            /* when it entered its next stage's queue: the dispatch adds the
             * wait (the hop the coordinator adds between two stages) */
            json_object_set_new(next_info, "queued_at", json_real(broker_wall_s()));
            if (st == SD_OK)
                st = store_item_advance(b->store, t->job, idx, from, from + 1, blob, len, next_info, &err);
            json_decref(next_info);
            free(blob);
        }
        if (st != SD_OK) {
            /* none of these is the item's own failure: outputs that cannot
             * be written pause the job and are retried; a malformed result
             * counts as lost work (the loss rule stops a worker that always
             * sends one); a store failure leaves the item to be done again */
            broker_log("job %s item %d (task %lld): %s", t->job, idx, tid, err.msg);
            char why[sizeof err.msg];
            snprintf(why, sizeof why, "%s", err.msg);
            if (output_failed)
                broker_pause_job(b, t->job, why);
            else if (malformed && store_item_lost(b->store, t->job, idx, why, b->o->max_losses, &err) != SD_OK)
                broker_log("job %s item %d: store: recording lost work: %s", t->job, idx, err.msg);
        }
    }
    write_ended_shards(b, t, o);
    w->done += (unsigned long long)t->n;
    w->busy_s += sd_now_s() - t->sent;
    broker_task_done(b, t);
    broker_reply(b, route, rl, "OK", json_pack("{s:I}", "task_id", (json_int_t)tid));
}

void broker_finish_jobs(broker *b)
{
    char jobs[64][40];
    int n = store_running_jobs(b->store, jobs, 64);
    sd_error err;
    for (int i = 0; i < n; i++) {
        if (store_job_unfinished(b->store, jobs[i]))
            continue;
        broker_finish_job_outputs(b, jobs[i]);
        if (store_job_set_state(b->store, jobs[i], STORE_JOB_STATE_DONE, &err) != SD_OK)
            broker_log("job %s: store: marking it done: %s", jobs[i], err.msg);
        else
            broker_log("job %s finished", jobs[i]);
    }
}

void broker_cancel_items(broker *b, double budget_s)
{
    double t0 = sd_now_s();
    int moved = 1;
    sd_error err = {0};
    /* slices of 1000 (a few ms each): the broker's turn stays short */
    while (b->cancelling && moved && sd_now_s() - t0 < budget_s) {
        if (store_cancel_some(b->store, 1000, &moved, &err) != SD_OK) {
            broker_log("store: cancelling items: %s", err.msg);
            return;
        }
        b->cancelling = moved > 0;
    }
}

void broker_pause_job(broker *b, const char *job, const char *reason)
{
    paused_job *slot = NULL;
    for (int i = 0; i < MAX_PAUSED && !slot; i++)
        if (!strcmp(b->paused[i].job, job))
            slot = &b->paused[i];
    for (int i = 0; i < MAX_PAUSED && !slot; i++)
        if (!b->paused[i].job[0] || b->paused[i].until < sd_now_s() - 60)
            slot = &b->paused[i];
    if (!slot)
        slot = &b->paused[0];
    if (strcmp(slot->job, job) || strcmp(slot->reason, reason))
        broker_log("job %s: outputs paused, retrying every 5 s: %s", job, reason);
    snprintf(slot->job, sizeof slot->job, "%s", job);
    snprintf(slot->reason, sizeof slot->reason, "%s", reason);
    slot->until = sd_now_s() + 5.0;
}

const char *broker_job_paused(broker *b, const char *job)
{
    for (int i = 0; i < MAX_PAUSED; i++)
        if (!strcmp(b->paused[i].job, job) && b->paused[i].until > sd_now_s())
            return b->paused[i].reason;
    return NULL;
}
