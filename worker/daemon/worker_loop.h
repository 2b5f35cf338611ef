/* worker_loop.h - a cluster worker: registers its role, capacity, devices and
 * model identity with the coordinator, then runs the stage functions of
 * pipeline.h on the tasks it is given, with application heartbeats between
 * denoising steps (liveness comes from the compute loop, not the socket). */
#ifndef SDXL_WORKER_WORKER_LOOP_H
#define SDXL_WORKER_WORKER_LOOP_H

#include "common/model_spec.h"
#include "common/dtype.h"
#include "common/error.h"

typedef struct {
    const char *coordinator, *role, *device, *worker_id;
    sd_model_spec spec; /* --model, --config, --refiner, --refiner-config, --vae, --lora, --variant */
    int capacity, heartbeat_ms;
    int model_cache; /* models held at most, its own included (--model-cache) */
    int hold; /* a text or unet worker: outputs held in memory for their consumers at most (data_plane.h) */
    const char *spool; /* a unet worker's spool folder (NULL: /var/tmp/sdxl-spool-UID/ID) */
    int spool_is_own;  /* the id was made for this process: its spool is removed at exit */
    const char *http;  /* HOST:PORT for /healthz and /readyz (proto/http_probe.h), or NULL */
    int live_timeout_s; /* /healthz fails when neither its loop nor its compute loop turned for this long */
    sd_dtype dtype; /* SD_DTYPE_COUNT: the device's default (engine/pipeline/stage_backends.h) */
    /* fault hooks for the cluster tests, at this denoising step (-1 off):
     * die (SIGKILL itself), stall (alive but no progress: hang without task
     * heartbeats), freeze (SIGSTOP itself once, as `kill -STOP` would, so a
     * test freezes the worker exactly while it holds a task) */
    int die_at_step, stall_at_step, freeze_at_step;
    int fail_items; /* fault hook: every item fails with a reason of its own (a FAIL, charged an attempt) */
    const char *curve_server_key, *curve_secret, *curve_public; /* files, Z85 */
    /* CFG split over a pair of unet workers (cfg_pair.h): the pair's
     * endpoint (NULL: both halves here as one batch), this side's rank (0
     * leads and serves the coordinator, 1 follows the leader), and how long
     * to wait for the peer */
    const char *cfg_peer;
    int cfg_rank, cfg_timeout_ms;
    volatile int *stop;
} sd_worker_opts;

sd_status sd_worker_run(const sd_worker_opts *o, sd_error *err);

#endif
