/* broker_internal.h - the coordinator's state in memory and the functions
 * its parts share. The broker is split by responsibility:
 *   broker.c          the loop: socket, receive, route, periodic work
 *   broker_workers.c  registration, heartbeats, liveness, requeue
 *   broker_dispatch.c what each worker gets next (batching.c decides)
 *   broker_results.c  results and failures, outputs (and their pauses), the end of jobs
 *   broker_clients.c  submit, status, cancel, results, workers
 * All run on the broker's one thread. */
#ifndef SDXL_COORDINATOR_BROKER_INTERNAL_H
#define SDXL_COORDINATOR_BROKER_INTERNAL_H

#include <limits.h>
#include <stddef.h>

#include "coordinator/batching.h"
#include "coordinator/broker.h"
#include "coordinator/outputs.h"
#include "coordinator/store.h"
#include "proto/message.h"
#include "proto/metrics.h"

/* fleet-sized: a thousand GPUs and more (sdxl bench --simulate); loops run
 * up to the highest slot used (workers_hw, tasks_hw), not to these */
#define MAX_WORKERS 4096
#define MAX_TASKS 8192
#define MAX_BATCH BATCHING_MAX_BATCH

typedef struct {
    int used;
    unsigned char route[256];
    size_t route_len;
    char id[64], role[8], identity[80];
    char key[41];     /* its CURVE public key ("" without CURVE): its messages must come under it */
    char data[128];   /* where it serves the outputs it holds (worker/daemon/data_plane.h), or "" */
    char session[40]; /* the worker process's random id: a REGISTER with the same one is the same process */
    char devices[64]; /* what it computes on, as it registered ("cpu", "cuda:0 (NVIDIA H200)") */
    int capacity, inflight;
    int hold; /* outputs it keeps in memory (--hold; 0: not said) */
    double last_seen, registered, busy_s;
    unsigned long long done;
    json_t *release; /* keys of held outputs it may forget (their images are written), sent each turn; or NULL */
} worker_t;

/* Workers that went away (dead, or replaced by a new process), newest
 * first: how long a held output's holder has been gone. A holder in neither
 * list has been gone at least since the coordinator started. */
#define MAX_GONE 256
typedef struct {
    char id[64];
    double since;
} gone_worker;

typedef struct {
    int used;
    long long id; /* the store's task id: unique across restarts */
    int worker;   /* index into workers, -1 for an orphan: a task of a coordinator before a restart whose
                   * worker has not registered again yet */
    char worker_id[64];
    char stage[8];
    char job[40];
    int n, idx[MAX_BATCH];
    double sent, last_progress;
    double worker_seen; /* an orphan: when its worker was last heard from (by id) */
} task_t;

/* A job whose outputs cannot be written (a full disk, a folder gone): its
 * final stage waits until `until` and tries again; status says why. */
#define MAX_PAUSED 16
typedef struct {
    char job[40]; /* "" while unused */
    double until;
    char reason[256];
} paused_job;

/* A job's output settings, parsed once: its spec lists every item, far too
 * much to parse again for each finished image. Specs never change (a job id
 * is the hash of its spec), so entries are only ever replaced, oldest first.
 * Only the small settings are kept, never the spec's item list. */
#define OUTPUT_CACHE 16
typedef struct {
    char job[40]; /* "" while unused */
    char dir[PATH_MAX]; /* what o.dir points to: the spec itself is not kept */
    sd_outputs o;
    /* the marker a final worker checks before writing into dir itself
     * (common/output_item.h): 1 written with token, -1 could not be, 0 not yet */
    int marked;
    char token[33];
} job_outputs;

typedef struct {
    const sd_broker_opts *o;
    void *sock;
    job_outputs outs[OUTPUT_CACHE];
    int next_out;
    sd_store *store;
    worker_t workers[MAX_WORKERS];
    task_t tasks[MAX_TASKS];
    int workers_hw, tasks_hw; /* one past the highest slot ever used */
    int cancelling;           /* cancelled jobs may still have waiting items (broker_cancel_items) */
    paused_job paused[MAX_PAUSED];
    unsigned long long malformed;
    double last_hb;
    double started;
    gone_worker gone[MAX_GONE];
    int next_gone;
    /* messages of the turn in progress, sent once its writes are committed
     * (broker_send): a reply never acknowledges what a crash could undo */
    struct queued_msg *queue;
    int nqueue, queue_cap, turn_open;
    /* what /metrics reports beyond the store's counts (broker_metrics.c) */
    struct {
        unsigned long long done, requeued_lost, requeued_failed, inputs_lost;
        unsigned long long bytes_in, bytes_out; /* tensor bytes received and sent */
        unsigned long long refused_key, refused_unknown, expired; /* refusals beyond malformed messages */
        sd_hist stage[3]; /* compute seconds per item, as the workers report: text, unet, final */
        sd_hist wait[2];  /* seconds an item waited for a unet, a final worker */
        double commit_s;  /* in the turns' commits */
        unsigned long long turns;
        double rendered;
        /* the status page (broker_page.c): the latest images, and rates */
        struct {
            char job[40];
            int idx;
        } recent[8];
        int nrecent;
        double page_t, rate, stage_rate[3];
        unsigned long long page_done, page_stage_done[3];
    } m;
} broker;

/* One job of the broker: what callbacks over a job's items get. */
typedef struct {
    broker *b;
    const char *job;
} broker_job;
/* The job's done items, a page at a time (outputs_done_page, user a broker_job). */
json_t *broker_done_page(void *user, int after, int limit);

void broker_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Seconds since the epoch: for times kept in the store across restarts
 * (the monotonic clock restarts with the process). */
double broker_wall_s(void);
void broker_reply(broker *b, const unsigned char *route, size_t rl, const char *type, json_t *fields);
/* Sends m on the broker's socket: at the end of the turn, after its commit
 * (store_turn_commit), when a turn is open; at once otherwise. */
sd_status broker_send(broker *b, const unsigned char *route, size_t rl, const sd_msg *m, sd_error *err);
void broker_reply_error(broker *b, const unsigned char *route, size_t rl, const char *reason);
/* the item state a stage (= a worker role) takes its work from */
store_item_state broker_input_state(const char *stage);
/* The capacity of the workers registered in a role: what a stage can hold
 * in flight at once (the --max-ahead room is counted over it). */
long long broker_stage_capacity(broker *b, const char *role);
/* Items of a task go back to waiting. charge: the failure was the item's own
 * (a worker's FAIL): an attempt counts against it; else the work was lost
 * (a dead, stalled or restarted worker) and only the loss rule applies. */
void broker_requeue_task(broker *b, task_t *t, const char *reason, int charge);
/* The task in flight with this id, or NULL. */
task_t *broker_find_task(broker *b, long long id);
/* Forgets a task (its result came, or it was requeued or cancelled). */
void broker_task_done(broker *b, task_t *t);
/* Loads the tasks a coordinator before a restart had in flight, as orphans. */
void broker_load_tasks(broker *b);
/* Pausing a job's outputs (see paused_job); NULL when not paused. */
void broker_pause_job(broker *b, const char *job, const char *reason);
const char *broker_job_paused(broker *b, const char *job);
void broker_handle_worker(broker *b, const sd_msg *m, const unsigned char *route, size_t rl);
void broker_handle_client(broker *b, const sd_msg *m, const unsigned char *route, size_t rl);
void broker_handle_result(broker *b, worker_t *w, const sd_msg *m, const unsigned char *route, size_t rl);
/* Hands waiting work to every worker with credit: each stage's waiting
 * items are read once per round, not once per worker. */
void broker_dispatch(broker *b);
/* A free task slot (counted in tasks_hw), or NULL when all are in flight. */
task_t *broker_task_slot(broker *b);
void broker_liveness(broker *b);
/* The registered worker with this id, or NULL. */
worker_t *broker_worker(broker *b, const char *id);
/* A held output's holder: its data endpoint and key written into source
 * (as it registered last: a restarted holder has a new port) and 1; or 0
 * when it is not registered, *gone_s: for how long. */
int broker_resolve_source(broker *b, json_t *source, double *gone_s);
/* The holder of an item's output (info's source) may forget it. */
void broker_release_source(broker *b, const char *job, int idx, const json_t *info);
/* Sends each worker the releases gathered for it. */
void broker_send_releases(broker *b);
/* An item's result info into the stage histograms (its <stage>_seconds and waits). */
void broker_metrics_observe(broker *b, const json_t *info);
/* Per stage (text, unet, final): items in flight, registered workers, busy
 * ones (a task in flight) and the items its workers finished: what the
 * metrics and the status page both show. */
typedef struct {
    long long flight[3], workers[3], busy[3];
    unsigned long long done[3];
} broker_stage_counts;
void broker_count_stages(const broker *b, broker_stage_counts *c);
/* The /metrics text, rendered at most once a second (probe: NULL when off). */
struct sd_http_probe;
void broker_metrics(broker *b, struct sd_http_probe *probe);
/* The status page at / (jobs, stages, workers, the latest images), rendered
 * with the metrics. */
void broker_status_page(broker *b, struct sd_http_probe *probe);
void broker_finish_job_outputs(broker *b, const char *job);
/* A job's output settings (cached), or NULL when the job has no spec. */
job_outputs *broker_outputs(broker *b, const char *job);
/* The "out" a final task carries when its workers may write the job's files
 * themselves (the marker written first), or NULL. */
json_t *broker_direct_out(broker *b, const char *job);
void broker_finish_jobs(broker *b);
/* Moves waiting items of cancelled jobs to cancelled for at most budget_s
 * seconds (store_cancel_some), a slice at a time. */
void broker_cancel_items(broker *b, double budget_s);

#endif
