/* device.h - the one parser of a device string (--device of generate, eval,
 * the worker, bench; the CFG pair's NCCL setup): "cpu", "cuda" (= cuda:0) or
 * "cuda:N". */
#ifndef SDXL_KERNELS_DEVICE_H
#define SDXL_KERNELS_DEVICE_H

#include "common/error.h"

typedef enum { SD_DEVICE_KIND_CPU, SD_DEVICE_KIND_CUDA } sd_device_kind;

typedef struct {
    sd_device_kind kind;
    int index; /* the CUDA device ordinal; 0 on the CPU */
} sd_device;

/* Messages name the string and what is accepted. */
sd_status sd_device_parse(const char *s, sd_device *out, sd_error *err);

#endif
