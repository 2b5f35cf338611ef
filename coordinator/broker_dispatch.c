/* broker_dispatch.c - what each worker gets next: waiting items of its
 * stage, as many as its credit allows, batched by batching.c's rules. */
#include <limits.h>
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

/* The items in flight at one stage, sorted by (job, idx): read once per
 * dispatch round, so a waiting item is checked by a binary search instead
 * of a scan of every task. */
typedef struct {
    const char *job;
    int idx;
} flight;

typedef struct {
    flight *f;
    int n;
} flights;

static int flight_cmp(const void *a, const void *b)
{
    const flight *x = a, *y = b;
    int c = strcmp(x->job, y->job);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* what a round's scan of the store consults: the stage's items in flight
 * (skipped) and each job's --max-ahead room (its cap), from the round's
 * constants: --max-ahead plus the next stage's capacity, and the room left
 * over every job (the text workers' hold) */
typedef struct {
    broker *b;
    int stage; /* 0 text, 1 unet, 2 final (no room: in_flight only) */
    const flights *fl;
    long long ahead, all_jobs;
} round_scan;

static int in_flight(void *user, const char *job, int idx)
{
    const flights *fl = ((const round_scan *)user)->fl;
    flight key = {job, idx};
    return fl->n && bsearch(&key, fl->f, (size_t)fl->n, sizeof key, flight_cmp) != NULL;
}

static flights flights_of(broker *b, const char *stage)
{
    flights fl = {NULL, 0};
    int n = 0;
    for (int i = 0; i < b->tasks_hw; i++)
        if (b->tasks[i].used && !strcmp(b->tasks[i].stage, stage))
            n += b->tasks[i].n;
    fl.f = n ? malloc((size_t)n * sizeof *fl.f) : NULL;
    for (int i = 0; fl.f && i < b->tasks_hw; i++)
        if (b->tasks[i].used && !strcmp(b->tasks[i].stage, stage))
            for (int k = 0; k < b->tasks[i].n; k++)
                fl.f[fl.n++] = (flight){b->tasks[i].job, b->tasks[i].idx[k]};
    if (fl.n)
        qsort(fl.f, (size_t)fl.n, sizeof *fl.f, flight_cmp);
    return fl;
}

task_t *broker_task_slot(broker *b)
{
    for (int i = 0; i < MAX_TASKS; i++)
        if (!b->tasks[i].used) {
            if (i + 1 > b->tasks_hw)
                b->tasks_hw = i + 1;
            return &b->tasks[i];
        }
    return NULL;
}

/* the candidates of one round: the waiting items, with their job's model */
#define ROUND_ITEMS 256
typedef struct {
    store_item_state want;
    store_item_ref refs[ROUND_ITEMS];
    batching_candidate cand[ROUND_ITEMS];
    char ids[ROUND_ITEMS][80];
    int n;
} round_t;

/* One worker's task from the round's candidates (those it takes are marked
 * in flight for the workers after it). */
static void dispatch_one(broker *b, int wi, round_t *r)
{
    worker_t *w = &b->workers[wi];
    int credit = batching_credit(w->capacity, w->inflight);
    store_item_state want = r->want;
    store_item_ref *refs = r->refs;
    batching_candidate *cand = r->cand;
    int picked[BATCHING_MAX_BATCH];
    int np = credit > 0 ? batching_pick(cand, r->n, w->identity, credit, picked) : 0;
    if (np == 0)
        return;
    const char *job0 = refs[picked[0]].job;
    if (!cand[picked[0]].job_identity) { /* the job's first worker decides its model */
        sd_error err = {0};
        if (store_job_set_identity(b->store, job0, w->identity, &err) != SD_OK) {
            broker_log("job %s: store: pinning it to model %s: %s", job0, w->identity, err.msg);
            return;
        }
        for (int i = 0; i < r->n; i++) /* for the rest of the round too */
            if (!strcmp(refs[i].job, job0)) {
                snprintf(r->ids[i], sizeof r->ids[i], "%s", w->identity);
                cand[i].job_identity = r->ids[i];
            }
    }
    task_t *t = broker_task_slot(b);
    if (!t)
        return;
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
        return;
    }
    for (int k = 0; k < np; k++) /* taken: not offered to the next worker of this round */
        cand[picked[k]].in_flight = 1;
    sd_msg m;
    sd_msg_new(&m, "TASK", &err);
    json_t *items = json_array();
    void *blobs[MAX_BATCH] = {0};
    sd_status st = SD_OK;
    for (int k = 0; k < np && st == SD_OK; k++) {
        store_item_ref *ref = &refs[picked[k]];
        json_t *info = json_deep_copy(ref->info); /* its source resolved by broker_dispatch */
        json_t *queued = json_object_get(info, "queued_at");
        if (json_is_number(queued)) { /* how long it waited here since its last stage ended */
            char key[32];
            snprintf(key, sizeof key, "%s_wait_seconds", t->stage);
            json_object_set_new(info, key, json_real(broker_wall_s() - json_number_value(queued)));
            json_object_del(info, "queued_at");
        }
        json_array_append_new(items, json_pack("{s:i, s:O, s:o}", "idx", ref->idx, "params", ref->params, "info",
                                               info ? info : json_object()));
        /* a text result its producer holds is fetched from there (the
         * item's info names the source); anything else travels along */
        if (want != STORE_ITEM_STATE_PENDING && !json_is_object(json_object_get(info, "source"))) {
            size_t len;
            char suffix[16];
            snprintf(suffix, sizeof suffix, "%d", k);
            st = store_item_blob(b->store, ref->job, ref->idx, &blobs[k], &len, &err);
            if (st == SD_OK)
                st = sd_blob_attach(&m, blobs[k], len, suffix, &err);
        }
    }
    json_object_set_new(m.hdr, "task_id", json_integer(t->id));
    json_object_set_new(m.hdr, "stage", json_string(t->stage));
    json_object_set_new(m.hdr, "job", json_string(t->job));
    json_object_set_new(m.hdr, "items", items);
    json_t *out = !strcmp(t->stage, "final") ? broker_direct_out(b, t->job) : NULL;
    if (out) /* the worker may write the images itself */
        json_object_set_new(m.hdr, "out", out);
    if (st == SD_OK)
        st = broker_send(b, w->route, w->route_len, &m, &err);
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
}

/* Over every job: what the text workers can still hold in memory (their
 * --hold, summed) less the conditioning they hold now (items encoded and not
 * yet fetched by a unet task) and will hold (items at the text stage, fl).
 * Past it a text worker drops the oldest, whose unet task then finds it
 * gone: a loss charged to the item, and after --max-losses of them a failed
 * item, for what is only the coordinator outrunning the holders (several
 * jobs at once could, each within its --max-ahead). LLONG_MAX when no text
 * worker said its hold. */
static long long text_hold_room(broker *b, const flights *fl)
{
    long long hold = 0, fetched = 0, items[6], running, ended;
    for (int i = 0; i < b->workers_hw; i++)
        if (b->workers[i].used && !strcmp(b->workers[i].role, "text"))
            hold += b->workers[i].hold;
    if (hold == 0)
        return LLONG_MAX;
    for (int i = 0; i < b->tasks_hw; i++) /* a unet task has fetched (or is fetching) its conditioning */
        if (b->tasks[i].used && !strcmp(b->tasks[i].stage, "unet"))
            fetched += b->tasks[i].n;
    store_state_totals(b->store, items, &running, &ended);
    long long held = items[STORE_ITEM_STATE_ENCODED] - fetched;
    return hold - (held > 0 ? held : 0) - fl->n;
}

long long broker_stage_capacity(broker *b, const char *role)
{
    long long cap = 0;
    for (int i = 0; i < b->workers_hw; i++)
        if (b->workers[i].used && !strcmp(b->workers[i].role, role))
            cap += b->workers[i].capacity;
    return cap;
}

/* The round's constants of stage s (0 text, 1 unet; the final stage has no
 * next, so no bound and no scan callback). */
static round_scan round_scan_of(broker *b, int s, const flights *fl)
{
    static const char *const next[2] = {"unet", "final"};
    round_scan rs = {b, s, fl, (long long)b->o->max_ahead + broker_stage_capacity(b, next[s]), LLONG_MAX};
    if (s == 0)
        rs.all_jobs = text_hold_room(b, fl);
    return rs;
}

/* How many more of a job's items the stage may start: the job's items done
 * with it and waiting for or at the next stage, plus those at the stage now
 * (they will be), stay within --max-ahead plus the next stage's capacity,
 * and within the room left over every job. Without it a slow or dead final
 * stage lets the unet workers spool a whole job's latents (256 KB an item
 * at 1024x1024: 256 GB for a million). */
static int job_room(void *user, const char *job)
{
    const round_scan *rs = user;
    long long at_s = 0;
    for (int i = 0; i < rs->fl->n; i++)
        at_s += !strcmp(rs->fl->f[i].job, job);
    long long done = store_job_count(rs->b->store, job, rs->stage == 0 ? STORE_ITEM_STATE_ENCODED
                                                                       : STORE_ITEM_STATE_DENOISED);
    long long room = rs->ahead - done - at_s;
    room = rs->all_jobs < room ? rs->all_jobs : room;
    return room < 0 ? 0 : room > INT_MAX ? INT_MAX : (int)room;
}

/* Candidates whose input a worker holds: where it serves now (a holder
 * that restarted has a new port). One whose holder is gone is not offered:
 * text conditioning is made again at once (it was only in memory); latents
 * wait --hold-grace-ms for their holder to come back with its spool, then
 * are made again too. */
static void sources_resolve(broker *b, round_t *r)
{
    for (int i = 0; i < r->n; i++) {
        json_t *src = json_object_get(r->refs[i].info, "source");
        double gone_s;
        r->cand[i].in_flight = 0;
        /* (an item sent back to the start keeps its old source: not its input now) */
        if (r->want == STORE_ITEM_STATE_PENDING || !json_is_object(src) || broker_resolve_source(b, src, &gone_s))
            continue;
        r->cand[i].in_flight = 1;
        if (r->want == STORE_ITEM_STATE_DENOISED && gone_s * 1000.0 < b->o->hold_grace_ms)
            continue;
        const char *id = json_string_value(json_object_get(src, "worker"));
        char why[160];
        snprintf(why, sizeof why, "its %s holder %s is gone%s", r->want == STORE_ITEM_STATE_DENOISED ? "latents'" : "text conditioning's",
                 id ? id : "?", r->want == STORE_ITEM_STATE_DENOISED ? " past --hold-grace-ms" : "");
        sd_error err = {0};
        b->m.inputs_lost++;
        broker_log("job %s item %d: %s: made again", r->refs[i].job, r->refs[i].idx, why);
        if (store_item_lost_input(b->store, r->refs[i].job, r->refs[i].idx, why, b->o->max_losses, &err) != SD_OK)
            broker_log("job %s item %d: store: recording lost work: %s", r->refs[i].job, r->refs[i].idx, err.msg);
    }
}

void broker_dispatch(broker *b)
{
    static const char *const stages[3] = {"text", "unet", "final"};
    static round_t r; /* ~100 KB: not on the stack */
    for (int s = 0; s < 3; s++) {
        /* what the stage's idle workers can take: only that many waiting
         * items of each job (twice, for batching's choice) are read and
         * parsed, not a full round's whenever one worker is free */
        int credit = 0;
        for (int i = 0; i < b->workers_hw && credit < ROUND_ITEMS; i++)
            if (b->workers[i].used && !strcmp(b->workers[i].role, stages[s]))
                credit += batching_credit(b->workers[i].capacity, b->workers[i].inflight);
        if (credit <= 0)
            continue;
        int want = 2 * credit < ROUND_ITEMS ? 2 * credit : ROUND_ITEMS;
        /* the waiting items once for every worker of the stage, those in
         * flight skipped in the store's scan */
        flights fl = flights_of(b, stages[s]);
        r.want = broker_input_state(stages[s]);
        /* a job past its room is not even read: the idle workers of a stage
         * that waits for the next would otherwise have every turn parse
         * candidates only to pass them over */
        round_scan rs = s < 2 ? round_scan_of(b, s, &fl) : (round_scan){b, s, &fl, 0, 0};
        r.n = store_items_waiting(b->store, r.want, r.refs, ROUND_ITEMS, want, want + fl.n, in_flight,
                                  s < 2 ? job_room : NULL, &rs);
        free(fl.f);
        int paused = 0;
        sources_resolve(b, &r);
        for (int i = 0; i < r.n; i++) {
            r.cand[i].job = r.refs[i].job;
            r.cand[i].params = r.refs[i].params;
            /* refs come ordered by job: a job's model and pause looked up once */
            if (i > 0 && !strcmp(r.refs[i].job, r.refs[i - 1].job)) {
                r.cand[i].job_identity = r.cand[i - 1].job_identity ? r.ids[i] : NULL;
                memcpy(r.ids[i], r.ids[i - 1], sizeof r.ids[i]);
            } else {
                r.cand[i].job_identity = store_job_identity(b->store, r.refs[i].job, r.ids[i], sizeof r.ids[i]);
                /* a job whose outputs cannot be written now gets no final work */
                paused = r.want == STORE_ITEM_STATE_DENOISED && broker_job_paused(b, r.refs[i].job);
            }
            r.cand[i].in_flight |= paused;
        }
        for (int i = 0; i < b->workers_hw && r.n; i++)
            if (b->workers[i].used && !strcmp(b->workers[i].role, stages[s]))
                dispatch_one(b, i, &r);
        store_item_refs_free(r.refs, r.n);
    }
}
