/* test_arena.c - the activation arena: its planner (kernels/arena_plan.h)
 * and the record/replay runtime (kernels/arena.h) on the CPU backend. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"
#include "kernels/arena_plan.h"
#include "tests/test_util.h"

#define ALIGN 256

static size_t up(size_t n)
{
    return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

/* every pair of buffers alive at once lies in disjoint memory inside the block */
static void expect_valid(const sd_arena_plan *p)
{
    cr_assert_geq(p->arena_bytes, p->peak_live_bytes);
    for (int a = 0; a < p->nbufs; a++) {
        const sd_arena_buf *x = &p->bufs[a];
        cr_assert_eq(x->offset % ALIGN, 0);
        cr_assert_leq(x->offset + up(x->size), p->arena_bytes, "buffer %d ends past the block", a);
        for (int b = a + 1; b < p->nbufs; b++) {
            const sd_arena_buf *y = &p->bufs[b];
            int together = x->first <= y->last && y->first <= x->last;
            int apart = x->offset + up(x->size) <= y->offset || y->offset + up(y->size) <= x->offset;
            cr_assert(!together || apart, "buffers %d and %d are alive together and overlap", a, b);
        }
    }
}

Test(arena_plan, random_lifetimes_never_share_memory)
{
    srand(7);
    for (int trial = 0; trial < 50; trial++) {
        sd_arena_plan p;
        sd_arena_plan_init(&p);
        sd_error err;
        int live[64], nlive = 0;
        size_t total = 0;
        for (int e = 0; e < 300; e++) {
            if (nlive && (nlive == 64 || rand() % 2)) {
                int i = rand() % nlive;
                cr_assert_eq(sd_arena_plan_note_free(&p, live[i], &err), SD_OK, "%s", err.msg);
                live[i] = live[--nlive];
            } else {
                size_t size = 1 + (size_t)(rand() % 5000) * (rand() % 3 ? 1 : 97);
                cr_assert_eq(sd_arena_plan_note_alloc(&p, size, &live[nlive++], &err), SD_OK);
                total += up(size);
            }
        }
        cr_assert_eq(sd_arena_plan_solve(&p, ALIGN, &err), SD_OK);
        expect_valid(&p);
        cr_assert_leq(p.arena_bytes, total);
        sd_arena_plan_free(&p);
    }
}

Test(arena_plan, a_chain_of_layers_needs_only_its_peak)
{
    /* x0 -> x1 -> x2 ...: each output allocated, then its input freed, as a
     * network's forward does; two buffers at once, so the peak is the plan */
    sd_arena_plan p;
    sd_arena_plan_init(&p);
    sd_error err;
    int prev;
    cr_assert_eq(sd_arena_plan_note_alloc(&p, 4096, &prev, &err), SD_OK);
    for (int i = 0; i < 20; i++) {
        int next;
        cr_assert_eq(sd_arena_plan_note_alloc(&p, 4096, &next, &err), SD_OK);
        cr_assert_eq(sd_arena_plan_note_free(&p, prev, &err), SD_OK);
        prev = next;
    }
    cr_assert_eq(sd_arena_plan_solve(&p, ALIGN, &err), SD_OK);
    expect_valid(&p);
    cr_assert_eq(p.peak_live_bytes, 2 * 4096);
    cr_assert_eq(p.arena_bytes, 2 * 4096);
    sd_arena_plan_free(&p);
}

Test(arena_plan, double_free_and_bad_alignment_are_errors)
{
    sd_arena_plan p;
    sd_arena_plan_init(&p);
    sd_error err;
    int k;
    cr_assert_eq(sd_arena_plan_note_alloc(&p, 10, &k, &err), SD_OK);
    cr_assert_eq(sd_arena_plan_note_free(&p, k, &err), SD_OK);
    cr_assert_neq(sd_arena_plan_note_free(&p, k, &err), SD_OK);
    cr_assert(strstr(err.msg, "freed twice"), "%s", err.msg);
    cr_assert_neq(sd_arena_plan_solve(&p, 100, &err), SD_OK);
    cr_assert(strstr(err.msg, "power of two"), "%s", err.msg);
    sd_arena_plan_free(&p);
}

/* one "run": a small forward-like pattern of tensor allocations on be,
 * leaving the values it computed in result (n floats) */
static sd_status run_pattern(sd_backend *be, int64_t n, float *result, void **addrs, sd_error *err)
{
    sd_tensor a = {0}, b = {0}, c = {0};
    int64_t shape[1] = {n};
    float *host = malloc((size_t)n * sizeof *host);
    for (int64_t i = 0; i < n; i++)
        host[i] = (float)i;
    sd_status st = sd_tensor_from_host(be, &a, host, SD_DTYPE_F32, 1, shape, 0, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(be, &b, 1, shape, err);
    if (st == SD_OK)
        st = sd_op_scale(&b, &a, 2.0f, err);
    if (addrs) {
        addrs[0] = a.data;
        addrs[1] = b.data;
    }
    sd_tensor_free(&a);
    if (st == SD_OK)
        st = sd_tensor_alloc(be, &c, 1, shape, err);
    if (st == SD_OK)
        st = sd_op_add(&c, &b, &b, err);
    if (addrs)
        addrs[2] = c.data;
    if (st == SD_OK)
        st = sd_tensor_to_host_f32(&c, result, err);
    sd_tensor_free(&b);
    sd_tensor_free(&c);
    free(host);
    return st;
}

Test(arena, replays_at_fixed_addresses_inside_the_block_with_the_same_results)
{
    sd_backend *be = tu_cpu();
    sd_arena *a;
    sd_error err;
    cr_assert_eq(sd_arena_create(&a, be, &err), SD_OK);
    float want[1000], got[1000];
    void *first[3], *again[3];
    cr_assert_eq(run_pattern(be, 1000, want, NULL, &err), SD_OK, "%s", err.msg); /* no arena */
    for (int run = 0; run < 3; run++) {
        cr_assert_eq(sd_arena_enter(a, &err), SD_OK, "%s", err.msg);
        cr_assert_eq(run_pattern(be, 1000, got, run == 1 ? first : again, &err), SD_OK, "%s", err.msg);
        cr_assert_eq(sd_arena_leave(a, 1, &err), SD_OK, "%s", err.msg);
        cr_assert_eq(memcmp(got, want, sizeof want), 0, "run %d computed something else", run);
    }
    sd_arena_stats s;
    sd_arena_get_stats(a, &s);
    cr_assert_eq(s.runs, 3);
    cr_assert_eq(s.buffers, 3);
    /* a and b, then b and c, alive together: two 4000-byte buffers, aligned */
    cr_assert_eq(s.peak_live_bytes, 2 * up(4000));
    cr_assert_eq(s.arena_bytes, s.peak_live_bytes);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(first[i], again[i], "tensor %d moved between replays", i);
    /* a is freed before c is made: the plan lets c reuse a's place */
    cr_assert_eq(first[0], first[2]);
    cr_assert_neq(first[0], first[1]);
    sd_arena_free(a);
    sd_backend_free(be);
}

Test(arena, a_run_of_other_shapes_is_refused_naming_the_event)
{
    sd_backend *be = tu_cpu();
    sd_arena *a;
    sd_error err;
    float got[2000];
    cr_assert_eq(sd_arena_create(&a, be, &err), SD_OK);
    cr_assert_eq(sd_arena_enter(a, &err), SD_OK);
    cr_assert_eq(run_pattern(be, 1000, got, NULL, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_arena_leave(a, 1, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_arena_enter(a, &err), SD_OK);
    sd_status st = run_pattern(be, 2000, got, NULL, &err);
    cr_assert_neq(st, SD_OK);
    cr_assert(strstr(err.msg, "departs from its plan") && strstr(err.msg, "8000 bytes"), "%s", err.msg);
    cr_assert_eq(sd_arena_leave(a, 0, &err), SD_OK);
    /* the arena still serves runs that follow the plan */
    cr_assert_eq(sd_arena_enter(a, &err), SD_OK);
    cr_assert_eq(run_pattern(be, 1000, got, NULL, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_arena_leave(a, 1, &err), SD_OK, "%s", err.msg);
    sd_arena_free(a);
    sd_backend_free(be);
}

Test(arena, a_tensor_that_outlives_its_run_is_an_error_and_one_arena_at_a_time)
{
    sd_backend *be = tu_cpu();
    sd_arena *a, *b;
    sd_error err;
    cr_assert_eq(sd_arena_create(&a, be, &err), SD_OK);
    cr_assert_eq(sd_arena_create(&b, be, &err), SD_OK);
    cr_assert_eq(sd_arena_enter(a, &err), SD_OK);
    cr_assert_neq(sd_arena_enter(b, &err), SD_OK);
    cr_assert(strstr(err.msg, "already has an arena"), "%s", err.msg);
    sd_tensor t;
    int64_t shape[1] = {16};
    cr_assert_eq(sd_tensor_alloc(be, &t, 1, shape, &err), SD_OK);
    cr_assert_neq(sd_arena_leave(a, 1, &err), SD_OK);
    cr_assert(strstr(err.msg, "still alive"), "%s", err.msg);
    sd_tensor_free(&t); /* outside the run: back to the backend, no crash */
    /* the failed recording was forgotten: the next run records afresh */
    float got[16];
    cr_assert_eq(sd_arena_enter(a, &err), SD_OK);
    cr_assert_eq(run_pattern(be, 16, got, NULL, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_arena_leave(a, 1, &err), SD_OK, "%s", err.msg);
    sd_arena_stats s;
    sd_arena_get_stats(a, &s);
    cr_assert_eq(s.buffers, 3);
    sd_arena_free(a);
    sd_arena_free(b);
    sd_backend_free(be);
}
