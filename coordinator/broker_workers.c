/* broker_workers.c - workers as the coordinator sees them: registration,
 * heartbeats, liveness (silence for 3 intervals, or a task without progress
 * past the deadline), and what a lost worker's tasks become. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/clock.h"
#include "coordinator/broker_internal.h"
#include "proto/curve.h"
#include "proto/tensor_blob.h"

worker_t *broker_worker(broker *b, const char *id)
{
    for (int i = 0; i < b->workers_hw; i++)
        if (b->workers[i].used && !strcmp(b->workers[i].id, id))
            return &b->workers[i];
    return NULL;
}

task_t *broker_find_task(broker *b, long long id)
{
    for (int i = 0; i < b->tasks_hw; i++)
        if (b->tasks[i].used && b->tasks[i].id == id)
            return &b->tasks[i];
    return NULL;
}

void broker_task_done(broker *b, task_t *t)
{
    sd_error err = {0};
    if (store_task_remove(b->store, t->id, &err) != SD_OK)
        broker_log("job %s: store: forgetting task %lld: %s", t->job, t->id, err.msg);
    if (t->worker >= 0 && b->workers[t->worker].used && b->workers[t->worker].inflight > 0)
        b->workers[t->worker].inflight--;
    t->used = 0;
}

void broker_requeue_task(broker *b, task_t *t, const char *reason, int charge)
{
    sd_error err = {0};
    *(charge ? &b->m.requeued_failed : &b->m.requeued_lost) += (unsigned long long)t->n;
    for (int k = 0; k < t->n; k++) {
        sd_status st = charge ? store_item_failed_attempt(b->store, t->job, t->idx[k], reason, b->o->max_attempts, &err)
                              : store_item_lost(b->store, t->job, t->idx[k], reason, b->o->max_losses, &err);
        if (st != SD_OK)
            broker_log("job %s item %d: store: recording %s (%s): %s", t->job, t->idx[k],
                       charge ? "a failed attempt" : "lost work", reason, err.msg);
    }
    broker_task_done(b, t);
}

/* A worker is gone (dead, stalled, or a new process under its id): its
 * tasks' work is lost, through no fault of their items. */
static void drop_worker(broker *b, int wi, const char *why)
{
    worker_t *w = &b->workers[wi];
    broker_log("worker %s (%s) is dead: %s; its tasks go back to waiting", w->id, w->role, why);
    char reason[160];
    snprintf(reason, sizeof reason, "worker %s %s", w->id, why);
    for (int i = 0; i < b->tasks_hw; i++)
        if (b->tasks[i].used && b->tasks[i].worker == wi)
            broker_requeue_task(b, &b->tasks[i], reason, 0);
    /* what it held waits for it to come back (broker_resolve_source) */
    gone_worker *g = &b->gone[b->next_gone++ % MAX_GONE];
    memcpy(g->id, w->id, sizeof g->id); /* both char[64], NUL-terminated */
    g->since = sd_now_s();
    json_decref(w->release);
    w->release = NULL;
    w->used = 0;
}

int broker_resolve_source(broker *b, json_t *source, double *gone_s)
{
    const char *id = json_string_value(json_object_get(source, "worker"));
    worker_t *w = id ? broker_worker(b, id) : NULL;
    *gone_s = 0;
    if (w && w->data[0]) {
        json_object_set_new(source, "data", json_string(w->data));
        json_object_set_new(source, "key", json_string(w->key));
        return 1;
    }
    double since = b->started;
    for (int i = 1; i <= MAX_GONE && id; i++) { /* newest first */
        const gone_worker *g = &b->gone[(b->next_gone - i + MAX_GONE * 2) % MAX_GONE];
        if (g->id[0] && !strcmp(g->id, id)) {
            since = g->since;
            break;
        }
    }
    *gone_s = sd_now_s() - since;
    return 0;
}

void broker_release_source(broker *b, const char *job, int idx, const json_t *info)
{
    const json_t *src = json_object_get(info, "source");
    const char *id = json_string_value(json_object_get(src, "worker"));
    worker_t *w = id ? broker_worker(b, id) : NULL;
    if (!w) /* gone: its spool forgets it after a day (worker/daemon/data_plane.h) */
        return;
    char key[96];
    sd_data_key(key, sizeof key, job, idx);
    if (!w->release)
        w->release = json_array();
    json_array_append_new(w->release, json_string(key));
}

void broker_send_releases(broker *b)
{
    for (int i = 0; i < b->workers_hw; i++) {
        worker_t *w = &b->workers[i];
        if (!w->used || !w->release)
            continue;
        broker_reply(b, w->route, w->route_len, "RELEASE", json_pack("{s:o}", "keys", w->release));
        w->release = NULL;
    }
}

void broker_load_tasks(broker *b)
{
    static store_task st[MAX_TASKS];
    int n = store_tasks_list(b->store, st, MAX_TASKS);
    double now = sd_now_s();
    for (int i = 0; i < n; i++) {
        task_t *t = broker_task_slot(b);
        memset(t, 0, sizeof *t);
        t->used = 1;
        t->id = st[i].id;
        t->worker = -1;
        snprintf(t->worker_id, sizeof t->worker_id, "%s", st[i].worker);
        snprintf(t->stage, sizeof t->stage, "%s", st[i].stage);
        snprintf(t->job, sizeof t->job, "%s", st[i].job);
        t->n = st[i].n < MAX_BATCH ? st[i].n : MAX_BATCH;
        memcpy(t->idx, st[i].idx, (size_t)t->n * sizeof t->idx[0]);
        t->sent = t->last_progress = t->worker_seen = now;
    }
    if (n)
        broker_log("%d task%s of the last run still held by workers: waiting for them to report", n,
                   n == 1 ? "" : "s");
}

/* A worker (re)registered at index wi: the orphans it holds are its again;
 * those it does not hold (it restarted, or finished them unheard) are lost. */
static void adopt_orphans(broker *b, int wi, long long holding)
{
    worker_t *w = &b->workers[wi];
    for (int i = 0; i < b->tasks_hw; i++) {
        task_t *t = &b->tasks[i];
        if (!t->used || t->worker != -1 || strcmp(t->worker_id, w->id))
            continue;
        if (t->id == holding) {
            t->worker = wi;
            w->inflight++;
            broker_log("worker %s still holds task %lld of the last run: kept", w->id, t->id);
        } else {
            broker_requeue_task(b, t, "its worker registered again without it", 0);
        }
    }
}

/* a message from a worker the coordinator does not know (yet): keeps its
 * orphans alive (the worker computes them and will register after) */
static int refresh_orphans(broker *b, const char *id, const sd_msg *m)
{
    json_t *tid = json_object_get(m->hdr, "task_id");
    int found = 0;
    for (int i = 0; i < b->tasks_hw; i++) {
        task_t *t = &b->tasks[i];
        if (!t->used || t->worker != -1 || strcmp(t->worker_id, id))
            continue;
        t->worker_seen = sd_now_s();
        if (json_is_integer(tid) && json_integer_value(tid) == t->id) {
            t->last_progress = t->worker_seen;
            found = 1;
        }
    }
    return found;
}

/* what a worker hears once registered: the interval, and that it may send
 * its kept result again */
static void reply_registered(broker *b, const unsigned char *route, size_t rl)
{
    broker_reply(b, route, rl, "OK", json_pack("{s:i, s:b}", "heartbeat_ms", b->o->heartbeat_ms, "registered", 1));
}

void broker_handle_worker(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    sd_msg_kind kind = sd_msg_kind_of(m);
    const char *id;
    sd_error err = {0}; /* read below even when only the role check failed */
    if (sd_msg_get_str(m, "worker_id", &id, &err) != SD_OK) {
        b->malformed++;
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    worker_t *w = broker_worker(b, id);
    if (kind == SD_MSG_KIND_REGISTER) {
        const char *role, *identity;
        long long cap;
        if (sd_msg_get_str(m, "role", &role, &err) != SD_OK || sd_msg_get_str(m, "model", &identity, &err) != SD_OK ||
            sd_msg_get_int(m, "capacity", 1, MAX_BATCH, &cap, &err) != SD_OK ||
            (strcmp(role, "text") && strcmp(role, "unet") && strcmp(role, "final"))) {
            b->malformed++;
            broker_reply_error(b, route, rl, err.msg[0] ? err.msg : "role must be text, unet or final");
            return;
        }
        if (!sd_curve_may_register(m->user_id, id)) {
            b->m.refused_key++;
            broker_log("refused REGISTER of worker %s: its CURVE key is not allowed that worker id", id);
            broker_reply_error(b, route, rl, "this CURVE key may not register that worker id (see --allow)");
            return;
        }
        const char *session = json_string_value(json_object_get(m->hdr, "session"));
        json_t *hold = json_object_get(m->hdr, "holding");
        long long holding = json_is_integer(hold) ? (long long)json_integer_value(hold) : 0;
        if (w && session && !strcmp(session, w->session) && !strcmp(w->key, m->user_id)) {
            /* the same process again (it missed a reply, or the coordinator
             * paused): nothing it holds is lost */
            memcpy(w->route, route, rl);
            w->route_len = rl;
            w->last_seen = sd_now_s();
            reply_registered(b, route, rl);
            return;
        }
        if (w) /* another process under this id: the old one's work is lost (no attempt charged) */
            drop_worker(b, (int)(w - b->workers), "registered again (a new process)");
        for (int i = 0; i < MAX_WORKERS && !w; i++)
            if (!b->workers[i].used)
                w = &b->workers[i];
        if (!w) {
            broker_reply_error(b, route, rl, "too many workers");
            return;
        }
        if ((int)(w - b->workers) + 1 > b->workers_hw)
            b->workers_hw = (int)(w - b->workers) + 1;
        memset(w, 0, sizeof *w);
        w->used = 1;
        memcpy(w->route, route, rl);
        w->route_len = rl;
        snprintf(w->id, sizeof w->id, "%s", id);
        snprintf(w->role, sizeof w->role, "%s", role);
        snprintf(w->identity, sizeof w->identity, "%s", identity);
        snprintf(w->session, sizeof w->session, "%s", session ? session : "");
        const char *devices = json_string_value(json_object_get(m->hdr, "devices"));
        snprintf(w->devices, sizeof w->devices, "%s", devices ? devices : "?");
        snprintf(w->key, sizeof w->key, "%s", m->user_id);
        const char *data = json_string_value(json_object_get(m->hdr, "data"));
        snprintf(w->data, sizeof w->data, "%s", data && !strncmp(data, "tcp://", 6) && strlen(data) < sizeof w->data
                                                    ? data
                                                    : "");
        w->capacity = (int)cap;
        json_t *hold_n = json_object_get(m->hdr, "hold");
        w->hold = json_is_integer(hold_n) && json_integer_value(hold_n) > 0 && json_integer_value(hold_n) < (1 << 30)
                      ? (int)json_integer_value(hold_n)
                      : 0;
        w->last_seen = w->registered = sd_now_s();
        broker_log("worker %s registered: role %s, capacity %d, model %s", id, role, w->capacity, identity);
        adopt_orphans(b, (int)(w - b->workers), holding);
        reply_registered(b, route, rl);
        return;
    }
    if (!w) {
        /* heartbeats of a worker computing an orphan, and any liveness
         * heartbeat, need no answer; a result or an idle heartbeat is told
         * to register (the worker keeps its result and sends it again) */
        int computing = refresh_orphans(b, id, m);
        if (!computing && !json_is_true(json_object_get(m->hdr, "alive"))) {
            b->m.refused_unknown++;
            broker_reply_error(b, route, rl, "unknown worker: register first");
        }
        return;
    }
    if (strcmp(w->key, m->user_id)) { /* another key speaking for this worker */
        broker_reply_error(b, route, rl, "this CURVE key is not the one worker registered with");
        return;
    }
    w->last_seen = sd_now_s();
    if (json_is_true(json_object_get(m->hdr, "alive")))
        return; /* the worker's liveness thread, on its own socket */
    memcpy(w->route, route, rl);
    w->route_len = rl;
    if (kind == SD_MSG_KIND_HEARTBEAT) {
        json_t *tid = json_object_get(m->hdr, "task_id");
        task_t *t = json_is_integer(tid) ? broker_find_task(b, (long long)json_integer_value(tid)) : NULL;
        if (t)
            t->last_progress = w->last_seen;
        return; /* no reply: the coordinator sends its own heartbeats */
    }
    if (kind == SD_MSG_KIND_RESULT || kind == SD_MSG_KIND_FAIL)
        broker_handle_result(b, w, m, route, rl);
    else
        broker_reply_error(b, route, rl, "unexpected message type from a worker");
}

void broker_liveness(broker *b)
{
    double now = sd_now_s(), limit = 3.0 * b->o->heartbeat_ms / 1000.0, progress = b->o->progress_timeout_ms / 1000.0;
    for (int i = 0; i < b->workers_hw; i++) {
        worker_t *w = &b->workers[i];
        if (w->used && now - w->last_seen > limit)
            drop_worker(b, i, "stopped responding");
    }
    /* one pass over the tasks: orphans whose worker is silent or makes no
     * progress are lost; a worker with a stuck task is as dead as a silent
     * one (progress comes from the compute loop, not the socket) */
    for (int k = 0; k < b->tasks_hw; k++) {
        task_t *t = &b->tasks[k];
        if (!t->used)
            continue;
        if (t->worker == -1 && (now - t->worker_seen > limit || now - t->last_progress > progress))
            broker_requeue_task(b, t, "its worker did not come back after the coordinator restarted", 0);
        else if (t->worker >= 0 && b->workers[t->worker].used && now - t->last_progress > progress)
            drop_worker(b, t->worker, "made no progress on its task");
    }
    if (now - b->last_hb >= b->o->heartbeat_ms / 1000.0) {
        b->last_hb = now;
        for (int i = 0; i < b->workers_hw; i++)
            if (b->workers[i].used)
                broker_reply(b, b->workers[i].route, b->workers[i].route_len, "HEARTBEAT", NULL);
    }
}
