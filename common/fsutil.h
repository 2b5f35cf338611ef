/* fsutil.h - small file-system helpers: path joining, whole-file reads,
 * atomic writes (temp file, fsync, rename) so no reader ever sees a torn file. */
#ifndef SDXL_COMMON_FSUTIL_H
#define SDXL_COMMON_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

#include "error.h"

/* Returns a malloc'd "a/b"; NULL on allocation failure. */
char *sd_path_join(const char *a, const char *b);
int sd_path_exists(const char *path);
int sd_path_is_dir(const char *path);
/* The last component of path ("a/b.safetensors" -> "b.safetensors"). */
const char *sd_path_basename(const char *path);

/* Reads a whole file into a malloc'd NUL-terminated buffer. */
sd_status sd_read_file(const char *path, char **out, size_t *len, sd_error *err);

/* Atomic writer: opens "<path>.tmp.<pid>", and on commit fsyncs, closes and
 * renames it over path (then fsyncs the directory). abort removes the temp. */
typedef struct {
    FILE *fp;
    char *path;
    char *tmp;
    int no_sync; /* set after open: renamed into place without the fsyncs (files nobody keeps: a simulation's) */
} sd_atomic_file;

sd_status sd_atomic_open(sd_atomic_file *af, const char *path, sd_error *err);
sd_status sd_atomic_commit(sd_atomic_file *af, sd_error *err);
void sd_atomic_abort(sd_atomic_file *af);

/* Writes a buffer atomically. */
sd_status sd_write_file_atomic(const char *path, const void *data, size_t len, sd_error *err);
/* mkdir -p */
sd_status sd_mkdirs(const char *path, sd_error *err);

#endif
