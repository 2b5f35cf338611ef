/* outputs.h - a job's output folder: WebDataset tar shards (000000.tar with
 * KEY.png + KEY.json per sample) or plain files (KEY.png, KEY.json and
 * metadata.jsonl). KEY is the item index, zero-padded to 8 digits. Every file
 * is written atomically; a shard is written as soon as all its items have ended,
 * from per-item files staged in DIR/.staging, so a retried item never yields
 * a duplicate or a torn file, and metadata.jsonl is rebuilt from the state
 * database rather than appended to. */
#ifndef SDXL_COORDINATOR_OUTPUTS_H
#define SDXL_COORDINATOR_OUTPUTS_H

#include <jansson.h>
#include <stddef.h>

#include "common/error.h"

typedef struct {
    const char *dir, *ext; /* "png" / "webp" / "jpg" */
    int webdataset, shard_size, total;
} sd_outputs;

void outputs_from_spec(sd_outputs *o, json_t *spec);
/* Writes KEY.ext and KEY.json of item idx (staged for WebDataset). */
sd_status outputs_write_item(const sd_outputs *o, int idx, const void *image, size_t len, json_t *meta, sd_error *err);
/* 1 if the item's output is already complete (for resubmitted jobs). */
int outputs_item_exists(const sd_outputs *o, int idx);
/* The shard holding item idx, and its items first <= i < last. */
int outputs_shard_of(const sd_outputs *o, int idx, int *first, int *last);
/* Writes shard `shard` with the items finished(idx) says are done (1) and
 * whose files are staged, after the samples an existing shard holds (an item
 * retried after its shard was written joins it); removes the staged files;
 * *written says whether a file was written (a shard with no sample is not).
 * Called once every item of the shard has ended, so a long job yields its
 * shards as it goes rather than all at its end. */
sd_status outputs_write_shard(const sd_outputs *o, int shard, int (*finished)(void *, int), void *user, int *written,
                              sd_error *err);
/* A job's done items, page by page so none is held whole: [{idx, info}]
 * with idx > after, in order, up to limit (the store's store_job_done_page). */
typedef json_t *(*outputs_done_page)(void *user, int after, int limit);
/* When the job has ended (done or cancelled): every shard with a done item
 * written or completed. */
sd_status outputs_flush(const sd_outputs *o, int (*finished)(void *, int), outputs_done_page page, void *user,
                        sd_error *err);
/* Calls missing(ctx, idx) for each done item whose output is not in the
 * folder (a job submitted again makes those again). */
void outputs_each_missing(const sd_outputs *o, outputs_done_page page, void *user, void (*missing)(void *ctx, int idx),
                          void *ctx);
/* Removes what crashed writers left: temp files of other processes (a
 * coordinator killed mid-write) in DIR and DIR/.staging, and .staging itself
 * once empty. For the job's end, when no write of this process is open. */
void outputs_sweep(const sd_outputs *o);
/* Test hook (--fault shard:N): die at step N of assembling a shard. */
void outputs_set_fault(int step);
/* metadata.jsonl from the done items (files layout), written as a stream. */
sd_status outputs_write_metadata(const sd_outputs *o, outputs_done_page page, void *user, sd_error *err);

#endif
