/* prompt_file.h - the items of a prompt file, read as a stream: one prompt a
 * line (.txt), or one JSON object a line with per-item options (.jsonl), each
 * also gzip-compressed (.txt.gz, .jsonl.gz; zlib reads plain files too).
 * Memory does not grow with the file: a line at a time.
 *
 * Each line gives --images-per-prompt items, each holding only its own keys
 * (the prompt, its seed: the line's "seed" + k, else the base seed + the
 * item's index, and what a JSONL line sets), checked with the job's defaults
 * as the worker will decode them (common/job_spec.h). */
#ifndef SDXL_COORDINATOR_CLI_CLIENT_PROMPT_FILE_H
#define SDXL_COORDINATOR_CLI_CLIENT_PROMPT_FILE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

typedef struct {
    const char *path;
    gzFile gz;
    int jsonl;
    const json_t *defaults; /* borrowed */
    long long per_prompt;
    uint64_t base_seed;
    long long lineno, items; /* lines read, items given */
    json_t *base;            /* the current line's own keys, given per_prompt times */
    long long k;
    char *buf;               /* read buffer: buf[pos..len) not yet consumed */
    size_t pos, len, cap;
    int eof;
    int checked; /* a second pass: every item was checked in the first */
} prompt_file;

/* 0, or an exit code after printing why (1: cannot read, 2: bad input) */
int prompt_file_open(prompt_file *pf, const char *path, const json_t *defaults, long long per_prompt,
                     uint64_t base_seed);
/* The next item (a new reference) in *item: 1; 0 at the end; or minus an
 * exit code after printing why, naming FILE:LINE and the key. */
int prompt_file_next(prompt_file *pf, json_t **item);
/* Back to the first item for a second pass, which does not check the items
 * again (the coordinator checks what it receives in any case): 0, or an exit
 * code after printing why. */
int prompt_file_rewind(prompt_file *pf);
void prompt_file_close(prompt_file *pf);

#endif
