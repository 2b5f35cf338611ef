/* model_spec.h - what a process loads as "the model", as the user names it:
 * each model a diffusers folder or a single file in Stability's original
 * layout (with the diffusers folder of its configs, or the real SDXL configs
 * built in), a VAE to use instead of the models' own, LoRAs merged into the
 * base's weights. Its identity pins jobs to the workers that loaded the
 * same (the cluster never gives a job to a worker whose identity differs). */
#ifndef SDXL_COMMON_MODEL_SPEC_H
#define SDXL_COMMON_MODEL_SPEC_H

#include <stddef.h>

#include "common/error.h"
#include "common/model_folder.h"

#define SD_MAX_LORAS 8

typedef struct {
    char path[1024];
    float scale;
} sd_lora_ref;

typedef struct {
    const char *model, *model_config;     /* model_config: --config for a single file, or NULL */
    const char *refiner, *refiner_config; /* refiner NULL: none */
    const char *vae;                      /* --vae: an AutoencoderKL folder or single file, or NULL */
    const char *variant;                  /* "fp16" or NULL */
    int nloras;
    sd_lora_ref loras[SD_MAX_LORAS];
} sd_model_spec;

/* Adds --lora FILE[:SCALE] (SCALE a finite number, 1 when absent; a path
 * may hold ':'); an error past SD_MAX_LORAS or for a bad scale. */
sd_status sd_model_spec_add_lora(sd_model_spec *spec, const char *arg, sd_error *err);

/* The spec a job item runs with: base (what the worker loaded) with the
 * item's LoRAs ("FILE[:SCALE],FILE[:SCALE]...", NULL for none) merged after
 * base's, and its VAE (NULL: base's) instead. Messages name the item's key. */
sd_status sd_model_spec_for_item(const sd_model_spec *base, const char *loras, const char *vae, sd_model_spec *out,
                                 sd_error *err);
/* A text that differs whenever two specs load different weights (a cache
 * key of the worker's loaded models). */
void sd_model_spec_key(const sd_model_spec *spec, char *out, size_t len);

/* "sdxl-<16 hex>" of the base with its VAE and LoRAs, and "+sdxl-<16 hex>"
 * of the refiner when there is one. */
sd_status sd_model_spec_identity(const sd_model_spec *spec, char *out, size_t len, sd_error *err);

/* The identity as above, and what image metadata records of --vae and
 * --lora: file names with content hashes, "name#hash" and
 * "name#hash:scale,..." ("" when none); each file is hashed once. */
sd_status sd_model_spec_describe(const sd_model_spec *spec, char *identity, size_t identity_len, char *vae,
                                 size_t vae_len, char *loras, size_t loras_len, sd_error *err);

/* --vae PATH as the component that replaces m's VAE: an AutoencoderKL
 * folder, or a single file (original layout or diffusers' names) whose
 * config is m's own VAE config. Free with sd_vae_swap_free. */
sd_status sd_vae_swap_component(sd_component *v, const sd_model_folder *m, const char *path, sd_error *err);
void sd_vae_swap_free(sd_component *v);

/* 16 hex digits of a file's whole content. */
sd_status sd_file_content_hash(const char *path, char out[17], sd_error *err);

#endif
