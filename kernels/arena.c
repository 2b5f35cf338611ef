/* arena.c - a recorded, planned, replayed activation block (see arena.h). */
#include "kernels/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "kernels/arena_plan.h"
#include "kernels/backend_impl.h"

/* enough for any vector load and for cuBLASLt's operand alignment */
#define ARENA_ALIGN 256

typedef struct {
    void *ptr;
    int k; /* buffer index in the plan */
} live_buf;

struct sd_arena {
    sd_backend *be;
    sd_arena_plan plan;
    int planned; /* 0: the next run records; 1: runs replay the plan */
    void *block;
    int pos; /* replay: the next event expected */
    live_buf *live;
    int nlive, caplive;
    char fault[200]; /* replay: first departure from the plan */
    long long runs;
};

sd_status sd_arena_create(sd_arena **out, sd_backend *be, sd_error *err)
{
    sd_arena *a = calloc(1, sizeof *a);
    if (!a)
        return sd_fail(err, SD_ERR_NOMEM, "arena: out of memory");
    a->be = be;
    sd_arena_plan_init(&a->plan);
    *out = a;
    return SD_OK;
}

void sd_arena_free(sd_arena *a)
{
    if (!a)
        return;
    if (a->block)
        a->be->vt->release(a->be, a->block);
    sd_arena_plan_free(&a->plan);
    free(a->live);
    free(a);
}

sd_status sd_arena_enter(sd_arena *a, sd_error *err)
{
    if (a->be->arena)
        return sd_fail(err, SD_ERR_INVALID, "arena: backend %s already has an arena entered", a->be->name);
    a->be->arena = a;
    a->pos = 0;
    a->nlive = 0;
    a->fault[0] = 0;
    return SD_OK;
}

static sd_status push_live(sd_arena *a, void *ptr, int k, sd_error *err)
{
    if (sd_grow((void **)&a->live, &a->caplive, a->nlive, sizeof *a->live, 64))
        return sd_fail(err, SD_ERR_NOMEM, "arena: out of memory");
    a->live[a->nlive++] = (live_buf){ptr, k};
    return SD_OK;
}

sd_status sd_arena_take(sd_arena *a, size_t bytes, void **ptr, sd_error *err)
{
    /* a zero-byte tensor still gets its own address, so frees stay unambiguous */
    size_t size = bytes ? bytes : 1;
    if (!a->planned) {
        int k;
        SD_TRY(a->be->vt->alloc(a->be, size, ptr, err));
        sd_status st = sd_arena_plan_note_alloc(&a->plan, size, &k, err);
        if (st == SD_OK)
            st = push_live(a, *ptr, k, err);
        if (st != SD_OK)
            a->be->vt->release(a->be, *ptr);
        return st;
    }
    if (!a->fault[0]) {
        int ev = a->pos < a->plan.nevents ? a->plan.events[a->pos] : INT32_MIN;
        if (ev < 0 || a->plan.bufs[ev].size != size)
            snprintf(a->fault, sizeof a->fault,
                     "event %d is an allocation of %zu bytes where the plan has %s %zu bytes", a->pos, size,
                     ev == INT32_MIN ? "ended, after" : ev < 0 ? "a free of" : "an allocation of",
                     ev == INT32_MIN ? (size_t)a->plan.nevents : a->plan.bufs[ev < 0 ? -ev - 1 : ev].size);
    }
    if (a->fault[0])
        return sd_fail(err, SD_ERR_INVALID, "arena: the run departs from its plan: %s (same shapes every run?)",
                       a->fault);
    int k = a->plan.events[a->pos++];
    *ptr = (char *)a->block + a->plan.bufs[k].offset;
    return push_live(a, *ptr, k, err);
}

int sd_arena_give_back(sd_arena *a, void *ptr)
{
    int i = a->nlive - 1;
    while (i >= 0 && a->live[i].ptr != ptr)
        i--;
    if (i < 0)
        return 0; /* not allocated in this run: the backend's */
    int k = a->live[i].k;
    a->live[i] = a->live[--a->nlive];
    if (!a->planned) {
        sd_error err;
        if (sd_arena_plan_note_free(&a->plan, k, &err) != SD_OK && !a->fault[0])
            snprintf(a->fault, sizeof a->fault, "%s", err.msg);
        a->be->vt->release(a->be, ptr);
        return 1;
    }
    if (!a->fault[0]) {
        if (a->pos < a->plan.nevents && a->plan.events[a->pos] == -(k + 1))
            a->pos++;
        else
            snprintf(a->fault, sizeof a->fault, "event %d frees buffer %d, which the plan frees elsewhere", a->pos,
                     k);
    }
    return 1;
}

static void forget_record(sd_arena *a)
{
    sd_arena_plan_free(&a->plan);
    sd_arena_plan_init(&a->plan);
}

sd_status sd_arena_leave(sd_arena *a, int run_ok, sd_error *err)
{
    if (a->be->arena != a)
        return sd_fail(err, SD_ERR_INVALID, "arena: left without being entered");
    a->be->arena = NULL;
    int nlive = a->nlive;
    a->nlive = 0;
    if (!run_ok) {
        if (!a->planned)
            forget_record(a);
        return SD_OK;
    }
    if (nlive) {
        if (!a->planned)
            forget_record(a);
        return sd_fail(err, SD_ERR_INVALID, "arena: %d tensors allocated during the run are still alive at its end",
                       nlive);
    }
    if (a->fault[0]) {
        if (!a->planned)
            forget_record(a);
        return sd_fail(err, SD_ERR_INVALID, "arena: the run departs from its plan: %s", a->fault);
    }
    if (!a->planned) {
        sd_status st = sd_arena_plan_solve(&a->plan, ARENA_ALIGN, err);
        if (st == SD_OK && a->plan.arena_bytes)
            st = a->be->vt->alloc(a->be, a->plan.arena_bytes, &a->block, err);
        if (st != SD_OK) {
            forget_record(a);
            return st;
        }
        a->planned = 1;
    } else if (a->pos != a->plan.nevents) {
        return sd_fail(err, SD_ERR_INVALID, "arena: the run ended after %d of its plan's %d events", a->pos,
                       a->plan.nevents);
    }
    a->runs++;
    return SD_OK;
}

void sd_arena_get_stats(const sd_arena *a, sd_arena_stats *s)
{
    s->arena_bytes = a->plan.arena_bytes;
    s->peak_live_bytes = a->plan.peak_live_bytes;
    s->buffers = a->plan.nbufs;
    s->runs = a->runs;
}
