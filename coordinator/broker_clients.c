/* broker_clients.c - requests of the sdxl client commands: SUBMIT,
 * SUBMIT_ITEMS, SUBMIT_END (a job arrives in pieces, common/job_spec.h; it
 * is the hash of its spec, which holds its items' hash: the same file and
 * options again resume it), STATUS/WATCH, CANCEL, RETRY, RESULTS (paged),
 * WORKERS. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "coordinator/broker_internal.h"
#include "common/gen_params.h"
#include "common/job_spec.h"
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
    long long total = json_integer_value(json_object_get(st, "total")),
              received = json_integer_value(json_object_get(st, "received"));
    if (state && !strcmp(state, "running") && received < total) {
        char msg[200];
        snprintf(msg, sizeof msg, "%lld of %lld items received (a submit in progress, or interrupted: run the same "
                                  "submit again to send the rest)", received, total);
        json_object_set_new(st, "waiting", json_string(msg));
    }
    long long left = json_integer_value(json_object_get(st, "pending")) +
                     json_integer_value(json_object_get(st, "encoded")) +
                     json_integer_value(json_object_get(st, "denoised"));
    if (state && !strcmp(state, "cancelled") && left > 0) {
        char msg[120];
        snprintf(msg, sizeof msg, "cancelling: %lld items still to mark cancelled", left);
        json_object_set_new(st, "waiting", json_string(msg));
    }
    /* held back by --max-ahead: the next stage is behind (or has no worker) */
    if (state && !strcmp(state, "running") && !json_object_get(st, "waiting")) {
        long long enc = json_integer_value(json_object_get(st, "encoded")),
                  den = json_integer_value(json_object_get(st, "denoised")),
                  pend = json_integer_value(json_object_get(st, "pending"));
        long long cap_u = broker_stage_capacity(b, "unet"), cap_f = broker_stage_capacity(b, "final");
        char msg[200] = "";
        if (den > 0 && den >= b->o->max_ahead + cap_f)
            snprintf(msg, sizeof msg, "the unet stage waits: %lld latents wait for the final stage (--max-ahead %d "
                     "plus its capacity %lld)", den, b->o->max_ahead, cap_f);
        else if (pend > 0 && enc >= b->o->max_ahead + cap_u)
            snprintf(msg, sizeof msg, "the text stage waits: %lld items wait for the unet stage (--max-ahead %d "
                     "plus its capacity %lld)", enc, b->o->max_ahead, cap_u);
        if (msg[0])
            json_object_set_new(st, "waiting", json_string(msg));
    }
    if (state && !strcmp(state, "running") && model && model[0]) {
        int served = 0;
        for (int i = 0; i < b->workers_hw && !served; i++)
            served = b->workers[i].used && !strcmp(b->workers[i].identity, model);
        if (!served) {
            char msg[160];
            snprintf(msg, sizeof msg, "no worker serves model %s", model);
            json_object_set_new(st, "waiting", json_string(msg));
        }
    }
}

static int output_exists(void *user, int idx)
{
    return outputs_item_exists(user, idx);
}

/* SUBMIT: the job-wide spec; the job is created (no items yet) unless it
 * exists, and the reply says how many of its items are stored already */
static void handle_submit(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    json_t *spec = json_object_get(m->hdr, "spec");
    sd_error err = {0};
    if (sd_job_spec_validate(spec, &err) != SD_OK) {
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    /* the same spec (options, output, and the items' hash) is the same job */
    char *canon = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    char id[40];
    snprintf(id, sizeof id, "job-%016llx", (unsigned long long)sd_hash_bytes(canon, strlen(canon)));
    free(canon);
    int existed = 0;
    long long received = 0;
    if (store_job_begin(b->store, id, spec, &existed, &received, &err) != SD_OK) {
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    const char *model = json_string_value(json_object_get(spec, "model"));
    if (!existed && model && store_job_set_identity(b->store, id, model, &err) != SD_OK) {
        broker_reply_error(b, route, rl, err.msg); /* a job pinned to a model goes only to its workers */
        return;
    }
    if (!existed)
        broker_log("job %s: %lld items to receive, into %s", id,
                   (long long)json_integer_value(json_object_get(spec, "total")),
                   json_string_value(json_object_get(spec, "out")));
    broker_reply(b, route, rl, "OK", json_pack("{s:s, s:b, s:I}", "job_id", id, "existed", existed, "received",
                                               (json_int_t)received));
}

/* SUBMIT_ITEMS: the next piece of a job's items, checked item by item as the
 * worker will decode them; an item whose output is already in the folder is
 * stored done */
static void handle_submit_items(broker *b, const sd_msg *m, const unsigned char *route, size_t rl, const char *job)
{
    long long first;
    sd_error err = {0};
    if (sd_msg_get_int(m, "first", 0, SD_JOB_MAX_ITEMS, &first, &err) != SD_OK) {
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    json_t *spec = store_job_spec(b->store, job);
    if (!spec) {
        broker_reply_error(b, route, rl, "SUBMIT_ITEMS needs an existing 'job_id' (send its SUBMIT first)");
        return;
    }
    json_t *items = json_object_get(m->hdr, "items"), *defaults = json_object_get(spec, "defaults");
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        if (sd_job_item_validate(defaults, it, &err) != SD_OK) {
            char msg[sizeof err.msg + 64];
            snprintf(msg, sizeof msg, "item %lld: %s", first + (long long)i, err.msg);
            broker_reply_error(b, route, rl, msg);
            json_decref(spec);
            return;
        }
    }
    sd_outputs o;
    outputs_from_spec(&o, spec);
    long long received = 0;
    sd_status st = store_job_add_items(b->store, job, first, items, output_exists, &o, &received, &err);
    json_decref(spec);
    if (st != SD_OK) {
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    broker_reply(b, route, rl, "OK", json_pack("{s:I}", "received", (json_int_t)received));
}

/* a done item whose output has gone from the folder: made again */
typedef struct {
    broker_job *job;
    int remade;
} remake_ctx;

static void remake_missing(void *ctx, int idx)
{
    remake_ctx *r = ctx;
    sd_error err = {0};
    if (store_item_reset(r->job->b->store, r->job->job, idx, &err) == SD_OK)
        r->remade++;
    else
        broker_log("job %s item %d: store: resetting an item whose output is missing: %s", r->job->job, idx, err.msg);
}

/* SUBMIT_END: every item is stored. The first time, the job simply runs (or
 * is done, if every output was there already); a job submitted again retries
 * its failed and cancelled items and makes again every done item whose output
 * has gone from the folder. */
static void handle_submit_end(broker *b, const unsigned char *route, size_t rl, const char *id)
{
    sd_error err = {0};
    int again = 0;
    if (store_job_end_submit(b->store, id, &again, &err) != SD_OK) {
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    int retried = 0, remade = 0;
    if (again) {
        if (store_job_retry(b->store, id, &retried, &err) != SD_OK)
            broker_log("job %s: store: retrying on resubmission: %s", id, err.msg);
        json_t *spec = store_job_spec(b->store, id);
        sd_outputs o;
        outputs_from_spec(&o, spec);
        broker_job job = {b, id};
        remake_ctx r = {&job, 0};
        outputs_each_missing(&o, broker_done_page, &job, remake_missing, &r);
        remade = r.remade;
        json_decref(spec);
        if (store_job_set_state(b->store, id,
                                store_job_unfinished(b->store, id) ? STORE_JOB_STATE_RUNNING : STORE_JOB_STATE_DONE,
                                &err) != SD_OK)
            broker_log("job %s: store: setting its state on resubmission: %s", id, err.msg);
        broker_log("job %s resubmitted: %d failed or cancelled items retried, %d missing outputs made again", id,
                   retried, remade);
    } else {
        json_t *st = store_job_status(b->store, id);
        broker_log("job %s: all %lld items received, %lld already in its folder", id,
                   (long long)json_integer_value(json_object_get(st, "total")),
                   (long long)json_integer_value(json_object_get(st, "done")));
        json_decref(st);
    }
    broker_reply(b, route, rl, "OK", json_pack("{s:s, s:b, s:i, s:i}", "job_id", id, "again", again, "retried",
                                               retried, "remade", remade));
}

/* RESULTS: the done items after index 'after' (-1), up to 'limit' (10000) */
static void handle_results(broker *b, const sd_msg *m, const unsigned char *route, size_t rl, const char *job)
{
    long long after = -1, limit = 10000;
    sd_error err = {0};
    if ((json_object_get(m->hdr, "after") && sd_msg_get_int(m, "after", -1, INT_MAX, &after, &err) != SD_OK) ||
        (json_object_get(m->hdr, "limit") && sd_msg_get_int(m, "limit", 1, 10000, &limit, &err) != SD_OK)) {
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    broker_reply(b, route, rl, "OK", json_pack("{s:o}", "items", store_job_done_page(b->store, job, (int)after, (int)limit)));
}

static void handle_workers(broker *b, const unsigned char *route, size_t rl)
{
    json_t *a = json_array();
    double now = sd_now_s();
    for (int i = 0; i < b->workers_hw; i++) {
        worker_t *w = &b->workers[i];
        if (!w->used)
            continue;
        double age = now - w->registered;
        json_t *one = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:I, s:f}", "id", w->id, "role", w->role, "model",
                                w->identity, "devices", w->devices, "capacity", w->capacity, "inflight", w->inflight,
                                "last_seen_s", now - w->last_seen, "items_done", (json_int_t)w->done, "busy_fraction",
                                age > 0 ? fmin(1.0, w->busy_s / age) : 0.0);
        for (int k = 0; k < b->tasks_hw; k++) /* what it computes now */
            if (b->tasks[k].used && b->tasks[k].worker == i) {
                json_object_set_new(one, "task", json_pack("{s:I, s:s, s:s, s:i, s:f}", "id", (json_int_t)b->tasks[k].id,
                                                            "job", b->tasks[k].job, "stage", b->tasks[k].stage,
                                                            "items", b->tasks[k].n, "seconds", now - b->tasks[k].sent));
                break;
            }
        json_array_append_new(a, one);
    }
    /* the coordinator's own figures, for `sdxl bench` */
    broker_reply(b, route, rl, "OK",
                 json_pack("{s:o, s:I, s:{s:I, s:I}}", "workers", a, "malformed_messages", (json_int_t)b->malformed,
                           "coordinator", "pid", (json_int_t)getpid(), "db_row_writes",
                           (json_int_t)store_row_writes(b->store)));
}

void broker_handle_client(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    const char *job = json_string_value(json_object_get(m->hdr, "job_id"));
    sd_error err = {0};
    switch (sd_msg_kind_of(m)) {
    case SD_MSG_KIND_SUBMIT:
        handle_submit(b, m, route, rl);
        return;
    case SD_MSG_KIND_SUBMIT_ITEMS:
        handle_submit_items(b, m, route, rl, job);
        return;
    case SD_MSG_KIND_SUBMIT_END:
        handle_submit_end(b, route, rl, job);
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
        for (int i = 0; i < b->tasks_hw; i++)
            if (b->tasks[i].used && !strcmp(b->tasks[i].job, job))
                broker_task_done(b, &b->tasks[i]);
        if (store_job_cancel(b->store, job, &err) != SD_OK) {
            broker_log("job %s: store: cancelling: %s", job, err.msg);
            broker_reply_error(b, route, rl, err.msg);
        } else {
            b->cancelling = 1;
            broker_cancel_items(b, 0.2); /* a small job at once; a large one goes on between messages */
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
        handle_results(b, m, route, rl, job);
        return;
    case SD_MSG_KIND_WORKERS:
        handle_workers(b, route, rl);
        return;
    default:
        broker_reply_error(b, route, rl, "unexpected message type from a client");
    }
}
