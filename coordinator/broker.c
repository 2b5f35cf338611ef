/* broker.c - see broker.h. One thread: poll, handle one message, check
 * liveness, dispatch, finish jobs; repeat. */
#include "coordinator/broker.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/hashmap.h"
#include "coordinator/outputs.h"
#include "coordinator/store.h"
#include "proto/curve.h"
#include "proto/message.h"
#include "proto/tensor_blob.h"

#define MAX_WORKERS 256
#define MAX_TASKS 1024
#define MAX_BATCH 16

typedef struct {
    int used;
    unsigned char route[256];
    size_t route_len;
    char id[64], role[8], identity[80];
    int capacity, inflight;
    double last_seen, registered, busy_s;
    unsigned long long done;
} worker_t;

typedef struct {
    int used;
    long long id;
    int worker;
    char stage[8];
    char job[40];
    int n, idx[MAX_BATCH];
    double sent, last_progress;
} task_t;

/* A job's output settings, parsed once: its spec lists every item, far too
 * much to parse again for each finished image. Specs never change (a job id
 * is the hash of its spec), so entries are only ever replaced, oldest first.
 * Only the small settings are kept, never the spec's item list. */
#define OUTPUT_CACHE 16
typedef struct {
    char job[40]; /* "" while unused */
    char dir[PATH_MAX]; /* what o.dir points to: the spec itself is not kept */
    sd_outputs o;
} job_outputs;

typedef struct {
    const sd_broker_opts *o;
    void *sock;
    job_outputs outs[OUTPUT_CACHE];
    int next_out;
    sd_store *store;
    worker_t workers[MAX_WORKERS];
    task_t tasks[MAX_TASKS];
    long long next_task;
    unsigned long long malformed;
    double last_hb;
} broker;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "coordinator: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void reply(broker *b, const unsigned char *route, size_t rl, const char *type, json_t *fields)
{
    sd_msg m;
    sd_error err;
    if (sd_msg_new(&m, type, &err) != SD_OK) {
        json_decref(fields);
        return;
    }
    if (fields)
        json_object_update(m.hdr, fields);
    json_decref(fields);
    sd_msg_send(b->sock, route, rl, &m, &err);
    sd_msg_free(&m);
}

static void reply_error(broker *b, const unsigned char *route, size_t rl, const char *reason)
{
    reply(b, route, rl, "ERROR", json_pack("{s:s}", "reason", reason));
}

static worker_t *find_worker(broker *b, const char *id)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (b->workers[i].used && !strcmp(b->workers[i].id, id))
            return &b->workers[i];
    return NULL;
}

/* the item state a stage (= a worker role) takes its work from */
static item_state input_state(const char *stage)
{
    return !strcmp(stage, "text") ? ITEM_PENDING : !strcmp(stage, "unet") ? ITEM_ENCODED : ITEM_DENOISED;
}

/* Items of a task go back to waiting (their last completed stage is kept in
 * the store) with an attempt counted. */
static void requeue_task(broker *b, task_t *t, const char *reason)
{
    sd_error err;
    for (int k = 0; k < t->n; k++)
        store_item_failed_attempt(b->store, t->job, t->idx[k], reason, b->o->max_attempts, &err);
    if (t->worker >= 0 && b->workers[t->worker].used && b->workers[t->worker].inflight > 0)
        b->workers[t->worker].inflight--;
    t->used = 0;
}

static void drop_worker(broker *b, int wi, const char *why)
{
    worker_t *w = &b->workers[wi];
    logf_("worker %s (%s) is dead: %s; its tasks go back to waiting", w->id, w->role, why);
    char reason[160];
    snprintf(reason, sizeof reason, "worker %s %s", w->id, why);
    for (int i = 0; i < MAX_TASKS; i++)
        if (b->tasks[i].used && b->tasks[i].worker == wi)
            requeue_task(b, &b->tasks[i], reason);
    w->used = 0;
}

static int item_in_flight(broker *b, const char *job, int idx)
{
    for (int i = 0; i < MAX_TASKS; i++) {
        task_t *t = &b->tasks[i];
        if (!t->used || strcmp(t->job, job))
            continue;
        for (int k = 0; k < t->n; k++)
            if (t->idx[k] == idx)
                return 1;
    }
    return 0;
}

/* ---- dispatch ---- */

static void batch_key(json_t *p, char *key, size_t len)
{
    snprintf(key, len, "%lld/%lld/%lld/%s", (long long)json_integer_value(json_object_get(p, "width")),
             (long long)json_integer_value(json_object_get(p, "height")),
             (long long)json_integer_value(json_object_get(p, "steps")),
             json_string_value(json_object_get(p, "scheduler")) ? json_string_value(json_object_get(p, "scheduler"))
                                                                 : "");
}

static void dispatch_to(broker *b, int wi)
{
    worker_t *w = &b->workers[wi];
    int credit = w->capacity - w->inflight;
    if (credit <= 0)
        return;
    item_state want = input_state(w->role);
    store_item_ref refs[256];
    int n = store_items_waiting(b->store, want, refs, 256);
    int picked[MAX_BATCH], np = 0;
    char key0[128] = "", job0[40] = "";
    /* refs come ordered by job: look a job's model up once, not per item */
    char id_job[40] = "", idbuf[80];
    const char *jid = NULL;
    for (int i = 0; i < n && np < credit && np < MAX_BATCH; i++) {
        if (item_in_flight(b, refs[i].job, refs[i].idx))
            continue;
        if (strcmp(id_job, refs[i].job)) {
            snprintf(id_job, sizeof id_job, "%s", refs[i].job);
            jid = store_job_identity(b->store, refs[i].job, idbuf, sizeof idbuf);
        }
        if (jid && strcmp(jid, w->identity))
            continue; /* a job is only ever given to workers of its model */
        char key[128];
        batch_key(refs[i].params, key, sizeof key);
        if (np == 0) {
            snprintf(key0, sizeof key0, "%s", key);
            snprintf(job0, sizeof job0, "%s", refs[i].job);
            if (!jid) { /* the job's first worker decides its model */
                sd_error err;
                if (store_job_set_identity(b->store, refs[i].job, w->identity, &err) == SD_OK)
                    jid = strcpy(idbuf, w->identity);
            }
        } else if (strcmp(key, key0) || strcmp(refs[i].job, job0)) {
            continue; /* batches hold compatible items of one job */
        }
        picked[np++] = i;
    }
    if (np == 0) {
        store_item_refs_free(refs, n);
        return;
    }
    int slot = -1;
    for (int i = 0; i < MAX_TASKS && slot < 0; i++)
        if (!b->tasks[i].used)
            slot = i;
    if (slot < 0) {
        store_item_refs_free(refs, n);
        return;
    }
    task_t *t = &b->tasks[slot];
    memset(t, 0, sizeof *t);
    t->id = ++b->next_task;
    t->worker = wi;
    snprintf(t->stage, sizeof t->stage, "%s", w->role);
    snprintf(t->job, sizeof t->job, "%s", job0);
    sd_msg m;
    sd_error err;
    sd_msg_new(&m, "TASK", &err);
    json_t *items = json_array();
    void *blobs[MAX_BATCH] = {0};
    sd_status st = SD_OK;
    for (int k = 0; k < np && st == SD_OK; k++) {
        store_item_ref *r = &refs[picked[k]];
        t->idx[t->n++] = r->idx;
        json_t *info = store_item_info(b->store, r->job, r->idx);
        json_array_append_new(items, json_pack("{s:i, s:O, s:o}", "idx", r->idx, "params", r->params, "info",
                                               info ? info : json_object()));
        if (want != ITEM_PENDING) {
            size_t len;
            char suffix[16];
            snprintf(suffix, sizeof suffix, "%d", k);
            st = store_item_blob(b->store, r->job, r->idx, &blobs[k], &len, &err);
            if (st == SD_OK)
                st = sd_blob_attach(&m, blobs[k], len, suffix, &err);
        }
    }
    json_object_set_new(m.hdr, "task_id", json_integer(t->id));
    json_object_set_new(m.hdr, "stage", json_string(t->stage));
    json_object_set_new(m.hdr, "job", json_string(t->job));
    json_object_set_new(m.hdr, "items", items);
    if (st == SD_OK)
        st = sd_msg_send(b->sock, w->route, w->route_len, &m, &err);
    if (st == SD_OK) {
        t->used = 1;
        t->sent = t->last_progress = sd_now_s();
        w->inflight++;
    } else {
        logf_("task for %s not sent: %s", w->id, err.msg);
    }
    sd_msg_free(&m);
    for (int k = 0; k < np; k++)
        free(blobs[k]);
    store_item_refs_free(refs, n);
}

/* ---- results ---- */

typedef struct {
    broker *b;
    const char *job;
} job_ctx;

static int item_finished(void *user, int idx)
{
    job_ctx *c = user;
    /* 1 done, 2 failed/cancelled, 0 not yet */
    int s = store_item_state(c->b->store, c->job, idx);
    return s == ITEM_DONE ? 1 : s >= ITEM_FAILED ? 2 : 0;
}

static const sd_outputs *outputs_of(broker *b, const char *job)
{
    for (int i = 0; i < OUTPUT_CACHE; i++)
        if (!strcmp(b->outs[i].job, job))
            return &b->outs[i].o;
    json_t *spec = store_job_spec(b->store, job);
    if (!spec)
        return NULL;
    job_outputs *c = &b->outs[b->next_out++ % OUTPUT_CACHE];
    snprintf(c->job, sizeof c->job, "%s", job);
    outputs_from_spec(&c->o, spec);
    snprintf(c->dir, sizeof c->dir, "%s", c->o.dir ? c->o.dir : "");
    c->o.dir = c->dir;
    json_decref(spec);
    return &c->o;
}

/* WebDataset: each shard among the task's items whose items have all ended
 * is written now, so a long job yields shards (and empties its staging
 * folder) as it goes; the job's end writes whatever is left. */
static void write_ended_shards(broker *b, const task_t *t, const sd_outputs *o)
{
    if (!o || !o->webdataset)
        return;
    job_ctx c = {b, t->job};
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
            logf_("job %s: writing shard %06d: %s", t->job, shard, err.msg);
        else if (written)
            logf_("job %s: shard %06d written (items %d-%d); %d items of the job not yet ended", t->job, shard, first,
                  last - 1, store_job_unfinished(b->store, t->job));
    }
}

/* the job has ended: its shards (WebDataset) or metadata.jsonl (files) */
static void finish_job_outputs(broker *b, const char *job)
{
    const sd_outputs *o = outputs_of(b, job);
    if (!o)
        return;
    job_ctx c = {b, job};
    sd_error err;
    if (outputs_flush(o, item_finished, &c, &err) != SD_OK)
        logf_("job %s: writing shards: %s", job, err.msg);
    json_t *done = store_job_done_items(b->store, job);
    if (outputs_write_metadata(o, done, &err) != SD_OK)
        logf_("job %s: metadata: %s", job, err.msg);
    json_decref(done);
    outputs_sweep(o);
}

static void handle_result(broker *b, worker_t *w, const sd_msg *m, const unsigned char *route, size_t rl)
{
    long long tid;
    sd_error err;
    if (sd_msg_get_int(m, "task_id", 1, LLONG_MAX, &tid, &err) != SD_OK) {
        reply_error(b, route, rl, err.msg);
        return;
    }
    task_t *t = NULL;
    for (int i = 0; i < MAX_TASKS && !t; i++)
        if (b->tasks[i].used && b->tasks[i].id == tid)
            t = &b->tasks[i];
    if (!t || &b->workers[t->worker] != w) {
        /* a task given up on (the worker was declared dead, or the job was
         * cancelled): its items went elsewhere, the result is dropped */
        logf_("result of task %lld from %s ignored: the task is no longer assigned to it", tid, w->id);
        reply_error(b, route, rl, "task expired");
        return;
    }
    json_t *items = json_object_get(m->hdr, "items");
    int is_fail = !strcmp(sd_msg_type(m), "FAIL");
    if (is_fail) {
        const char *reason = json_string_value(json_object_get(m->hdr, "reason"));
        logf_("task %lld (%s, job %s) failed on %s: %s", tid, t->stage, t->job, w->id, reason ? reason : "?");
        requeue_task(b, t, reason ? reason : "worker reported failure");
        reply(b, route, rl, "OK", NULL);
        return;
    }
    item_state from = input_state(t->stage);
    const sd_outputs *o = !strcmp(t->stage, "final") ? outputs_of(b, t->job) : NULL;
    for (int k = 0; k < t->n; k++) {
        int idx = t->idx[k];
        json_t *info = json_object_get(json_array_get(items, (size_t)k), "info");
        char suffix[16];
        snprintf(suffix, sizeof suffix, "_%d", k);
        sd_status st = SD_OK;
        if (!strcmp(t->stage, "final")) {
            char name[32];
            snprintf(name, sizeof name, "image_%d", k);
            const sd_msg_tensor *img = sd_msg_tensor_get(m, name);
            if (!img || img->dtype != SD_DTYPE_U8)
                st = sd_fail(&err, SD_ERR_FORMAT, "result lacks %s", name);
            else if (!o)
                st = sd_fail(&err, SD_ERR_MISSING, "job %s has no stored spec", t->job);
            json_t *meta = json_deep_copy(info ? info : json_object());
            json_object_set_new(meta, "final_worker", json_string(w->id));
            if (st == SD_OK)
                st = outputs_write_item(o, idx, img->data, img->nbytes, meta, &err);
            if (st == SD_OK)
                st = store_item_advance(b->store, t->job, idx, from, ITEM_DONE, NULL, 0, meta, &err);
            json_decref(meta);
        } else {
            /* keep this item's tensors (suffix _k) as its intermediate */
            sd_msg sub;
            memset(&sub, 0, sizeof sub);
            for (int i = 0; i < m->ntensors; i++) {
                const sd_msg_tensor *x = &m->tensors[i];
                size_t ln = strlen(x->name), ls = strlen(suffix);
                if (ln > ls && !strcmp(x->name + ln - ls, suffix)) {
                    char base[64];
                    snprintf(base, sizeof base, "%.*s", (int)(ln - ls), x->name);
                    sd_msg_add_tensor(&sub, base, x->dtype, x->ndim, x->shape, x->data, &err);
                }
            }
            void *blob = NULL;
            size_t len = 0;
            if (sub.ntensors == 0)
                st = sd_fail(&err, SD_ERR_FORMAT, "result has no tensors for item %d", idx);
            if (st == SD_OK)
                st = sd_blob_pack(&sub, &blob, &len, &err);
            if (st == SD_OK)
                st = store_item_advance(b->store, t->job, idx, from, from + 1, blob, len, info, &err);
            free(blob);
        }
        if (st != SD_OK) {
            logf_("task %lld item %d: %s", tid, idx, err.msg);
            store_item_failed_attempt(b->store, t->job, idx, err.msg, b->o->max_attempts, &err);
        }
    }
    write_ended_shards(b, t, o);
    w->inflight--;
    w->done += (unsigned long long)t->n;
    w->busy_s += sd_now_s() - t->sent;
    t->used = 0;
    reply(b, route, rl, "OK", NULL);
}

/* ---- clients ---- */

static sd_status validate_spec(json_t *spec, sd_error *err)
{
    json_t *items = json_object_get(spec, "items"), *out = json_object_get(spec, "out");
    if (!json_is_array(items) || json_array_size(items) == 0 || json_array_size(items) > 10000000)
        return sd_fail(err, SD_ERR_INVALID, "spec: 'items' must be a non-empty list");
    if (!json_is_string(out) || json_string_value(out)[0] != '/')
        return sd_fail(err, SD_ERR_INVALID, "spec: 'out' must be an absolute directory path");
    const char *fmt = json_string_value(json_object_get(spec, "format"));
    if (fmt && strcmp(fmt, "png") && strcmp(fmt, "webp") && strcmp(fmt, "jpeg"))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'format' must be png, webp or jpeg");
    json_t *model = json_object_get(spec, "model");
    if (model && (!json_is_string(model) || json_string_length(model) == 0 || json_string_length(model) >= 80))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'model' must be a model identity string");
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        if (!json_is_object(it) || !json_is_string(json_object_get(it, "prompt")) ||
            !json_is_integer(json_object_get(it, "seed")))
            return sd_fail(err, SD_ERR_INVALID, "spec: item %zu needs a 'prompt' string and an integer 'seed'", i);
    }
    return SD_OK;
}

static void handle_submit(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    json_t *spec = json_object_get(m->hdr, "spec");
    sd_error err = {0};
    if (!json_is_object(spec) || validate_spec(spec, &err) != SD_OK) {
        reply_error(b, route, rl, spec ? err.msg : "SUBMIT needs a 'spec' object");
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
        reply_error(b, route, rl, err.msg);
        return;
    }
    if (!existed) {
        /* a job pinned to a model goes only to workers of that model */
        const char *model = json_string_value(json_object_get(spec, "model"));
        if (model && store_job_set_identity(b->store, id, model, &err) != SD_OK) {
            reply_error(b, route, rl, err.msg);
            return;
        }
        sd_outputs o;
        outputs_from_spec(&o, spec);
        int skipped = 0;
        for (int i = 0; i < o.total; i++)
            if (outputs_item_exists(&o, i) && store_item_mark_done(b->store, id, i, &err) == SD_OK)
                skipped++;
        logf_("job %s: %d items, %d already in %s", id, o.total, skipped, o.dir);
    } else {
        store_job_set_state(b->store, id, store_job_unfinished(b->store, id) ? "running" : "done", &err);
    }
    reply(b, route, rl, "OK", json_pack("{s:s, s:b}", "job_id", id, "existed", existed));
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
    reply(b, route, rl, "OK", json_pack("{s:o, s:I}", "workers", a, "malformed_messages", (json_int_t)b->malformed));
}

static void handle_client(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    const char *type = sd_msg_type(m);
    const char *job = json_string_value(json_object_get(m->hdr, "job_id"));
    if (!strcmp(type, "SUBMIT")) {
        handle_submit(b, m, route, rl);
    } else if (!strcmp(type, "STATUS") || !strcmp(type, "WATCH")) {
        if (job) {
            json_t *st = store_job_status(b->store, job);
            if (!st) {
                reply_error(b, route, rl, "no such job");
                return;
            }
            reply(b, route, rl, "OK", json_pack("{s:o}", "job", st));
        } else {
            reply(b, route, rl, "OK", json_pack("{s:o}", "jobs", store_jobs_list(b->store)));
        }
    } else if (!strcmp(type, "CANCEL")) {
        sd_error err;
        if (!job || !store_job_status(b->store, job)) {
            reply_error(b, route, rl, "CANCEL needs an existing 'job_id'");
            return;
        }
        for (int i = 0; i < MAX_TASKS; i++)
            if (b->tasks[i].used && !strcmp(b->tasks[i].job, job)) {
                if (b->workers[b->tasks[i].worker].inflight > 0)
                    b->workers[b->tasks[i].worker].inflight--;
                b->tasks[i].used = 0;
            }
        if (store_job_cancel(b->store, job, &err) != SD_OK)
            reply_error(b, route, rl, err.msg);
        else
            reply(b, route, rl, "OK", NULL);
        finish_job_outputs(b, job);
    } else if (!strcmp(type, "RESULTS")) {
        if (!job) {
            reply_error(b, route, rl, "RESULTS needs a 'job_id'");
            return;
        }
        reply(b, route, rl, "OK", json_pack("{s:o}", "items", store_job_done_items(b->store, job)));
    } else if (!strcmp(type, "WORKERS")) {
        handle_workers(b, route, rl);
    } else {
        reply_error(b, route, rl, "unexpected message type from a client");
    }
}

/* ---- workers ---- */

static void handle_worker(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    const char *type = sd_msg_type(m), *id;
    sd_error err;
    if (sd_msg_get_str(m, "worker_id", &id, &err) != SD_OK) {
        b->malformed++;
        reply_error(b, route, rl, err.msg);
        return;
    }
    worker_t *w = find_worker(b, id);
    if (!strcmp(type, "REGISTER")) {
        const char *role, *identity;
        long long cap;
        if (sd_msg_get_str(m, "role", &role, &err) != SD_OK || sd_msg_get_str(m, "model", &identity, &err) != SD_OK ||
            sd_msg_get_int(m, "capacity", 1, MAX_BATCH, &cap, &err) != SD_OK ||
            (strcmp(role, "text") && strcmp(role, "unet") && strcmp(role, "final"))) {
            b->malformed++;
            reply_error(b, route, rl, err.msg[0] ? err.msg : "role must be text, unet or final");
            return;
        }
        if (w) /* a worker that registers again restarted: what it held is lost */
            drop_worker(b, (int)(w - b->workers), "registered again");
        for (int i = 0; i < MAX_WORKERS && !w; i++)
            if (!b->workers[i].used)
                w = &b->workers[i];
        if (!w) {
            reply_error(b, route, rl, "too many workers");
            return;
        }
        memset(w, 0, sizeof *w);
        w->used = 1;
        memcpy(w->route, route, rl);
        w->route_len = rl;
        snprintf(w->id, sizeof w->id, "%s", id);
        snprintf(w->role, sizeof w->role, "%s", role);
        snprintf(w->identity, sizeof w->identity, "%s", identity);
        w->capacity = (int)cap;
        w->last_seen = w->registered = sd_now_s();
        logf_("worker %s registered: role %s, capacity %d, model %s", id, role, w->capacity, identity);
        reply(b, route, rl, "OK", json_pack("{s:i}", "heartbeat_ms", b->o->heartbeat_ms));
        return;
    }
    if (!w) {
        reply_error(b, route, rl, "unknown worker: register first");
        return;
    }
    w->last_seen = sd_now_s();
    if (json_is_true(json_object_get(m->hdr, "alive")))
        return; /* the worker's liveness thread, on its own socket */
    memcpy(w->route, route, rl);
    w->route_len = rl;
    if (!strcmp(type, "HEARTBEAT")) {
        json_t *tid = json_object_get(m->hdr, "task_id");
        for (int i = 0; json_is_integer(tid) && i < MAX_TASKS; i++)
            if (b->tasks[i].used && b->tasks[i].id == json_integer_value(tid))
                b->tasks[i].last_progress = w->last_seen;
        return; /* no reply: the coordinator sends its own heartbeats */
    }
    if (!strcmp(type, "RESULT") || !strcmp(type, "FAIL"))
        handle_result(b, w, m, route, rl);
    else
        reply_error(b, route, rl, "unexpected message type from a worker");
}

/* ---- loop ---- */

static void liveness(broker *b)
{
    double now = sd_now_s(), limit = 3.0 * b->o->heartbeat_ms / 1000.0, progress = b->o->progress_timeout_ms / 1000.0;
    for (int i = 0; i < MAX_WORKERS; i++) {
        worker_t *w = &b->workers[i];
        if (!w->used)
            continue;
        if (now - w->last_seen > limit) {
            drop_worker(b, i, "stopped responding");
            continue;
        }
        /* progress comes from the compute loop: a live socket with a stuck
         * task is as dead as a silent one */
        for (int k = 0; k < MAX_TASKS; k++)
            if (b->tasks[k].used && b->tasks[k].worker == i && now - b->tasks[k].last_progress > progress) {
                drop_worker(b, i, "made no progress on its task");
                break;
            }
    }
    if (now - b->last_hb >= b->o->heartbeat_ms / 1000.0) {
        b->last_hb = now;
        for (int i = 0; i < MAX_WORKERS; i++)
            if (b->workers[i].used)
                reply(b, b->workers[i].route, b->workers[i].route_len, "HEARTBEAT", NULL);
    }
}

static void finish_jobs(broker *b)
{
    char jobs[64][40];
    int n = store_running_jobs(b->store, jobs, 64);
    sd_error err;
    for (int i = 0; i < n; i++) {
        if (store_job_unfinished(b->store, jobs[i]))
            continue;
        finish_job_outputs(b, jobs[i]);
        store_job_set_state(b->store, jobs[i], "done", &err);
        logf_("job %s finished", jobs[i]);
    }
}

static sd_status setup_socket(broker *b, void *ctx, sd_error *err)
{
    b->sock = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    zmq_setsockopt(b->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(b->sock, ZMQ_LINGER, &zero, sizeof zero);
    int64_t maxmsg = (int64_t)1 << 31;
    zmq_setsockopt(b->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (b->o->curve_secret_file) {
        SD_TRY(sd_curve_server_setup(b->sock, ctx, b->o->curve_secret_file, b->o->allow_file, err));
    } else if (strncmp(b->o->bind, "tcp://127.", 10) && strncmp(b->o->bind, "tcp://localhost", 15) &&
               strncmp(b->o->bind, "ipc://", 6) && strncmp(b->o->bind, "inproc://", 9)) {
        return sd_fail(err, SD_ERR_INVALID,
                       "--bind %s: without --curve-secret the coordinator binds to loopback only", b->o->bind);
    }
    if (zmq_bind(b->sock, b->o->bind) != 0)
        return sd_fail(err, SD_ERR_IO, "--bind %s: %s", b->o->bind, zmq_strerror(zmq_errno()));
    return SD_OK;
}

sd_status sd_broker_run(const sd_broker_opts *o, sd_error *err)
{
    broker *b = calloc(1, sizeof *b);
    if (!b)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    b->o = o;
    void *ctx = zmq_ctx_new();
    sd_status st = store_open(&b->store, o->state_dir, err);
    if (st == SD_OK)
        st = setup_socket(b, ctx, err);
    if (st == SD_OK)
        logf_("listening on %s, state in %s, heartbeat %d ms", o->bind, o->state_dir, o->heartbeat_ms);
    double last_dispatch = 0;
    while (st == SD_OK && !*o->stop) {
        zmq_pollitem_t pi = {b->sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&pi, 1, 20);
        if (rc > 0 && (pi.revents & ZMQ_POLLIN)) {
            unsigned char route[256];
            size_t rl = 0;
            sd_msg m;
            sd_error merr = {0};
            if (sd_msg_recv(b->sock, 1, &m, route, &rl, &merr) == SD_OK) {
                if (json_object_get(m.hdr, "worker_id"))
                    handle_worker(b, &m, route, rl);
                else
                    handle_client(b, &m, route, rl);
                sd_msg_free(&m);
            } else {
                b->malformed++;
                if (rl)
                    reply_error(b, route, rl, merr.msg);
                logf_("refused a message: %s", merr.msg);
            }
        }
        liveness(b);
        double now = sd_now_s();
        if (now - last_dispatch > 0.01) {
            last_dispatch = now;
            for (int i = 0; i < MAX_WORKERS; i++)
                if (b->workers[i].used)
                    dispatch_to(b, i);
            finish_jobs(b);
        }
    }
    store_close(b->store);
    if (b->sock)
        zmq_close(b->sock);
    zmq_ctx_term(ctx);
    free(b);
    return st;
}
