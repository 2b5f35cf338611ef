/* test_store.c - the coordinator's job store (coordinator/store.h) on a
 * real SQLite file in a temp folder: item state transitions, attempts,
 * cancel, and what a reopened store (a restarted coordinator) still knows. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/store.h"
#include "tests/test_util.h"

static json_t *spec_of(int n)
{
    json_t *items = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(items, json_pack("{s:s, s:i, s:i}", "prompt", "p", "seed", i, "steps", 4));
    return json_pack("{s:o, s:s}", "items", items, "out", "/tmp/x");
}

/* A whole job at once, as SUBMIT, SUBMIT_ITEMS and SUBMIT_END store it:
 * the spec without its items, then the items, then the end. */
static sd_status create_job(sd_store *s, const char *id, json_t *spec, int *existed, sd_error *err)
{
    json_t *items = json_object_get(spec, "items"), *head = json_deep_copy(spec);
    json_object_del(head, "items");
    json_object_set_new(head, "total", json_integer((json_int_t)json_array_size(items)));
    long long received = 0;
    int again;
    sd_status st = store_job_begin(s, id, head, existed, &received, err);
    if (st == SD_OK)
        st = store_job_add_items(s, id, 0, items, NULL, NULL, &received, err);
    if (st == SD_OK)
        st = store_job_end_submit(s, id, &again, err);
    json_decref(head);
    return st;
}

static sd_store *open_store(const char *dir)
{
    sd_store *s = NULL;
    sd_error err = {0};
    cr_assert_eq(store_open(&s, dir, &err), SD_OK, "%s", err.msg);
    return s;
}

static long long count(sd_store *s, const char *job, const char *key)
{
    json_t *st = store_job_status(s, job);
    cr_assert_not_null(st, "no status for %s", job);
    long long v = json_integer_value(json_object_get(st, key));
    json_decref(st);
    return v;
}

Test(store, items_move_through_the_stages_and_survive_a_restart)
{
    char *dir = tu_tmpdir();
    sd_store *s = open_store(dir);
    sd_error err = {0};
    int existed = -1;
    json_t *spec = spec_of(3);
    cr_assert_eq(create_job(s, "job-a", spec, &existed, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(existed, 0);
    cr_assert_eq(create_job(s, "job-a", spec, &existed, &err), SD_OK);
    cr_assert_eq(existed, 1, "the same id again is the same job");
    cr_assert_eq(count(s, "job-a", "total"), 3);
    cr_assert_eq(count(s, "job-a", "pending"), 3);

    store_item_ref refs[8];
    int n = store_items_waiting(s, STORE_ITEM_STATE_PENDING, refs, 8, 8, 8, NULL, NULL, NULL);
    cr_assert_eq(n, 3);
    cr_assert_eq(refs[0].idx, 0);
    cr_assert_eq(json_integer_value(json_object_get(refs[2].params, "seed")), 2);
    store_item_refs_free(refs, n);
    /* per job: a second job's items come in too, not hidden behind the first's */
    json_t *spec_b = spec_of(2);
    cr_assert_eq(create_job(s, "job-b", spec_b, &existed, &err), SD_OK, "%s", err.msg);
    n = store_items_waiting(s, STORE_ITEM_STATE_PENDING, refs, 8, 1, 1, NULL, NULL, NULL);
    cr_assert_eq(n, 2, "one of each job");
    cr_assert(strcmp(refs[0].job, refs[1].job) != 0);
    store_item_refs_free(refs, n);
    json_decref(spec_b);

    const char blob[] = "embeddings";
    json_t *info = json_pack("{s:s}", "text_worker", "t0");
    cr_assert_eq(store_item_advance(s, "job-a", 1, STORE_ITEM_STATE_PENDING, STORE_ITEM_STATE_ENCODED, blob,
                                    sizeof blob, info, &err),
                 SD_OK, "%s", err.msg);
    /* a stale result (the item is no longer in that state) does not advance it twice */
    cr_assert_neq(store_item_advance(s, "job-a", 1, STORE_ITEM_STATE_PENDING, STORE_ITEM_STATE_ENCODED, blob,
                                     sizeof blob, info, &err),
                  SD_OK);
    json_decref(info);
    cr_assert_eq(store_item_state_of(s, "job-a", 1), STORE_ITEM_STATE_ENCODED);
    cr_assert_eq(store_item_state_of(s, "job-a", 7), -1);
    store_close(s);

    s = open_store(dir); /* a restarted coordinator */
    cr_assert_eq(store_item_state_of(s, "job-a", 1), STORE_ITEM_STATE_ENCODED);
    void *got = NULL;
    size_t len = 0;
    cr_assert_eq(store_item_blob(s, "job-a", 1, &got, &len, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(len, sizeof blob);
    cr_assert_eq(memcmp(got, blob, len), 0);
    free(got);
    json_t *kept = store_item_info(s, "job-a", 1);
    cr_assert_str_eq(json_string_value(json_object_get(kept, "text_worker")), "t0");
    json_decref(kept);
    cr_assert_eq(store_job_unfinished(s, "job-a"), 3);
    cr_assert_eq(store_item_mark_done(s, "job-a", 0, &err), SD_OK);
    cr_assert_eq(store_job_unfinished(s, "job-a"), 2);
    cr_assert_eq(store_items_unfinished(s, "job-a", 0, 1), 0);
    cr_assert_eq(store_items_unfinished(s, "job-a", 0, 3), 2);
    json_t *done = store_job_done_page(s, "job-a", -1, 10);
    cr_assert_eq(json_array_size(done), 1);
    json_decref(done);
    json_decref(spec);
    store_close(s);
    tu_rmrf(dir);
    free(dir);
}

Test(store, attempts_fail_an_item_for_good_at_the_limit)
{
    char *dir = tu_tmpdir();
    sd_store *s = open_store(dir);
    sd_error err = {0};
    int existed;
    json_t *spec = spec_of(1);
    cr_assert_eq(create_job(s, "job-b", spec, &existed, &err), SD_OK);
    for (int a = 1; a <= 2; a++) {
        cr_assert_eq(store_item_failed_attempt(s, "job-b", 0, "boom", 3, &err), SD_OK, "%s", err.msg);
        cr_assert_eq(store_item_state_of(s, "job-b", 0), STORE_ITEM_STATE_PENDING, "attempt %d", a);
    }
    cr_assert_eq(store_item_failed_attempt(s, "job-b", 0, "boom", 3, &err), SD_OK);
    cr_assert_eq(store_item_state_of(s, "job-b", 0), STORE_ITEM_STATE_FAILED);
    cr_assert_eq(count(s, "job-b", "failed"), 1);
    cr_assert_eq(store_job_unfinished(s, "job-b"), 0);
    json_decref(spec);
    store_close(s);
    tu_rmrf(dir);
    free(dir);
}

Test(store, cancel_stops_waiting_items_and_keeps_done_ones)
{
    char *dir = tu_tmpdir();
    sd_store *s = open_store(dir);
    sd_error err = {0};
    int existed;
    json_t *spec = spec_of(2);
    cr_assert_eq(create_job(s, "job-c", spec, &existed, &err), SD_OK);
    cr_assert_eq(store_item_mark_done(s, "job-c", 0, &err), SD_OK);
    cr_assert_eq(store_job_cancel(s, "job-c", &err), SD_OK, "%s", err.msg);
    int moved = -1;
    cr_assert_eq(store_cancel_some(s, 1000, &moved, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(moved, 1, "the one waiting item");
    cr_assert_eq(store_cancel_some(s, 1000, &moved, &err), SD_OK);
    cr_assert_eq(moved, 0, "nothing left");
    cr_assert_eq(store_item_state_of(s, "job-c", 0), STORE_ITEM_STATE_DONE);
    cr_assert_eq(store_item_state_of(s, "job-c", 1), STORE_ITEM_STATE_CANCELLED);
    store_item_ref refs[4];
    cr_assert_eq(store_items_waiting(s, STORE_ITEM_STATE_PENDING, refs, 4, 4, 4, NULL, NULL, NULL), 0);
    json_t *st = store_job_status(s, "job-c");
    cr_assert_str_eq(json_string_value(json_object_get(st, "state")), store_job_state_name(STORE_JOB_STATE_CANCELLED));
    json_decref(st);
    char ids[4][40];
    cr_assert_eq(store_running_jobs(s, ids, 4), 0);
    json_decref(spec);
    store_close(s);
    tu_rmrf(dir);
    free(dir);
}

Test(store, a_job_keeps_the_model_it_is_pinned_to)
{
    char *dir = tu_tmpdir();
    sd_store *s = open_store(dir);
    sd_error err = {0};
    int existed;
    json_t *spec = spec_of(1);
    cr_assert_eq(create_job(s, "job-d", spec, &existed, &err), SD_OK);
    char buf[80];
    cr_assert_null(store_job_identity(s, "job-d", buf, sizeof buf));
    cr_assert_eq(store_job_set_identity(s, "job-d", "sdxl-abc", &err), SD_OK);
    store_close(s);
    s = open_store(dir);
    cr_assert_str_eq(store_job_identity(s, "job-d", buf, sizeof buf), "sdxl-abc");
    json_decref(spec);
    store_close(s);
    tu_rmrf(dir);
    free(dir);
}

Test(store, a_state_dir_that_is_a_file_is_refused_naming_it)
{
    char *dir = tu_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/afile", dir);
    tu_write(path, "x", 1);
    sd_store *s = NULL;
    sd_error err = {0};
    cr_assert_neq(store_open(&s, path, &err), SD_OK);
    cr_assert(strstr(err.msg, "afile"), "%s", err.msg);
    tu_rmrf(dir);
    free(dir);
}

Test(store, one_coordinator_per_state_dir)
{
    char *dir = tu_tmpdir();
    sd_store *a = open_store(dir), *b = NULL;
    sd_error err = {0};
    cr_assert_neq(store_open(&b, dir, &err), SD_OK, "a second store on one state dir was opened");
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    cr_assert(strstr(err.msg, pid) && strstr(err.msg, "coordinator.lock"), "%s", err.msg);
    store_close(a);
    cr_assert_eq(store_open(&b, dir, &err), SD_OK, "the lock goes with the store: %s", err.msg);
    store_close(b);
    tu_rmrf(dir);
    free(dir);
}

Test(store, lost_work_is_not_an_attempt_and_has_its_own_limit)
{
    char *dir = tu_tmpdir();
    sd_store *s = open_store(dir);
    sd_error err = {0};
    int existed;
    json_t *spec = spec_of(2);
    cr_assert_eq(create_job(s, "job-l", spec, &existed, &err), SD_OK);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(store_item_lost(s, "job-l", 0, "worker w dead", 5, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(store_item_state_of(s, "job-l", 0), STORE_ITEM_STATE_PENDING, "4 losses of 5 allowed");
    cr_assert_eq(store_item_failed_attempt(s, "job-l", 0, "boom", 3, &err), SD_OK);
    cr_assert_eq(store_item_state_of(s, "job-l", 0), STORE_ITEM_STATE_PENDING, "losses are no attempts");
    cr_assert_eq(store_item_lost(s, "job-l", 0, "worker w dead", 5, &err), SD_OK);
    cr_assert_eq(store_item_state_of(s, "job-l", 0), STORE_ITEM_STATE_FAILED, "the 5th loss fails it");
    json_t *st = store_job_status(s, "job-l");
    json_t *f = json_array_get(json_object_get(st, "failures"), 0);
    cr_assert(strstr(json_string_value(json_object_get(f, "error")), "lost 5 times"), "%s",
              json_string_value(json_object_get(f, "error")));
    json_decref(st);
    /* retry: failed (and cancelled) items back to waiting, counts cleared */
    int n = -1;
    cr_assert_eq(store_job_retry(s, "job-l", &n, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(store_item_state_of(s, "job-l", 0), STORE_ITEM_STATE_PENDING);
    for (int k = 0; k < 2; k++)
        cr_assert_eq(store_item_failed_attempt(s, "job-l", 0, "boom", 3, &err), SD_OK);
    cr_assert_eq(store_item_state_of(s, "job-l", 0), STORE_ITEM_STATE_PENDING, "attempts were cleared by retry");
    /* a done item whose output has gone is made again */
    cr_assert_eq(store_item_mark_done(s, "job-l", 1, &err), SD_OK);
    cr_assert_eq(store_item_reset(s, "job-l", 1, &err), SD_OK);
    cr_assert_eq(store_item_state_of(s, "job-l", 1), STORE_ITEM_STATE_PENDING);
    json_decref(spec);
    store_close(s);
    tu_rmrf(dir);
    free(dir);
}

Test(store, tasks_in_flight_survive_a_restart_and_ids_are_never_reused)
{
    char *dir = tu_tmpdir();
    sd_store *s = open_store(dir);
    sd_error err = {0};
    int idx[3] = {4, 5, 9};
    long long a, b, c;
    cr_assert_eq(store_task_add(s, "job-t", "unet", "u1", idx, 3, &a, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(store_task_add(s, "job-t", "final", "f1", idx, 1, &b, &err), SD_OK);
    cr_assert_gt(b, a);
    cr_assert_eq(store_task_remove(s, b, &err), SD_OK);
    store_close(s);
    s = open_store(dir);
    store_task t[4];
    cr_assert_eq(store_tasks_list(s, t, 4), 1);
    cr_assert_eq(t[0].id, a);
    cr_assert_str_eq(t[0].worker, "u1");
    cr_assert_str_eq(t[0].stage, "unet");
    cr_assert_eq(t[0].n, 3);
    cr_assert_eq(t[0].idx[2], 9);
    cr_assert_eq(store_task_add(s, "job-t", "text", "t1", idx, 1, &c, &err), SD_OK);
    cr_assert_gt(c, b, "the removed task's id %lld is not given again (%lld)", b, c);
    store_close(s);
    tu_rmrf(dir);
    free(dir);
}

static json_t *items_from(int first, int n)
{
    json_t *a = json_array();
    for (int i = first; i < first + n; i++)
        json_array_append_new(a, json_pack("{s:s, s:i}", "prompt", "p", "seed", i));
    return a;
}

/* the room the test sets, for every job */
static int room_of(void *user, const char *job)
{
    (void)job;
    return *(const int *)user;
}

static int even_in_flight(void *user, const char *job, int idx)
{
    (void)user;
    (void)job;
    return idx % 2 == 0;
}

Test(store, a_job_arrives_in_pieces_in_order_and_ends_only_when_whole)
{
    char *dir = tu_tmpdir();
    sd_store *s = open_store(dir);
    sd_error err = {0};
    int existed = -1, again = -1;
    long long received = -1;
    json_t *spec = json_pack("{s:s, s:i, s:{s:i}}", "out", "/tmp/x", "total", 10, "defaults", "steps", 7);
    cr_assert_eq(store_job_begin(s, "job-p", spec, &existed, &received, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(existed, 0);
    cr_assert_eq(received, 0);
    cr_assert_eq(store_job_unfinished(s, "job-p"), 10, "items still to arrive are unfinished");
    json_t *a = items_from(0, 4), *gap = items_from(6, 2), *over = items_from(7, 4), *overlap = items_from(2, 5);
    cr_assert_eq(store_job_add_items(s, "job-p", 0, a, NULL, NULL, &received, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(received, 4);
    cr_assert_neq(store_job_add_items(s, "job-p", 6, gap, NULL, NULL, &received, &err), SD_OK, "a gap is refused");
    cr_assert(strstr(err.msg, "only 4"), "%s", err.msg);
    cr_assert_eq(store_job_add_items(s, "job-p", 0, a, NULL, NULL, &received, &err), SD_OK, "a piece sent again");
    cr_assert_eq(received, 4);
    /* a resumed submit may resend what overlaps: only the new part is stored */
    cr_assert_eq(store_job_add_items(s, "job-p", 2, overlap, NULL, NULL, &received, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(received, 7);
    cr_assert_neq(store_job_add_items(s, "job-p", 7, over, NULL, NULL, &received, &err), SD_OK);
    cr_assert(strstr(err.msg, "has 10"), "past the total is refused: %s", err.msg);
    cr_assert_eq(count(s, "job-p", "pending"), 7, "each item stored once");
    cr_assert_eq(count(s, "job-p", "received"), 7);
    cr_assert_neq(store_job_end_submit(s, "job-p", &again, &err), SD_OK, "only 7 of 10 received");
    /* a restart keeps what arrived: the submission continues from there */
    store_close(s);
    s = open_store(dir);
    cr_assert_eq(store_job_begin(s, "job-p", spec, &existed, &received, &err), SD_OK);
    cr_assert_eq(existed, 1);
    cr_assert_eq(received, 7);
    cr_assert_eq(store_items_unfinished(s, "job-p", 6, 10), 4, "one stored and three still to arrive");
    json_t *rest = items_from(7, 3);
    cr_assert_eq(store_job_add_items(s, "job-p", 7, rest, NULL, NULL, &received, &err), SD_OK);
    cr_assert_eq(store_job_end_submit(s, "job-p", &again, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(again, 0);
    cr_assert_eq(store_job_end_submit(s, "job-p", &again, &err), SD_OK);
    cr_assert_eq(again, 1, "a second end is the job submitted again");
    /* a worker gets the job's defaults with the item's own keys */
    store_item_ref refs[16];
    int n = store_items_waiting(s, STORE_ITEM_STATE_PENDING, refs, 16, 16, 16, NULL, NULL, NULL);
    cr_assert_eq(n, 10);
    cr_assert_eq(json_integer_value(json_object_get(refs[9].params, "steps")), 7);
    cr_assert_eq(json_integer_value(json_object_get(refs[9].params, "seed")), 9);
    store_item_refs_free(refs, n);
    /* items in flight are passed over, the scan reading on past them */
    n = store_items_waiting(s, STORE_ITEM_STATE_PENDING, refs, 3, 3, 13, even_in_flight, NULL, NULL);
    cr_assert_eq(n, 3);
    cr_assert(refs[0].idx == 1 && refs[1].idx == 3 && refs[2].idx == 5, "got %d %d %d", refs[0].idx, refs[1].idx,
              refs[2].idx);
    store_item_refs_free(refs, n);
    /* a job's room caps what is read of it; none: not read at all */
    int room = 2;
    n = store_items_waiting(s, STORE_ITEM_STATE_PENDING, refs, 16, 16, 16, NULL, room_of, &room);
    cr_assert_eq(n, 2, "room for 2: %d taken", n);
    cr_assert(refs[0].idx == 0 && refs[1].idx == 1);
    store_item_refs_free(refs, n);
    room = 0;
    cr_assert_eq(store_items_waiting(s, STORE_ITEM_STATE_PENDING, refs, 16, 16, 16, NULL, room_of, &room), 0);
    json_decref(a);
    json_decref(gap);
    json_decref(over);
    json_decref(overlap);
    json_decref(rest);
    json_decref(spec);
    store_close(s);
    tu_rmrf(dir);
    free(dir);
}

static int even_exists(void *user, int idx)
{
    (void)user;
    return idx % 2 == 0;
}

/* the counts status reads are kept by triggers: after many transitions of
 * every kind they equal a recount of the items */
Test(store, kept_counts_equal_a_recount_after_every_kind_of_change)
{
    char *dir = tu_tmpdir();
    sd_store *s = open_store(dir);
    sd_error err = {0};
    int existed, again;
    long long received;
    json_t *spec = json_pack("{s:s, s:i}", "out", "/tmp/x", "total", 200);
    cr_assert_eq(store_job_begin(s, "job-k", spec, &existed, &received, &err), SD_OK);
    json_t *items = items_from(0, 200);
    cr_assert_eq(store_job_add_items(s, "job-k", 0, items, even_exists, NULL, &received, &err), SD_OK);
    cr_assert_eq(count(s, "job-k", "done"), 100, "items whose output exists arrive done");
    cr_assert_eq(store_job_end_submit(s, "job-k", &again, &err), SD_OK);
    unsigned seed = 12345;
    for (int k = 0; k < 2000; k++) {
        seed = seed * 1103515245u + 12345u;
        int idx = (int)((seed >> 8) % 200), op = (int)((seed >> 20) % 6);
        int st = store_item_state_of(s, "job-k", idx);
        if (op == 0 && st < 3)
            store_item_advance(s, "job-k", idx, st, st + 1, "x", 1, NULL, &err);
        else if (op == 1)
            store_item_failed_attempt(s, "job-k", idx, "boom", 2, &err);
        else if (op == 2)
            store_item_lost(s, "job-k", idx, "lost", 3, &err);
        else if (op == 3)
            store_item_reset(s, "job-k", idx, &err);
        else if (op == 4)
            store_item_mark_done(s, "job-k", idx, &err);
        else if (k % 500 == 5)
            store_job_retry(s, "job-k", &again, &err);
    }
    store_job_cancel(s, "job-k", &err);
    for (int moved = 1; moved;) /* in slices of 7: each slice's counts kept too */
        cr_assert_eq(store_cancel_some(s, 7, &moved, &err), SD_OK, "%s", err.msg);
    int recount[6] = {0};
    for (int i = 0; i < 200; i++)
        recount[store_item_state_of(s, "job-k", i)]++;
    const char *names[6] = {"pending", "encoded", "denoised", "done", "failed", "cancelled"};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(count(s, "job-k", names[i]), recount[i], "%s: kept %lld, recounted %d", names[i],
                     count(s, "job-k", names[i]), recount[i]);
    json_decref(items);
    json_decref(spec);
    store_close(s);
    tu_rmrf(dir);
    free(dir);
}
