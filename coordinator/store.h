/* store.h - the coordinator's durable state: jobs and items in SQLite (WAL)
 * under --state DIR. Everything a restarted coordinator needs to resume is
 * here: each item's stage and the intermediate tensors of the last stage
 * done, kept until the next stage's result is stored. Tasks in flight are
 * not: after a restart they are simply dispatched again. */
#ifndef SDXL_COORDINATOR_STORE_H
#define SDXL_COORDINATOR_STORE_H

#include <jansson.h>
#include <stddef.h>

#include "common/error.h"

typedef enum {
    STORE_ITEM_STATE_PENDING = 0, /* waiting for the text stage */
    STORE_ITEM_STATE_ENCODED = 1, /* text done: waiting for the unet stage */
    STORE_ITEM_STATE_DENOISED = 2, /* latents done: waiting for the final stage */
    STORE_ITEM_STATE_DONE = 3,
    STORE_ITEM_STATE_FAILED = 4,
    STORE_ITEM_STATE_CANCELLED = 5,
} store_item_state;

/* A job's state, kept as its name ("running", "done", "cancelled") in the
 * jobs table and in status replies. */
typedef enum { STORE_JOB_STATE_RUNNING, STORE_JOB_STATE_DONE, STORE_JOB_STATE_CANCELLED } store_job_state;
const char *store_job_state_name(store_job_state st);

typedef struct sd_store sd_store;

sd_status store_open(sd_store **out, const char *dir, sd_error *err);
/* Rows this store has inserted, changed or deleted since it was opened
 * (triggers' rows included): the database's work, for `sdxl bench`. */
long long store_row_writes(sd_store *s);
void store_close(sd_store *s);

/* A job arrives in pieces (common/job_spec.h). store_job_begin creates it
 * from its spec, with no items yet, unless it exists; *existed tells, and
 * *received how many of its items are stored (a submission interrupted and
 * run again continues from there). */
sd_status store_job_begin(sd_store *s, const char *job_id, json_t *spec, int *existed, long long *received,
                          sd_error *err);
/* Stores the items first, first+1, ... (each its own keys) in one
 * transaction: a piece may repeat stored items, never leave a gap or go past
 * the total. exists(user, idx), when given, says the item's output is
 * already in the folder: it is stored done. Items of a cancelled job arrive
 * cancelled. *received: how many are stored after. */
sd_status store_job_add_items(sd_store *s, const char *job_id, long long first, json_t *items,
                              int (*exists)(void *, int), void *user, long long *received, sd_error *err);
/* Closes the submission (every item received, else an error); *again is 1
 * when it had been closed before: the same job submitted again. */
sd_status store_job_end_submit(sd_store *s, const char *job_id, int *again, sd_error *err);
/* JSON: {id, state, total, received, pending, encoded, denoised, done, failed, cancelled, failures, ...}, read
 * from counts kept with every change (no recount, whatever the job's size) */
json_t *store_job_status(sd_store *s, const char *job_id);
/* How many of a job's items are in state, from the same counts. */
long long store_job_count(sd_store *s, const char *job_id, store_item_state state);
json_t *store_jobs_list(sd_store *s);
/* spec of a job (new reference) or NULL */
json_t *store_job_spec(sd_store *s, const char *job_id);
sd_status store_job_set_identity(sd_store *s, const char *job_id, const char *identity, sd_error *err);
const char *store_job_identity(sd_store *s, const char *job_id, char *buf, size_t len);
/* Cancels what has not ended (a job already done stays done): the job at
 * once (nothing more of it is dispatched), its items by store_cancel_some. */
sd_status store_job_cancel(sd_store *s, const char *job_id, sd_error *err);
/* Moves up to max waiting items of cancelled jobs to cancelled, one
 * transaction each job; *moved says how many (0: none left). The broker runs
 * it between messages, so cancelling 10^7 items never stops the coordinator
 * for long; status shows the job cancelled while it goes on. */
sd_status store_cancel_some(sd_store *s, int max, int *moved, sd_error *err);
/* Failed and cancelled items back to waiting, their attempts and losses
 * cleared, the job running again (resubmission, `sdxl retry`); *n how many. */
sd_status store_job_retry(sd_store *s, const char *job_id, int *n, sd_error *err);
sd_status store_job_set_state(sd_store *s, const char *job_id, store_job_state state, sd_error *err);

/* Items waiting in state, for running jobs, oldest job first: up to max in
 * all and per_job of each job (so a job no worker can serve now never hides
 * the next one), with job, idx, the parameters a worker gets (the job's
 * defaults merged with the item's own) and the info. skip(user, job, idx),
 * when given, passes over an item (one in flight); up to scan rows of each
 * job are read for that. room(user, job), when given, caps how many of the
 * job's items are taken (0: the job is not read at all). */
typedef struct {
    char job[40];
    int idx;
    json_t *params; /* new reference */
    json_t *info;   /* new reference: its accumulated info (an object, {} when none) */
} store_item_ref;
int store_items_waiting(sd_store *s, store_item_state state, store_item_ref *out, int max, int per_job, int scan,
                        int (*skip)(void *user, const char *job, int idx), int (*room)(void *user, const char *job),
                        void *user);
void store_item_refs_free(store_item_ref *r, int n);

/* Stage results: the blob replaces the item's intermediate and advances it. */
sd_status store_item_advance(sd_store *s, const char *job, int idx, store_item_state from, store_item_state to, const void *blob,
                             size_t len, json_t *info, sd_error *err);
/* The item's stored intermediate (malloc'd) */
sd_status store_item_blob(sd_store *s, const char *job, int idx, void **blob, size_t *len, sd_error *err);
/* A failed attempt (a failure the item caused: a worker's FAIL): back to its
 * state, or failed for good after max_attempts. */
sd_status store_item_failed_attempt(sd_store *s, const char *job, int idx, const char *reason, int max_attempts,
                                    sd_error *err);
/* Back to waiting from the start (a done item whose output has gone); the
 * caller sets the job's state after (store_job_set_state). */
sd_status store_item_reset(sd_store *s, const char *job, int idx, sd_error *err);
/* Work lost through no fault of the item (its worker died, stalled, was cut
 * off or registered again): back to its state without an attempt charged.
 * The separate rule for an item that kills its workers: after max_losses
 * losses it fails, naming them. */
sd_status store_item_lost(sd_store *s, const char *job, int idx, const char *reason, int max_losses, sd_error *err);
/* The same for an item whose input is gone (its producer no longer holds it:
 * text conditioning is recomputed, not stored): back to the start. */
sd_status store_item_lost_input(sd_store *s, const char *job, int idx, const char *reason, int max_losses,
                                sd_error *err);

/* Tasks in flight, kept so a restarted coordinator recognises their results
 * and does not hand their items out again while their workers still hold
 * them. Ids are never reused (SQLite AUTOINCREMENT). */
typedef struct {
    long long id;
    char job[40], stage[8], worker[64];
    int n, idx[16];
} store_task;
sd_status store_task_add(sd_store *s, const char *job, const char *stage, const char *worker, const int *idx, int n,
                         long long *id, sd_error *err);
sd_status store_task_remove(sd_store *s, long long id, sd_error *err);
/* Every task recorded (up to max), oldest first. */
int store_tasks_list(sd_store *s, store_task *out, int max);

/* The item's accumulated info (worker ids, timings) or NULL. */
json_t *store_item_info(sd_store *s, const char *job, int idx);
/* Done items of a job with idx > after, up to limit, in order: [{idx, info}]
 * (metadata.jsonl, `sdxl results`, resubmission: page by page, so a 10^7-item
 * job is never held whole). */
json_t *store_job_done_page(sd_store *s, const char *job, int after, int limit);
/* Items not yet done, failed or cancelled, those still to arrive included. */
int store_job_unfinished(sd_store *s, const char *job);
/* Items of the job with first <= idx < last not yet done, failed or
 * cancelled (or not yet arrived). */
int store_items_unfinished(sd_store *s, const char *job, int first, int last);
/* The item's state, or -1 if there is no such item. */
int store_item_state_of(sd_store *s, const char *job, int idx);
/* Jobs still running (ids into out, up to max). */
int store_running_jobs(sd_store *s, char (*out)[40], int max);
/* Marks done without output (the output already exists: resubmission). */
sd_status store_item_mark_done(sd_store *s, const char *job, int idx, sd_error *err);

/* The broker's turn: every write between these is one transaction, so a
 * thousand results cost one commit, not a thousand. What the turn's
 * messages acknowledge is sent only after the commit (broker.c): nothing
 * acknowledged is ever lost with the process. A failed commit rolls the
 * whole turn back. */
sd_status store_turn_begin(sd_store *s, sd_error *err);
sd_status store_turn_commit(sd_store *s, sd_error *err);

/* Items of every job by state (store_item_state), and jobs running or
 * ended: counts kept, not recounted (the metrics). */
void store_state_totals(sd_store *s, long long items[6], long long *jobs_running, long long *jobs_ended);

#endif
