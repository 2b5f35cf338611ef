/* error.c - formatting of sd_error values. */
#include "error.h"

#include <stdio.h>
#include <string.h>

sd_status sd_fail(sd_error *err, sd_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

sd_status sd_error_prefix(sd_error *err, sd_status st, const char *fmt, ...)
{
    if (st == SD_OK)
        st = SD_ERR_INVALID;
    if (!err)
        return st;
    if (err->code == SD_OK)
        err->code = st;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* a context already named (by a callee that prefixes too) is not repeated */
    if (strncmp(err->msg, prefix, strlen(prefix)) == 0)
        return st;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return st;
}

const char *sd_status_name(sd_status code)
{
    switch (code) {
    case SD_OK: return "ok";
    case SD_ERR_IO: return "io";
    case SD_ERR_FORMAT: return "format";
    case SD_ERR_MISSING: return "missing";
    case SD_ERR_INVALID: return "invalid";
    case SD_ERR_NOMEM: return "nomem";
    case SD_ERR_UNSUPPORTED: return "unsupported";
    case SD_ERR_BACKEND: return "backend";
    }
    return "unknown";
}
