/* error.h - errors as values.
 *
 * Every function that can fail takes an `sd_error *` (may be NULL) and returns
 * an sd_status. On failure it fills the message with what went wrong and which
 * file, tensor, key or field was at fault, so the caller can report it (to the
 * user, or to the coordinator) and carry on. Only programming errors assert. */
#ifndef SDXL_COMMON_ERROR_H
#define SDXL_COMMON_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SD_OK = 0,
    SD_ERR_IO,        /* cannot open/read/write/map a file */
    SD_ERR_FORMAT,    /* malformed input: safetensors, JSON, config, message */
    SD_ERR_MISSING,   /* a required file, key, component or tensor is absent */
    SD_ERR_INVALID,   /* a value is out of range or inconsistent */
    SD_ERR_NOMEM,     /* allocation failed */
    SD_ERR_UNSUPPORTED, /* valid input we do not handle (unknown class, dtype) */
    SD_ERR_BACKEND,   /* a compute backend call failed */
} sd_status;

typedef struct {
    sd_status code;
    char msg[512];
} sd_error;

/* Fills err (if non-NULL) and returns code, so callers can write
 * `return sd_fail(err, SD_ERR_IO, "%s: %s", path, strerror(errno));`. */
sd_status sd_fail(sd_error *err, sd_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message of a failure with more context ("unet: " + msg) and
 * returns its status st, so callers can write
 * `return sd_error_prefix(err, st, "component '%s': ", name);`. It never
 * reports success: err NULL returns st; st SD_OK (a caller passing no
 * failure) returns SD_ERR_INVALID. */
sd_status sd_error_prefix(sd_error *err, sd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *sd_status_name(sd_status code);

/* Propagates a failing status from an expression. */
#define SD_TRY(expr)                          \
    do {                                      \
        sd_status sd_try_st_ = (expr);        \
        if (sd_try_st_ != SD_OK)              \
            return sd_try_st_;                \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
