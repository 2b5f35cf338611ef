/* data_plane.h - stage outputs passed worker to worker, not through the
 * coordinator.
 *
 * A unet worker keeps each item's latents the same way, but until the
 * coordinator releases them (the final result is safe), not just until
 * fetched, and also in a spool folder on disk: a final worker that dies
 * after fetching, or a unet worker killed and restarted with the same id
 * and spool, loses no finished UNet work.
 *
 * A text worker keeps each item's conditioning (embeddings and pooled,
 * packed as a tensor blob, proto/tensor_blob.h) in memory and serves it on a
 * data socket of its own; its RESULT to the coordinator says only that it
 * holds it and where. The unet worker the item goes to fetches it from there
 * (FETCH {key} -> OK with one tensor "blob", or ERROR "not held"), and the
 * holder forgets it once fetched: text encoding is cheap, so an embedding
 * lost with its holder or its fetcher is recomputed rather than stored (the
 * unet worker reports it lost and the coordinator sends the item back to the
 * text stage, no attempt charged). At most `capacity` items are held; the
 * oldest goes first.
 *
 * The data socket is bound on the address of this host that routes to the
 * coordinator (loopback for a loopback coordinator), on a free port; with
 * CURVE keys it is a CURVE server under the worker's own key pair, and a
 * fetcher uses its own keys with the holder's public key, which the
 * coordinator passes along. */
#ifndef SDXL_WORKER_DAEMON_DATA_PLANE_H
#define SDXL_WORKER_DAEMON_DATA_PLANE_H

#include <stddef.h>

#include "common/error.h"
#include "proto/message.h"
#include "proto/tensor_blob.h" /* sd_data_key */

typedef struct sd_data_server sd_data_server;

typedef struct {
    const char *coordinator; /* the coordinator's endpoint: the data socket is bound on the address routing there */
    size_t capacity;         /* held in memory at most; the oldest goes first */
    int keep;                /* kept until released (sd_data_server_release), not forgotten once fetched */
    const char *spool;       /* keep: a folder each output is also written to (served from there when no longer
                              * in memory, by a restarted worker too), or NULL */
    const char *curve_secret; /* the worker's CURVE secret key file (a CURVE server), or NULL */
} sd_data_server_opts;

/* Spooled outputs older than this are removed at start: their release never
 * came (the coordinator lost the worker's registration, a job was cancelled). */
#define SD_DATA_SPOOL_TTL_S (24 * 3600)

/* Binds the data socket and starts serving; *endpoint_out: what to advertise. */
sd_status sd_data_server_start(sd_data_server **out, void *ctx, const sd_data_server_opts *o, char *endpoint_out,
                               size_t len, sd_error *err);
/* Holds a copy of blob under key (replacing any), dropping the oldest past
 * capacity from memory (a spooled one stays on disk). A spool that cannot
 * be written (a full or failing disk) does not fail the hold: the blob is
 * held in memory only, and spool_err (if not NULL) says why (its code
 * SD_OK when spooled or there is no spool). Losing the spool only loses the
 * output's survival of a restart (it is made again then, never charged),
 * while failing the hold would charge the item an attempt for the disk. */
sd_status sd_data_server_hold(sd_data_server *s, const char *key, const void *blob, size_t len, sd_error *spool_err,
                              sd_error *err);
/* Bytes served to fetchers so far (the metrics). Thread-safe. */
unsigned long long sd_data_server_served_bytes(sd_data_server *s);
/* Forgets key (memory and spool): its consumer's result is safe. */
void sd_data_server_release(sd_data_server *s, const char *key);
void sd_data_server_stop(sd_data_server *s);
/* Removes a spool folder's files and the folder (and its parent when that is
 * left empty): for a spool no later process can serve (see worker_loop.h). */
void sd_data_spool_remove(const char *spool);


/* A consumer's connections to the holders it fetches from, kept open (one
 * per holder, the 64 most recently used): a fetch is a request on an open
 * pipe. curve_secret/curve_public: the consumer's own CURVE key files, or
 * NULL. One thread uses a fetcher. */
typedef struct sd_data_fetcher sd_data_fetcher;
sd_status sd_data_fetcher_new(sd_data_fetcher **out, void *ctx, const char *curve_secret, const char *curve_public,
                              sd_error *err);
void sd_data_fetcher_free(sd_data_fetcher *f);

/* Fetches key from the holder at endpoint (server_key: its CURVE public
 * key, or NULL) within timeout_ms: SD_OK with the blob (malloc'd); SD_ERR_MISSING
 * when the holder answered that it does not hold it, or did not answer
 * (gone, cut off: its connection is dropped): either way the output is lost
 * and must be made again. */
sd_status sd_data_fetch(sd_data_fetcher *f, const char *endpoint, const char *server_key, const char *key,
                        int timeout_ms, void **blob, size_t *len, sd_error *err);

/* The input of a TASK's item whose info names a source (the holder's data
 * endpoint and key, as the coordinator passes them), fetched as
 * sd_data_fetch does (a source without an endpoint is lost too);
 * *has_source is 0 (and nothing fetched) when it names none. */
sd_status sd_data_fetch_item(sd_data_fetcher *f, const char *job, const json_t *item, int timeout_ms, int *has_source,
                             void **blob, size_t *len, sd_error *err);
/* res (a RESULT) becomes one with its task_id only: its items' outputs are
 * held or written elsewhere, the items' info says so. */
sd_status sd_result_lean(sd_msg *res, sd_error *err);

/* The FAIL that tells the coordinator a task's inputs are gone (lost: the
 * item indices): not the items' failure, they are made again. Takes lost. */
sd_status sd_data_lost_inputs_msg(sd_msg *m, long long task_id, json_t *lost, sd_error *err);

#endif
