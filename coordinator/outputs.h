/* outputs.h - a job's output folder: WebDataset tar shards (000000.tar with
 * KEY.png + KEY.json per sample) or plain files (KEY.png, KEY.json and
 * metadata.jsonl). KEY is the item index, zero-padded to 8 digits. Every file
 * is written atomically; a shard is written once all its items are finished,
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
/* When the job has ended (done or cancelled): writes every shard not yet
 * written, with the items finished(idx) says are done (1), and removes their
 * staged files. */
sd_status outputs_flush(const sd_outputs *o, int (*finished)(void *, int), void *user, sd_error *err);
/* metadata.jsonl from the done items ([{idx, info}]) (files layout). */
sd_status outputs_write_metadata(const sd_outputs *o, json_t *done, sd_error *err);

#endif
