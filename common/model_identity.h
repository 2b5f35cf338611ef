/* model_identity.h - a short identity of a diffusers folder: a hash of its
 * model_index.json, every component's config and every weight file's
 * safetensors header (names, dtypes, shapes, offsets). Two folders with the
 * same identity hold the same model as far as any worker can tell without
 * reading gigabytes; the cluster never gives a job to a worker whose model
 * identity differs. */
#ifndef SDXL_COMMON_MODEL_IDENTITY_H
#define SDXL_COMMON_MODEL_IDENTITY_H

#include <stddef.h>

#include "common/error.h"

/* Writes "sdxl-" + 16 hex digits into out (at least 24 bytes). */
sd_status sd_model_identity(const char *dir, const char *variant, char *out, size_t len, sd_error *err);

#endif
