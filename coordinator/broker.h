/* broker.h - the coordinator: a ZeroMQ ROUTER that workers and clients
 * connect to. Jobs and items live in the store (SQLite); workers are kept in
 * memory with their credit (capacity minus tasks in flight) and the time they
 * were last heard from. A worker silent for 3 heartbeat intervals, or whose
 * task made no progress for as long, is dead: its items go back to waiting
 * without an attempt charged (only a worker's FAIL charges one). */
#ifndef SDXL_COORDINATOR_BROKER_H
#define SDXL_COORDINATOR_BROKER_H

#include "common/error.h"

typedef struct {
    const char *bind;      /* tcp://127.0.0.1:5555 */
    const char *state_dir;
    int heartbeat_ms;      /* 1000 */
    int progress_timeout_ms; /* a task with no progress report for this long is dead (120000) */
    int max_attempts;      /* 3: failures of the item's own (a worker's FAIL) */
    int max_losses;        /* 10: work lost through no fault of the item (dead, stalled, restarted workers) */
    int hold_grace_ms;     /* a held UNet result waits this long for its gone holder to come back (300000) */
    /* a job's items done with the text or unet stage and not yet done with
     * the next are at most this many plus the next stage's capacity; past
     * that the stage waits (256): what text workers hold in memory and unet
     * workers spool stays bounded when the next stage is slow or down */
    int max_ahead;
    const char *http;      /* HOST:PORT for /healthz and /readyz (proto/http_probe.h), or NULL */
    int live_timeout_s;    /* /healthz fails when the loop has not turned for this long (60) */
    const char *curve_secret_file; /* server secret key (z85), enables CURVE */
    const char *allow_file;        /* allowed client/worker public keys, one z85 per line */
    volatile int *stop;
} sd_broker_opts;

sd_status sd_broker_run(const sd_broker_opts *o, sd_error *err);

#endif
