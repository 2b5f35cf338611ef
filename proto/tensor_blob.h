/* tensor_blob.h - a few named tensors packed into one byte string, for the
 * coordinator's store of intermediates (text embeddings, latents) and for
 * moving them between messages. Layout: "SDTB", u32 count, then per tensor
 * a 64-byte name, u32 dtype, u32 ndim, 4 x i64 shape, u64 bytes, data. */
#ifndef SDXL_PROTO_TENSOR_BLOB_H
#define SDXL_PROTO_TENSOR_BLOB_H

#include "proto/message.h"

/* Packs the message's tensors (all of them) into a malloc'd blob. */
sd_status sd_blob_pack(const sd_msg *m, void **blob, size_t *len, sd_error *err);
/* Packs the tensors of item k of a stage result (those named NAME_k) under
 * their names without the suffix; an error when there is none. */
sd_status sd_blob_pack_item(const sd_msg *m, int k, void **blob, size_t *len, sd_error *err);
/* Adds the blob's tensors to m, renamed with suffix ("emb" -> "emb_3"); the
 * message borrows data from blob, which must outlive it. */
sd_status sd_blob_attach(sd_msg *m, const void *blob, size_t len, const char *suffix, sd_error *err);

/* The key a worker holds an item's output under, "JOB/IDX": the
 * coordinator names it in RELEASE, a consumer in FETCH. */
void sd_data_key(char *out, size_t len, const char *job, long long idx);

#endif
