/* worker_loop.h - a cluster worker: registers its role, capacity, devices and
 * model identity with the coordinator, then runs the stage functions of
 * pipeline.h on the tasks it is given, with application heartbeats between
 * denoising steps (liveness comes from the compute loop, not the socket). */
#ifndef SDXL_WORKER_WORKER_LOOP_H
#define SDXL_WORKER_WORKER_LOOP_H

#include "common/error.h"

typedef struct {
    const char *coordinator, *role, *model, *refiner, *device, *variant, *worker_id;
    int capacity, heartbeat_ms;
    int dtype_bf16;
    /* fault hooks for the cluster tests: die (SIGKILL itself) or stall (stop
     * heartbeating and hang) when reaching this denoising step; -1 off */
    int die_at_step, stall_at_step;
    const char *curve_server_key, *curve_secret, *curve_public; /* files, Z85 */
    volatile int *stop;
} sd_worker_opts;

sd_status sd_worker_run(const sd_worker_opts *o, sd_error *err);

#endif
