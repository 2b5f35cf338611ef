/* broker_dispatch.c - what each worker gets next: waiting items of its
 * stage, as many as its credit allows, batched by batching.c's rules. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/clock.h"
#include "coordinator/broker_internal.h"
#include "proto/tensor_blob.h"

/* the item state a stage (= a worker role) takes its work from */
store_item_state broker_input_state(const char *stage)
{
    return !strcmp(stage, "text") ? STORE_ITEM_STATE_PENDING : !strcmp(stage, "unet") ? STORE_ITEM_STATE_ENCODED : STORE_ITEM_STATE_DENOISED;
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

void broker_dispatch_to(broker *b, int wi)
{
    worker_t *w = &b->workers[wi];
    int credit = batching_credit(w->capacity, w->inflight);
    if (credit <= 0)
        return;
    store_item_state want = broker_input_state(w->role);
    store_item_ref refs[256];
    int n = store_items_waiting(b->store, want, refs, 256);
    /* refs come ordered by job: look a job's model and pause up once, not per item */
    batching_candidate cand[256];
    char ids[256][80];
    int paused = 0;
    for (int i = 0; i < n; i++) {
        cand[i].job = refs[i].job;
        cand[i].params = refs[i].params;
        if (i > 0 && !strcmp(refs[i].job, refs[i - 1].job)) {
            cand[i].job_identity = cand[i - 1].job_identity;
        } else {
            cand[i].job_identity = store_job_identity(b->store, refs[i].job, ids[i], sizeof ids[i]);
            /* a job whose outputs cannot be written now gets no final work */
            paused = want == STORE_ITEM_STATE_DENOISED && broker_job_paused(b, refs[i].job);
        }
        cand[i].in_flight = paused || item_in_flight(b, refs[i].job, refs[i].idx);
    }
    int picked[BATCHING_MAX_BATCH];
    int np = batching_pick(cand, n, w->identity, credit, picked);
    if (np == 0) {
        store_item_refs_free(refs, n);
        return;
    }
    const char *job0 = refs[picked[0]].job;
    if (!cand[picked[0]].job_identity) { /* the job's first worker decides its model */
        sd_error err = {0};
        if (store_job_set_identity(b->store, job0, w->identity, &err) != SD_OK) {
            broker_log("job %s: store: pinning it to model %s: %s", job0, w->identity, err.msg);
            store_item_refs_free(refs, n);
            return;
        }
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
    t->worker = wi;
    memcpy(t->worker_id, w->id, sizeof t->worker_id); /* both char[64], NUL-terminated */
    memcpy(t->stage, w->role, sizeof t->stage); /* both char[8], NUL-terminated */
    t->stage[sizeof t->stage - 1] = '\0';
    snprintf(t->job, sizeof t->job, "%s", job0);
    for (int k = 0; k < np; k++)
        t->idx[t->n++] = refs[picked[k]].idx;
    /* recorded before it is sent: a restarted coordinator knows it */
    sd_error err = {0};
    if (store_task_add(b->store, t->job, t->stage, w->id, t->idx, t->n, &t->id, &err) != SD_OK) {
        broker_log("job %s: store: recording a task for %s: %s", t->job, w->id, err.msg);
        store_item_refs_free(refs, n);
        return;
    }
    sd_msg m;
    sd_msg_new(&m, "TASK", &err);
    json_t *items = json_array();
    void *blobs[MAX_BATCH] = {0};
    sd_status st = SD_OK;
    for (int k = 0; k < np && st == SD_OK; k++) {
        store_item_ref *r = &refs[picked[k]];
        json_t *info = store_item_info(b->store, r->job, r->idx);
        json_t *queued = json_object_get(info, "queued_at");
        if (json_is_number(queued)) { /* how long it waited here since its last stage ended */
            char key[32];
            snprintf(key, sizeof key, "%s_wait_seconds", t->stage);
            json_object_set_new(info, key, json_real(broker_wall_s() - json_number_value(queued)));
            json_object_del(info, "queued_at");
        }
        json_array_append_new(items, json_pack("{s:i, s:O, s:o}", "idx", r->idx, "params", r->params, "info",
                                               info ? info : json_object()));
        if (want != STORE_ITEM_STATE_PENDING) {
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
        broker_log("task for %s not sent: %s", w->id, err.msg);
        t->used = 1;
        t->worker = -1; /* never counted in the worker's credit */
        broker_task_done(b, t); /* never sent: nothing of it to wait for */
    }
    sd_msg_free(&m);
    for (int k = 0; k < np; k++)
        free(blobs[k]);
    store_item_refs_free(refs, n);
}
