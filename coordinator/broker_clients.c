/* broker_clients.c - requests of the sdxl client commands: SUBMIT (a job
 * is the hash of its spec: the same spec again resumes it), STATUS/WATCH,
 * CANCEL, RESULTS, WORKERS. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/clock.h"
#include "coordinator/broker_internal.h"
#include "common/gen_params.h"
#include "coordinator/job_spec.h"
#include "common/hashmap.h"


/* What status adds to the store's view of a job: why it is not moving. */
static void annotate_job(broker *b, json_t *st)
{
    const char *job = json_string_value(json_object_get(st, "id"));
    const char *why = job ? broker_job_paused(b, job) : NULL;
    if (why)
        json_object_set_new(st, "paused", json_string(why));
    const char *state = json_string_value(json_object_get(st, "state"));
    const char *model = json_string_value(json_object_get(st, "model"));
    if (state && !strcmp(state, "running") && model && model[0]) {
        int served = 0;
        for (int i = 0; i < MAX_WORKERS && !served; i++)
            served = b->workers[i].used && !strcmp(b->workers[i].identity, model);
        if (!served) {
            char msg[160];
            snprintf(msg, sizeof msg, "no worker serves model %s", model);
            json_object_set_new(st, "waiting", json_string(msg));
        }
    }
}

static void handle_submit(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    json_t *spec = json_object_get(m->hdr, "spec");
    sd_error err = {0};
    if (!json_is_object(spec) || sd_job_spec_validate(spec, &err) != SD_OK) {
        broker_reply_error(b, route, rl, spec ? err.msg : "SUBMIT needs a 'spec' object");
        return;
    }
    /* the same spec to the same output is the same job: resubmitting it
     * resumes it and skips what is done */
    char *canon = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    char id[40];
    snprintf(id, sizeof id, "job-%016llx", (unsigned long long)sd_hash_bytes(canon, strlen(canon)));
    free(canon);
    int existed = 0;
    if (store_job_create(b->store, id, spec, &existed, &err) != SD_OK) {
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    if (!existed) {
        /* a job pinned to a model goes only to workers of that model */
        const char *model = json_string_value(json_object_get(spec, "model"));
        if (model && store_job_set_identity(b->store, id, model, &err) != SD_OK) {
            broker_reply_error(b, route, rl, err.msg);
            return;
        }
        sd_outputs o;
        outputs_from_spec(&o, spec);
        int skipped = 0;
        for (int i = 0; i < o.total; i++)
            if (outputs_item_exists(&o, i)) {
                if (store_item_mark_done(b->store, id, i, &err) == SD_OK)
                    skipped++;
                else
                    broker_log("job %s item %d: store: marking its existing output done: %s", id, i, err.msg);
            }
        broker_log("job %s: %d items, %d already in %s", id, o.total, skipped, o.dir);
    } else {
        /* the same job again: what is not done is retried, failed and
         * cancelled items included, and a done item whose output has gone
         * from the folder is made again */
        int retried = 0, remade = 0;
        if (store_job_retry(b->store, id, &retried, &err) != SD_OK)
            broker_log("job %s: store: retrying on resubmission: %s", id, err.msg);
        sd_outputs o;
        outputs_from_spec(&o, spec);
        json_t *done = store_job_done_items(b->store, id);
        size_t i;
        json_t *d;
        json_array_foreach(done, i, d) {
            int idx = (int)json_integer_value(json_object_get(d, "idx"));
            if (outputs_item_exists(&o, idx))
                continue;
            if (store_item_reset(b->store, id, idx, &err) == SD_OK)
                remade++;
            else
                broker_log("job %s item %d: store: resetting an item whose output is missing: %s", id, idx, err.msg);
        }
        json_decref(done);
        if (store_job_set_state(b->store, id,
                                store_job_unfinished(b->store, id) ? STORE_JOB_STATE_RUNNING : STORE_JOB_STATE_DONE,
                                &err) != SD_OK)
            broker_log("job %s: store: setting its state on resubmission: %s", id, err.msg);
        broker_log("job %s resubmitted: %d failed or cancelled items retried, %d missing outputs made again", id,
                   retried, remade);
    }
    broker_reply(b, route, rl, "OK", json_pack("{s:s, s:b}", "job_id", id, "existed", existed));
}

static void handle_workers(broker *b, const unsigned char *route, size_t rl)
{
    json_t *a = json_array();
    double now = sd_now_s();
    for (int i = 0; i < MAX_WORKERS; i++) {
        worker_t *w = &b->workers[i];
        if (!w->used)
            continue;
        double age = now - w->registered;
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:I, s:f}", "id", w->id, "role", w->role,
                                           "model", w->identity, "capacity", w->capacity, "inflight", w->inflight,
                                           "last_seen_s", now - w->last_seen, "items_done", (json_int_t)w->done,
                                           "busy_fraction", age > 0 ? fmin(1.0, w->busy_s / age) : 0.0));
    }
    broker_reply(b, route, rl, "OK", json_pack("{s:o, s:I}", "workers", a, "malformed_messages", (json_int_t)b->malformed));
}

void broker_handle_client(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    const char *job = json_string_value(json_object_get(m->hdr, "job_id"));
    sd_error err = {0};
    switch (sd_msg_kind_of(m)) {
    case SD_MSG_KIND_SUBMIT:
        handle_submit(b, m, route, rl);
        return;
    case SD_MSG_KIND_STATUS:
    case SD_MSG_KIND_WATCH:
        if (job) {
            json_t *st = store_job_status(b->store, job);
            if (!st) {
                broker_reply_error(b, route, rl, "no such job");
                return;
            }
            annotate_job(b, st);
            broker_reply(b, route, rl, "OK", json_pack("{s:o}", "job", st));
        } else {
            json_t *jobs = store_jobs_list(b->store);
            size_t i;
            json_t *j;
            json_array_foreach(jobs, i, j) annotate_job(b, j);
            broker_reply(b, route, rl, "OK", json_pack("{s:o}", "jobs", jobs));
        }
        return;
    case SD_MSG_KIND_CANCEL: {
        json_t *status = store_job_status(b->store, job);
        if (!status) {
            broker_reply_error(b, route, rl, "CANCEL needs an existing 'job_id'");
            return;
        }
        int was_done = !strcmp(json_string_value(json_object_get(status, "state")), "done");
        json_decref(status);
        if (was_done) { /* nothing is cancelled: every item had ended */
            broker_reply(b, route, rl, "OK", json_pack("{s:b}", "already_done", 1));
            return;
        }
        for (int i = 0; i < MAX_TASKS; i++)
            if (b->tasks[i].used && !strcmp(b->tasks[i].job, job))
                broker_task_done(b, &b->tasks[i]);
        if (store_job_cancel(b->store, job, &err) != SD_OK) {
            broker_log("job %s: store: cancelling: %s", job, err.msg);
            broker_reply_error(b, route, rl, err.msg);
        } else {
            broker_reply(b, route, rl, "OK", NULL);
        }
        broker_finish_job_outputs(b, job);
        return;
    }
    case SD_MSG_KIND_RETRY: {
        json_t *status = store_job_status(b->store, job);
        if (!status) {
            broker_reply_error(b, route, rl, "RETRY needs an existing 'job_id'");
            return;
        }
        json_decref(status);
        int n = 0;
        if (store_job_retry(b->store, job, &n, &err) != SD_OK) {
            broker_log("job %s: store: retrying: %s", job, err.msg);
            broker_reply_error(b, route, rl, err.msg);
            return;
        }
        broker_log("job %s: %d failed or cancelled items go back to waiting", job, n);
        broker_reply(b, route, rl, "OK", json_pack("{s:i}", "retried", n));
        return;
    }
    case SD_MSG_KIND_RESULTS:
        broker_reply(b, route, rl, "OK", json_pack("{s:o}", "items", store_job_done_items(b->store, job)));
        return;
    case SD_MSG_KIND_WORKERS:
        handle_workers(b, route, rl);
        return;
    default:
        broker_reply_error(b, route, rl, "unexpected message type from a client");
    }
}
