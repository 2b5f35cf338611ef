/* data_plane.h - stage outputs passed worker to worker, not through the
 * coordinator.
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

typedef struct sd_data_server sd_data_server;

/* Binds the data socket for a worker whose coordinator is at
 * coordinator_ep and starts serving; *endpoint_out: what to advertise. */
sd_status sd_data_server_start(sd_data_server **out, void *ctx, const char *coordinator_ep, size_t capacity,
                               const char *curve_secret, char *endpoint_out, size_t len, sd_error *err);
/* Holds a copy of blob under key (replacing any), dropping the oldest past capacity. */
sd_status sd_data_server_hold(sd_data_server *s, const char *key, const void *blob, size_t len, sd_error *err);
void sd_data_server_stop(sd_data_server *s);

/* The key of an item's output: "JOB/IDX". */
void sd_data_key(char *out, size_t len, const char *job, long long idx);

/* Fetches key from the holder at endpoint (server_key: its CURVE public
 * key, or NULL) within timeout_ms: SD_OK with the blob (malloc'd); SD_ERR_MISSING
 * when the holder answered that it does not hold it, or did not answer
 * (gone, cut off): either way the output is lost and must be made again. */
sd_status sd_data_fetch(void *ctx, const char *endpoint, const char *server_key, const char *curve_secret,
                        const char *curve_public, const char *key, int timeout_ms, void **blob, size_t *len,
                        sd_error *err);

/* The input of a TASK's item whose info names a source (the holder's data
 * endpoint and key, as the coordinator passes them), fetched as
 * sd_data_fetch does (a source without an endpoint is lost too);
 * *has_source is 0 (and nothing fetched) when it names none. */
sd_status sd_data_fetch_item(void *ctx, const char *job, const json_t *item, const char *curve_secret,
                             const char *curve_public, int timeout_ms, int *has_source, void **blob, size_t *len,
                             sd_error *err);
/* The FAIL that tells the coordinator a task's inputs are gone (lost: the
 * item indices): not the items' failure, they are made again. Takes lost. */
sd_status sd_data_lost_inputs_msg(sd_msg *m, long long task_id, json_t *lost, sd_error *err);

#endif
