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

static worker_t *find_worker(broker *b, const char *id)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (b->workers[i].used && !strcmp(b->workers[i].id, id))
            return &b->workers[i];
    return NULL;
}

/* Items of a task go back to waiting (their last completed stage is kept in
 * the store) with an attempt counted. */
void broker_requeue_task(broker *b, task_t *t, const char *reason)
{
    sd_error err = {0};
    for (int k = 0; k < t->n; k++)
        if (store_item_failed_attempt(b->store, t->job, t->idx[k], reason, b->o->max_attempts, &err) != SD_OK)
            broker_log("job %s item %d: store: recording a failed attempt (%s): %s", t->job, t->idx[k], reason,
                       err.msg);
    if (t->worker >= 0 && b->workers[t->worker].used && b->workers[t->worker].inflight > 0)
        b->workers[t->worker].inflight--;
    t->used = 0;
}

static void drop_worker(broker *b, int wi, const char *why)
{
    worker_t *w = &b->workers[wi];
    broker_log("worker %s (%s) is dead: %s; its tasks go back to waiting", w->id, w->role, why);
    char reason[160];
    snprintf(reason, sizeof reason, "worker %s %s", w->id, why);
    for (int i = 0; i < MAX_TASKS; i++)
        if (b->tasks[i].used && b->tasks[i].worker == wi)
            broker_requeue_task(b, &b->tasks[i], reason);
    w->used = 0;
}

void broker_handle_worker(broker *b, const sd_msg *m, const unsigned char *route, size_t rl)
{
    sd_msg_kind kind = sd_msg_kind_of(m);
    const char *id;
    sd_error err;
    if (sd_msg_get_str(m, "worker_id", &id, &err) != SD_OK) {
        b->malformed++;
        broker_reply_error(b, route, rl, err.msg);
        return;
    }
    worker_t *w = find_worker(b, id);
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
        if (w) /* a worker that registers again restarted: what it held is lost */
            drop_worker(b, (int)(w - b->workers), "registered again");
        for (int i = 0; i < MAX_WORKERS && !w; i++)
            if (!b->workers[i].used)
                w = &b->workers[i];
        if (!w) {
            broker_reply_error(b, route, rl, "too many workers");
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
        broker_log("worker %s registered: role %s, capacity %d, model %s", id, role, w->capacity, identity);
        broker_reply(b, route, rl, "OK", json_pack("{s:i}", "heartbeat_ms", b->o->heartbeat_ms));
        return;
    }
    if (!w) {
        broker_reply_error(b, route, rl, "unknown worker: register first");
        return;
    }
    w->last_seen = sd_now_s();
    if (json_is_true(json_object_get(m->hdr, "alive")))
        return; /* the worker's liveness thread, on its own socket */
    memcpy(w->route, route, rl);
    w->route_len = rl;
    if (kind == SD_MSG_KIND_HEARTBEAT) {
        json_t *tid = json_object_get(m->hdr, "task_id");
        for (int i = 0; json_is_integer(tid) && i < MAX_TASKS; i++)
            if (b->tasks[i].used && b->tasks[i].id == json_integer_value(tid))
                b->tasks[i].last_progress = w->last_seen;
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
                broker_reply(b, b->workers[i].route, b->workers[i].route_len, "HEARTBEAT", NULL);
    }
}
