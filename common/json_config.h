/* json_config.h - reading config.json-style files with errors that name the
 * file and the key. Wraps jansson; "optional" getters return a default when
 * the key is absent or null, required ones fail naming what is missing. */
#ifndef SDXL_COMMON_JSON_CONFIG_H
#define SDXL_COMMON_JSON_CONFIG_H

#include <jansson.h>

#include "error.h"

typedef struct {
    json_t *root;
    char *path; /* for messages */
} sd_json_doc;

/* Python's json module writes non-finite floats as -Infinity, Infinity and
 * NaN, which JSON has no spelling for (diffusers' DPMSolverMultistep config
 * has "lambda_min_clipped": -Infinity): sd_json_load reads them as null. */
sd_status sd_json_load(sd_json_doc *doc, const char *path, sd_error *err);
/* The same for JSON text in memory (an embedded config); name stands for the
 * path in messages. */
sd_status sd_json_load_text(sd_json_doc *doc, const char *text, size_t len, const char *name, sd_error *err);
void sd_json_free(sd_json_doc *doc);
/* The same reading of Python's JSON from text (changed in place). */
json_t *sd_json_loads_python(const char *text, size_t len, size_t flags, json_error_t *jerr);

sd_status sd_json_int(const sd_json_doc *d, const char *key, long long *out, sd_error *err);
/* A required integer in [lo, hi]; out of range fails naming file, key and the range
 * (a config's 0 where it divides must not reach the division). */
sd_status sd_json_int_in(const sd_json_doc *d, const char *key, long long lo, long long hi, long long *out,
                         sd_error *err);
sd_status sd_json_double(const sd_json_doc *d, const char *key, double *out, sd_error *err);
sd_status sd_json_bool(const sd_json_doc *d, const char *key, int *out, sd_error *err);
/* Returns a pointer into the document (valid while it lives). */
sd_status sd_json_string(const sd_json_doc *d, const char *key, const char **out, sd_error *err);

long long sd_json_int_or(const sd_json_doc *d, const char *key, long long dflt);
double sd_json_double_or(const sd_json_doc *d, const char *key, double dflt);
int sd_json_bool_or(const sd_json_doc *d, const char *key, int dflt);
const char *sd_json_string_or(const sd_json_doc *d, const char *key, const char *dflt);

/* Reads an array of integers (or, if scalar_ok, a single integer repeated n
 * times) into out[0..n). The array length must equal n unless n_out is given,
 * in which case up to cap entries are read and the count stored. */
sd_status sd_json_int_array(const sd_json_doc *d, const char *key, int scalar_ok, long long *out,
                            int n, sd_error *err);
sd_status sd_json_int_list(const sd_json_doc *d, const char *key, long long *out, int cap, int *n_out,
                           sd_error *err);
/* Reads an array of strings; pointers into the document. */
sd_status sd_json_string_list(const sd_json_doc *d, const char *key, const char **out, int cap,
                              int *n_out, sd_error *err);

#endif
