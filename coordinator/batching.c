/* batching.c - see batching.h. */
#include "coordinator/batching.h"

#include <stdio.h>
#include <string.h>

int batching_credit(int capacity, int inflight)
{
    int c = capacity - inflight;
    return c < 0 ? 0 : c > BATCHING_MAX_BATCH ? BATCHING_MAX_BATCH : c;
}

void batching_key(const json_t *p, char *key, size_t len)
{
    const char *sched = json_string_value(json_object_get(p, "scheduler"));
    snprintf(key, len, "%lld/%lld/%lld/%s", (long long)json_integer_value(json_object_get(p, "width")),
             (long long)json_integer_value(json_object_get(p, "height")),
             (long long)json_integer_value(json_object_get(p, "steps")), sched ? sched : "");
}

int batching_pick(const batching_candidate *c, int n, const char *identity, int credit,
                  int picked[BATCHING_MAX_BATCH])
{
    int np = 0;
    char key0[128] = "";
    const char *job0 = NULL;
    if (credit > BATCHING_MAX_BATCH)
        credit = BATCHING_MAX_BATCH;
    for (int i = 0; i < n && np < credit; i++) {
        if (c[i].in_flight)
            continue;
        if (c[i].job_identity && strcmp(c[i].job_identity, identity))
            continue; /* a job is only ever given to workers of its model */
        char key[128];
        batching_key(c[i].params, key, sizeof key);
        if (np == 0) {
            snprintf(key0, sizeof key0, "%s", key);
            job0 = c[i].job;
        } else if (strcmp(key, key0) || strcmp(c[i].job, job0)) {
            continue; /* batches hold compatible items of one job */
        }
        picked[np++] = i;
    }
    return np;
}
