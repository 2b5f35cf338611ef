/* arena_plan.c - offsets for recorded buffer lifetimes (see arena_plan.h). */
#include "kernels/arena_plan.h"

#include <stdlib.h>
#include <string.h>

#include "common/grow.h"

void sd_arena_plan_init(sd_arena_plan *p)
{
    memset(p, 0, sizeof *p);
}

void sd_arena_plan_free(sd_arena_plan *p)
{
    free(p->bufs);
    free(p->events);
    memset(p, 0, sizeof *p);
}

static sd_status push_event(sd_arena_plan *p, int ev, sd_error *err)
{
    if (sd_grow((void **)&p->events, &p->capevents, p->nevents, sizeof *p->events, 256))
        return sd_fail(err, SD_ERR_NOMEM, "arena plan: out of memory");
    p->events[p->nevents++] = ev;
    return SD_OK;
}

sd_status sd_arena_plan_note_alloc(sd_arena_plan *p, size_t size, int *index, sd_error *err)
{
    if (sd_grow((void **)&p->bufs, &p->capbufs, p->nbufs, sizeof *p->bufs, 128))
        return sd_fail(err, SD_ERR_NOMEM, "arena plan: out of memory");
    int k = p->nbufs;
    SD_TRY(push_event(p, k, err));
    p->bufs[k] = (sd_arena_buf){.size = size, .first = p->nevents - 1, .last = -1};
    p->nbufs++;
    *index = k;
    return SD_OK;
}

sd_status sd_arena_plan_note_free(sd_arena_plan *p, int index, sd_error *err)
{
    if (index < 0 || index >= p->nbufs || p->bufs[index].last >= 0)
        return sd_fail(err, SD_ERR_INVALID, "arena plan: buffer %d freed twice or never allocated", index);
    SD_TRY(push_event(p, -(index + 1), err));
    p->bufs[index].last = p->nevents - 1;
    return SD_OK;
}

static size_t round_up(size_t n, size_t align)
{
    return (n + align - 1) & ~(align - 1);
}

/* sort keys: largest first, among equals the earlier (a deterministic plan) */
typedef struct {
    size_t size;
    int first, k;
} by_size_key;
static int by_size_desc(const void *a, const void *b)
{
    const by_size_key *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return x->first - y->first;
}

/* a placed neighbour's extent */
typedef struct {
    size_t offset, end;
} extent;
static int by_offset(const void *a, const void *b)
{
    const extent *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

sd_status sd_arena_plan_solve(sd_arena_plan *p, size_t align, sd_error *err)
{
    if (align == 0 || (align & (align - 1)))
        return sd_fail(err, SD_ERR_INVALID, "arena plan: alignment %zu is not a power of two", align);
    p->arena_bytes = p->peak_live_bytes = 0;
    if (p->nbufs == 0)
        return SD_OK;
    int n = p->nbufs;
    by_size_key *order = malloc((size_t)n * sizeof *order);
    int *placed = malloc((size_t)n * sizeof *placed);
    extent *near = malloc((size_t)n * sizeof *near);
    if (!order || !placed || !near) {
        free(order);
        free(placed);
        free(near);
        return sd_fail(err, SD_ERR_NOMEM, "arena plan: out of memory");
    }
    for (int k = 0; k < n; k++) {
        if (p->bufs[k].last < 0)
            p->bufs[k].last = p->nevents; /* alive to the end of the run */
        order[k] = (by_size_key){p->bufs[k].size, p->bufs[k].first, k};
    }
    /* peak of live bytes, walking the events */
    size_t live = 0;
    for (int e = 0; e < p->nevents; e++) {
        int ev = p->events[e];
        if (ev >= 0) {
            live += round_up(p->bufs[ev].size, align);
            if (live > p->peak_live_bytes)
                p->peak_live_bytes = live;
        } else {
            live -= round_up(p->bufs[-ev - 1].size, align);
        }
    }
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    int nplaced = 0;
    for (int i = 0; i < n; i++) {
        sd_arena_buf *b = &p->bufs[order[i].k];
        size_t need = round_up(b->size, align);
        /* the placed buffers whose lifetimes meet this one's, by offset */
        int nn = 0;
        for (int j = 0; j < nplaced; j++) {
            const sd_arena_buf *o = &p->bufs[placed[j]];
            if (o->first <= b->last && b->first <= o->last)
                near[nn++] = (extent){o->offset, o->offset + round_up(o->size, align)};
        }
        qsort(near, (size_t)nn, sizeof *near, by_offset);
        /* the lowest gap that holds it */
        size_t at = 0;
        for (int j = 0; j < nn; j++) {
            if (near[j].offset >= at + need)
                break;
            if (near[j].end > at)
                at = near[j].end;
        }
        b->offset = at;
        if (at + need > p->arena_bytes)
            p->arena_bytes = at + need;
        placed[nplaced++] = order[i].k;
    }
    free(order);
    free(placed);
    free(near);
    return SD_OK;
}
