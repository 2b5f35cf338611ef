/* direct_out.h - a final worker writing a job's images into the job's
 * folder itself, when that folder is the coordinator's too
 * (common/output_item.h: the coordinator's marker there holds the token a
 * final task carries in "out"), so image bytes need not pass through the
 * coordinator. For the real worker and the simulated one alike. */
#ifndef SDXL_WORKER_DAEMON_DIRECT_OUT_H
#define SDXL_WORKER_DAEMON_DIRECT_OUT_H

#include <jansson.h>
#include <stddef.h>

#include "common/error.h"
#include "proto/message.h"

/* The last job and token checked, and the verdict: one check per pair. */
typedef struct {
    char job[40], token[33];
    int ok;
} sd_direct_out;

/* 1 when task's images may be written here; *checked is 1 when this call
 * read the marker (the verdict is new: worth a log line). */
int sd_direct_out_ready(sd_direct_out *c, const sd_msg *task, int *checked);
/* Writes item idx's image and its metadata (info, less the worker-to-worker
 * "source": as the coordinator would write it); sync as sd_output_item_write. */
sd_status sd_direct_out_write(const sd_msg *task, long long idx, const void *image, size_t len, const json_t *info,
                              int sync, sd_error *err);
/* The task's output folder, for messages ("" when none). */
const char *sd_direct_out_dir(const sd_msg *task);

#endif
