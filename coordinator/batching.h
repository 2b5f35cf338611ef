/* batching.h - which waiting items a worker gets, as pure functions (no
 * socket, no store) so the rules are tested on their own:
 *   - credit: a worker holds at most `capacity` tasks' worth of items; it is
 *     given up to capacity - in flight items, and never more than a batch;
 *   - a job goes only to workers of its model (a job without a model yet
 *     takes the model of its first worker);
 *   - a batch holds items of one job with equal size, steps and scheduler
 *     (batching_key), taken in the order offered (oldest job first);
 *   - an item already in a task in flight is never offered twice. */
#ifndef SDXL_COORDINATOR_BATCHING_H
#define SDXL_COORDINATOR_BATCHING_H

#include <jansson.h>
#include <stddef.h>

#define BATCHING_MAX_BATCH 16

/* Items a worker may be given now: capacity minus in flight, at most a batch. */
int batching_credit(int capacity, int inflight);

/* The key of items that may share a batch: "width/height/steps/scheduler". */
void batching_key(const json_t *params, char *key, size_t len);

typedef struct {
    const char *job;          /* the item's job id */
    const json_t *params;     /* its generation parameters */
    const char *job_identity; /* the model its job is pinned to, or NULL */
    int in_flight;            /* 1: already in a task */
} batching_candidate;

/* Picks up to credit candidates for a worker of model `identity` into
 * picked[] (indices into c), following the rules above; returns how many. */
int batching_pick(const batching_candidate *c, int n, const char *identity, int credit,
                  int picked[BATCHING_MAX_BATCH]);

#endif
