/* message.h - the wire format: every ZeroMQ message is multipart, frame 0 a
 * MessagePack map {v, type, ...fields}, then one frame per tensor, raw
 * little-endian bytes described in the header's "tensors" list by name,
 * dtype and shape. Decoding checks every type, length, dtype, shape and the
 * frame count against the header; a malformed message is refused with a
 * reason (and the receiver keeps serving). The header is handled as a
 * jansson object in memory: MessagePack on the wire, JSON-like in code. */
#ifndef SDXL_PROTO_MESSAGE_H
#define SDXL_PROTO_MESSAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/error.h"

#define SD_PROTO_VERSION 1
#define SD_MSG_MAX_TENSORS 64
#define SD_MSG_MAX_HEADER (1u << 20)
#define SD_MSG_MAX_TENSOR_BYTES (1ull << 31)

typedef struct {
    char name[64];
    sd_dtype dtype;
    int ndim;
    int64_t shape[4];
    size_t nbytes;
    const void *data; /* borrowed (sending) or owned (received) */
    void *owned;
} sd_msg_tensor;

typedef struct {
    json_t *hdr; /* object: v, type, fields */
    char user_id[41]; /* received under CURVE: the sender's public key (ZAP User-Id), else "" */
    int ntensors;
    sd_msg_tensor tensors[SD_MSG_MAX_TENSORS];
} sd_msg;

/* The message kinds. Workers: REGISTER HEARTBEAT RESULT FAIL; the
 * coordinator to workers: TASK HEARTBEAT; clients: SUBMIT SUBMIT_ITEMS
 * SUBMIT_END STATUS WATCH CANCEL RESULTS WORKERS RETRY; replies: OK ERROR; between the two workers of a
 * CFG pair (worker/daemon/cfg_pair.h): PEER; worker to worker (an output
 * held by its producer, worker/daemon/data_plane.h): FETCH. The wire spells each by its
 * name ("type": "TASK"). */
typedef enum {
    SD_MSG_KIND_REGISTER,
    SD_MSG_KIND_HEARTBEAT,
    SD_MSG_KIND_TASK,
    SD_MSG_KIND_RESULT,
    SD_MSG_KIND_FAIL,
    SD_MSG_KIND_SUBMIT,
    SD_MSG_KIND_SUBMIT_ITEMS,
    SD_MSG_KIND_SUBMIT_END,
    SD_MSG_KIND_STATUS,
    SD_MSG_KIND_WATCH,
    SD_MSG_KIND_CANCEL,
    SD_MSG_KIND_RESULTS,
    SD_MSG_KIND_WORKERS,
    SD_MSG_KIND_RETRY,
    SD_MSG_KIND_OK,
    SD_MSG_KIND_ERROR,
    SD_MSG_KIND_PEER,
    SD_MSG_KIND_FETCH,
    SD_MSG_KIND_RELEASE, /* coordinator -> holder: these outputs are safe downstream, forget them */
    SD_MSG_KIND_COUNT /* not a kind: an unknown type */
} sd_msg_kind;

int sd_msg_type_known(const char *type);
/* The kind of a message, SD_MSG_KIND_COUNT for an unknown type. */
sd_msg_kind sd_msg_kind_of(const sd_msg *m);
const char *sd_msg_kind_name(sd_msg_kind k);
/* Checks the header fields each kind requires (the table in message.c);
 * sd_msg_recv runs it on everything received, so handlers may read them. */
sd_status sd_msg_check_fields(const sd_msg *m, sd_error *err);

sd_status sd_msg_new(sd_msg *m, const char *type, sd_error *err);
/* A deep copy: its own header and copies of every tensor's data (a message
 * kept after the buffers it borrowed are gone, to be sent again). */
sd_status sd_msg_clone(sd_msg *dst, const sd_msg *src, sd_error *err);
void sd_msg_free(sd_msg *m);
const char *sd_msg_type(const sd_msg *m);
/* Attaches a tensor (data borrowed until the message is sent or freed). */
sd_status sd_msg_add_tensor(sd_msg *m, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
                            const void *data, sd_error *err);
const sd_msg_tensor *sd_msg_tensor_get(const sd_msg *m, const char *name);

/* Serialises to frames: frame 0 (malloc'd MessagePack) and the tensor data
 * pointers. */
sd_status sd_msg_encode_header(const sd_msg *m, void **buf, size_t *len, sd_error *err);
/* Parses and validates frames (header first): the inverse of encode. The
 * message owns copies of the tensor data. */
sd_status sd_msg_decode(sd_msg *m, const void *const *frames, const size_t *sizes, int nframes, sd_error *err);

/* ZeroMQ transport. route (a ROUTER's peer identity) may be NULL. Sends
 * never block forever: a peer that is gone makes send fail. */
sd_status sd_msg_send(void *sock, const void *route, size_t route_len, const sd_msg *m, sd_error *err);
/* Receives one message; a ROUTER socket (is_router) first yields the peer
 * identity into route (up to 255 bytes). Returns SD_ERR_IO on timeout. */
sd_status sd_msg_recv(void *sock, int is_router, sd_msg *m, unsigned char *route, size_t *route_len,
                      sd_error *err);

/* Header field helpers; errors name the field and the message type. */
sd_status sd_msg_get_str(const sd_msg *m, const char *key, const char **out, sd_error *err);
sd_status sd_msg_get_int(const sd_msg *m, const char *key, long long lo, long long hi, long long *out,
                         sd_error *err);

#endif
