/* test_batching.c - the coordinator's batching and credit rules
 * (coordinator/batching.h), on candidates built by hand. */
#include <criterion/criterion.h>

#include "coordinator/batching.h"

static json_t *params(int w, int h, int steps, const char *sched)
{
    return sched ? json_pack("{s:i, s:i, s:i, s:s}", "width", w, "height", h, "steps", steps, "scheduler", sched)
                 : json_pack("{s:i, s:i, s:i}", "width", w, "height", h, "steps", steps);
}

Test(batching, credit_is_capacity_minus_in_flight_within_one_batch)
{
    cr_assert_eq(batching_credit(4, 0), 4);
    cr_assert_eq(batching_credit(4, 3), 1);
    cr_assert_eq(batching_credit(4, 4), 0);
    cr_assert_eq(batching_credit(2, 5), 0);
    cr_assert_eq(batching_credit(100, 0), BATCHING_MAX_BATCH);
}

Test(batching, a_batch_holds_compatible_items_of_one_job_in_order)
{
    json_t *a = params(64, 64, 4, NULL), *b = params(64, 64, 8, NULL), *c = params(64, 64, 4, "ddim");
    batching_candidate cand[] = {
        {"job-1", a, NULL, 1}, /* in flight: skipped */
        {"job-1", a, NULL, 0}, /* first pick */
        {"job-1", b, NULL, 0}, /* other steps */
        {"job-1", c, NULL, 0}, /* other scheduler */
        {"job-2", a, NULL, 0}, /* other job */
        {"job-1", a, NULL, 0}, /* second pick */
        {"job-1", a, NULL, 0}, /* third: beyond credit 2 */
    };
    int picked[BATCHING_MAX_BATCH];
    int n = batching_pick(cand, 7, "sdxl-m", 2, picked);
    cr_assert_eq(n, 2);
    cr_assert_eq(picked[0], 1);
    cr_assert_eq(picked[1], 5);
    cr_assert_eq(batching_pick(cand, 7, "sdxl-m", 0, picked), 0);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

Test(batching, a_job_goes_only_to_workers_of_its_model)
{
    json_t *a = params(64, 64, 4, NULL);
    batching_candidate cand[] = {
        {"job-1", a, "sdxl-other", 0},
        {"job-2", a, "sdxl-mine", 0},
        {"job-2", a, "sdxl-mine", 0},
        {"job-3", a, NULL, 0},
    };
    int picked[BATCHING_MAX_BATCH];
    cr_assert_eq(batching_pick(cand, 4, "sdxl-mine", 8, picked), 2);
    cr_assert_eq(picked[0], 1);
    cr_assert_eq(picked[1], 2);
    /* a worker of a third model gets the unpinned job */
    cr_assert_eq(batching_pick(cand, 4, "sdxl-new", 8, picked), 1);
    cr_assert_eq(picked[0], 3);
    json_decref(a);
}

Test(batching, the_key_names_size_steps_and_scheduler)
{
    char k1[128], k2[128];
    json_t *a = params(64, 32, 4, "euler"), *b = params(32, 64, 4, "euler");
    batching_key(a, k1, sizeof k1);
    batching_key(b, k2, sizeof k2);
    cr_assert_str_eq(k1, "64/32/4/euler");
    cr_assert_str_neq(k1, k2);
    json_decref(a);
    json_decref(b);
}
