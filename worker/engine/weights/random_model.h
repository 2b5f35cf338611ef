/* random_model.h - writes a complete diffusers SDXL folder with random
 * weights: model_index.json, every config, tokenizer files, and safetensors
 * with diffusers' exact tensor names and shapes (enumerated by the same code
 * that loads them). For speed and memory work without downloads. */
#ifndef SDXL_WORKER_RANDOM_MODEL_H
#define SDXL_WORKER_RANDOM_MODEL_H

#include <stdint.h>

#include "common/dtype.h"
#include "common/error.h"

typedef struct {
    const char *preset;        /* "sdxl-base", "sdxl-refiner" or "tiny" */
    const char *out;           /* folder to create */
    sd_dtype dtype;            /* F16 (written as *.fp16.safetensors), BF16 or F32 */
    uint64_t seed;
    const char *tokenizer_src; /* copy vocab/merges from this folder; NULL: the embedded CLIP vocabulary */
    int configs_only;          /* write everything but the weight files */
    int quiet;
} sd_random_model_opts;

sd_status sd_random_model_write(const sd_random_model_opts *o, sd_error *err);
/* 1 if name is a known preset. */
int sd_random_model_preset_known(const char *name);

#endif
