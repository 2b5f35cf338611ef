/* model_identity.h - a short identity of a model (a diffusers folder or a
 * single file): a hash of its pipeline flags, every component's config and every weight file's
 * safetensors header (names, dtypes, shapes, offsets). Two folders with the
 * same identity hold the same model as far as any worker can tell without
 * reading gigabytes; the cluster never gives a job to a worker whose model
 * identity differs. */
#ifndef SDXL_COMMON_MODEL_IDENTITY_H
#define SDXL_COMMON_MODEL_IDENTITY_H

#include <stddef.h>

#include "common/error.h"
#include "common/model_folder.h"

/* Writes "sdxl-" + 16 hex digits into out (at least 24 bytes). path: a
 * folder or a single file (config_dir: its --config, or NULL). */
sd_status sd_model_identity(const char *path, const char *config_dir, const char *variant, char *out, size_t len,
                            sd_error *err);
/* The same for a model already open. */
sd_status sd_model_identity_of(const sd_model_folder *m, const char *variant, char *out, size_t len, sd_error *err);
/* Folds into an identity what else changes the weights: a component that
 * replaces the model's own (--vae), or a text (a LoRA's content hash and
 * scale). */
sd_status sd_identity_mix_component(char *id, size_t len, const sd_component *c, const char *variant, sd_error *err);
sd_status sd_identity_mix_text(char *id, size_t len, const char *text);

#endif
