/* worker_internal.h - what the worker's files share: its state, its log,
 * and how a task's inputs and outputs travel (worker_outputs.c: fetched
 * from and held for the other workers, images written into the job's
 * folder, the metrics). worker_loop.c runs the loop and the tasks. */
#ifndef SDXL_WORKER_DAEMON_WORKER_INTERNAL_H
#define SDXL_WORKER_DAEMON_WORKER_INTERNAL_H

#include <limits.h>

#include "proto/http_probe.h"
#include "proto/message.h"
#include "proto/metrics.h"
#include "worker/daemon/cfg_pair.h"
#include "worker/daemon/data_plane.h"
#include "worker/daemon/direct_out.h"
#include "worker/daemon/worker_loop.h"
#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/pipeline/stage_backends.h"

/* items of one task whose inputs are fetched from their producer */
#define MAX_FETCH 16
/* models held at most: the worker's own and the variants items asked for */
#define WORKER_MODEL_CACHE_MAX 8

typedef struct {
    const sd_worker_opts *o;
    void *sock;
    sd_pipeline p;          /* the model the current item runs with */
    char cur_key[4096];     /* its sd_model_spec_key ("" none loaded) */
    struct {                /* the others held (worker_models.c) */
        sd_pipeline p;
        char key[4096];
        double used;
    } spare[WORKER_MODEL_CACHE_MAX];
    int nspare;
    int stages; /* the SD_STAGE_* bits it loads */
    sd_stage_backends sb;
    sd_backend *be; /* sb.be */
    char identity[96];
    double last_sent, last_heard;
    long long task_id;
    sd_cfg_pair *pair; /* a CFG split's link to the other half, or NULL */
    char session[40];  /* this process's random id: a REGISTER repeated by it drops nothing */
    double last_register;
    /* the last RESULT or FAIL, kept until the coordinator confirms it: one
     * that restarted meanwhile gets it again once this worker is registered */
    sd_msg outbox;
    long long outbox_task; /* 0: empty */
    void *mon;             /* CURVE handshake events of sock, or NULL */
    double refused_since;  /* the coordinator refused our key since then (0: not refused) */
    int handshake_failing; /* handshakes fail without a verdict on the key (said once per streak) */
    int registered;        /* the coordinator has answered a REGISTER */
    void *ctx;
    sd_data_server *data;  /* a text or unet worker's held outputs (data_plane.h), or NULL */
    char spool[PATH_MAX];  /* a unet worker's spool folder ("" none) */
    int spool_failing;     /* its last write failed: said once, and again when it works */
    char data_ep[128];     /* where it serves them */
    int froze;         /* the freeze fault hook has fired (it fires once) */
    sd_direct_out direct; /* a final worker: may it write the job's images (write_outputs) */
    sd_data_fetcher *fetcher; /* a unet or final worker's connections to the holders of its inputs */
    sd_http_probe *probe;     /* --http: /healthz, /readyz and /metrics, or NULL */
    struct {                  /* what /metrics reports (render_metrics) */
        double load_s, busy_s, rendered;
        unsigned long long items, tasks_failed, steps, fetched;
        sd_hist item_s;
    } m;
} worker;

void wlog(const worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The inputs a task's items name a source for, fetched from their holders
 * and attached to a copy of the task (*full, when one was needed; blobs[]
 * the fetched data it borrows); items whose input is gone listed in *lost
 * (a new array, or NULL). */
sd_status worker_fetch_inputs(worker *w, const sd_msg *task, sd_msg *full, int *have_full, void **blobs,
                              json_t **lost, sd_error *err);
void worker_free_fetched(sd_msg *full, int have_full, void **blobs);
/* A text or unet worker keeps what it made; res becomes a RESULT without tensors. */
sd_status worker_hold_outputs(worker *w, const sd_msg *task, sd_msg *res, json_t *out_items, sd_error *err);
/* A unet worker's spool folder (--spool, else /var/tmp/sdxl-spool-UID/ID), per model identity. */
sd_status worker_spool_folder(worker *w, char *out, size_t len, sd_error *err);
/* A final worker's images written into the job's folder when it is the
 * coordinator's too: 1 when res became lean. */
int worker_write_outputs(worker *w, const sd_msg *task, sd_msg *res, json_t *out_items);
/* Makes w->p the model an item runs with: the worker's own, or a variant
 * with the item's LoRAs or VAE (held up to --model-cache). */
sd_status worker_select_model(worker *w, const sd_gen_params *g, sd_error *err);
void worker_free_models(worker *w);
/* The worker's /metrics, at most once a second. */
void worker_render_metrics(worker *w);

#endif
