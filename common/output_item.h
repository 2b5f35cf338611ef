/* output_item.h - one item's files in a job's output folder, as both the
 * coordinator and a final worker write them: DIR/KEY.EXT then DIR/KEY.json
 * (under DIR/.staging for a WebDataset job, whose shards the coordinator
 * assembles). KEY is the item index, zero-padded to 8 digits; each file is
 * written atomically, the JSON last, so a complete JSON marks a complete
 * item.
 *
 * A final worker writes them itself only when the folder is one it shares
 * with the coordinator: the coordinator leaves a marker file there holding a
 * random token and passes the token in the task; a worker that reads the
 * same token writes, any other sends the image bytes (a path that merely
 * exists on both machines is not enough). */
#ifndef SDXL_COMMON_OUTPUT_ITEM_H
#define SDXL_COMMON_OUTPUT_ITEM_H

#include <stddef.h>

#include "common/error.h"

/* DIR/[.staging/]KEY.EXT, malloc'd (NULL when out of memory). */
char *sd_output_item_path(const char *dir, int staged, int idx, const char *ext);
/* Writes the item's image, then its JSON (text: the metadata, compact);
 * sync: each fsync'ed (0 only for a simulation's images). */
sd_status sd_output_item_write(const char *dir, int staged, int idx, const char *ext, const void *image, size_t len,
                               const char *json_text, int sync, sd_error *err);
/* 1 when both of the item's files are there. */
int sd_output_item_exists(const char *dir, int staged, int idx, const char *ext);

/* The marker of job in dir: DIR/.sdxl-job-JOB (malloc'd). */
char *sd_output_marker_path(const char *dir, const char *job);
/* Writes a fresh random token (hex, 32 chars + NUL into token) as the marker. */
sd_status sd_output_marker_write(const char *dir, const char *job, char token[33], sd_error *err);
/* 1 when DIR/.sdxl-job-JOB holds exactly token. */
int sd_output_marker_matches(const char *dir, const char *job, const char *token);

#endif
