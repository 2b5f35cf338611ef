/* job_spec.h - what a job is on the wire, checked before anything is stored.
 *
 * A job travels in pieces (jobs of 10^7 prompts do not fit one message): the
 * SUBMIT carries the job-wide spec
 *   {out, format, layout, shard_size, [model], defaults, total, items_hash}
 * (defaults: the job-wide generation parameters, format included; total: how
 * many items follow; items_hash: the hash of their canonical JSON lines, so
 * the same file and options make the same job), then SUBMIT_ITEMS messages
 * carry the items in order, each only its own keys (prompt, seed and what its
 * JSONL line gives), and SUBMIT_END closes it. A worker gets each item's
 * defaults and own keys merged (sd_job_item_params).
 *
 * Pure functions of their input (the fuzz target's entries too); the client
 * checks with them before sending and the coordinator again on receipt. */
#ifndef SDXL_COMMON_JOB_SPEC_H
#define SDXL_COMMON_JOB_SPEC_H

#include <jansson.h>
#include <stdint.h>

#include "common/error.h"
#include "common/hashmap.h"

#define SD_JOB_MAX_ITEMS 100000000 /* 10^8: item indices stay ints */

sd_status sd_job_spec_validate(const json_t *spec, sd_error *err);
/* One item: a 'prompt' string, an integer 'seed', and with the job's
 * defaults, every key as the worker will decode it (common/gen_params.h). */
sd_status sd_job_item_validate(const json_t *defaults, const json_t *item, sd_error *err);
/* The parameters a worker gets for an item: the defaults, then the item's
 * own keys (a new reference, or NULL when out of memory). */
json_t *sd_job_item_params(const json_t *defaults, const json_t *item);
/* items_hash: FNV-1a (64 bits) over each item's canonical JSON (compact,
 * sorted keys) and a newline, in order, as 16 hex digits. */
#define SD_JOB_ITEMS_HASH_INIT SD_FNV1A_INIT
uint64_t sd_job_items_hash_add(uint64_t h, const json_t *item);

#endif
