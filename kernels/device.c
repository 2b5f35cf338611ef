/* device.c - see device.h. */
#include "kernels/device.h"

#include <stdlib.h>
#include <string.h>

sd_status sd_device_parse(const char *s, sd_device *out, sd_error *err)
{
    out->kind = SD_DEVICE_KIND_CPU;
    out->index = 0;
    if (s && !strcmp(s, "cpu"))
        return SD_OK;
    if (s && !strncmp(s, "cuda", 4) && (!s[4] || s[4] == ':')) {
        out->kind = SD_DEVICE_KIND_CUDA;
        if (!s[4])
            return SD_OK;
        char *end;
        long v = strtol(s + 5, &end, 10);
        if (!*end && end != s + 5 && s[5] >= '0' && s[5] <= '9' && v <= 1024) {
            out->index = (int)v;
            return SD_OK;
        }
    }
    return sd_fail(err, SD_ERR_INVALID, "device '%s': expected cpu, cuda or cuda:N", s ? s : "(none)");
}
