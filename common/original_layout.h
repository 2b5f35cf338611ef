/* original_layout.h - tensor names of Stability's original single-file
 * checkpoints (sgm/ldm layout: sd_xl_base_1.0.safetensors, the refiner's,
 * their VAEs) translated to the diffusers component and parameter names the
 * loaders ask for, as diffusers' from_single_file converts them
 * (loaders/single_file_utils.py; the inverse of
 * scripts/convert_diffusers_to_original_sdxl.py).
 *
 *   model.diffusion_model.*               -> unet (block indices from its config)
 *   first_stage_model.* (or bare encoder./decoder./quant_conv keys of a VAE file) -> vae
 *   conditioner.embedders.0.transformer.* -> text_encoder (already transformers' names)
 *   conditioner.embedders.N.model.*       -> text_encoder_2 (OpenCLIP: fused q/k/v split,
 *                                            text_projection transposed)
 *
 * The UNet's and the VAE's block numbering depends on their configs
 * (layers_per_block, which levels have attention, the number of levels),
 * so the translation takes the few numbers it needs. */
#ifndef SDXL_COMMON_ORIGINAL_LAYOUT_H
#define SDXL_COMMON_ORIGINAL_LAYOUT_H

#include <stddef.h>

#include "error.h"
#include "json_config.h"

/* how the stored tensor becomes the diffusers parameter */
typedef enum {
    SD_ORIG_AS_IS,     /* same bytes, same shape */
    SD_ORIG_SQUEEZE,   /* a 1x1 conv [o, i, 1, 1] read as a linear [o, i] (VAE attention) */
    SD_ORIG_TRANSPOSE, /* a [a, b] matrix stored transposed (OpenCLIP text_projection) */
    SD_ORIG_THIRD,     /* rows part*n/3 .. (part+1)*n/3 of a fused q/k/v in_proj */
} sd_orig_transform;

typedef struct {
    char name[256]; /* the diffusers name */
    sd_orig_transform how;
    int part; /* SD_ORIG_THIRD: 0 q, 1 k, 2 v */
} sd_orig_target;

/* The numbers of a config the names depend on. */
typedef struct {
    int levels;          /* len(block_out_channels) */
    int layers;          /* layers_per_block */
    unsigned down_attn;  /* bit i: down block i has attentions */
    unsigned up_attn;    /* bit i: up block i has attentions */
} sd_unet_layout;

sd_status sd_unet_layout_from_config(const sd_json_doc *cfg, sd_unet_layout *out, sd_error *err);
/* levels: len(block_out_channels) of the VAE's config */
sd_status sd_vae_levels_from_config(const sd_json_doc *cfg, int *levels, sd_error *err);

/* The component of an original key: "unet", "vae", "text_encoder",
 * "text_encoder_2"; "" for keys diffusers drops (position_ids, logit_scale,
 * the denoiser's sigmas); NULL for a key that belongs to nothing we know.
 * *rest points past the component's prefix. refiner: the refiner's layout,
 * whose only text encoder (OpenCLIP) is embedders.0. */
const char *sd_orig_component(const char *key, int refiner, const char **rest);

/* Translates rest (a key past its component's prefix) into 1 or 3 targets
 * (*n); an error naming key when it maps to no parameter. */
sd_status sd_orig_unet_name(const char *rest, const sd_unet_layout *l, sd_orig_target *t, int *n, const char *key,
                            sd_error *err);
sd_status sd_orig_vae_name(const char *rest, int levels, sd_orig_target *t, int *n, const char *key, sd_error *err);
sd_status sd_orig_openclip_name(const char *rest, sd_orig_target *t, int *n, const char *key, sd_error *err);

/* The other way, for messages: the original key a diffusers parameter of
 * the component would have (prefix included; vae_file: no
 * first_stage_model.), or 0 when there is none. */
int sd_orig_key_of(const char *component, const char *name, int refiner, int vae_file, const sd_unet_layout *ul,
                   int vae_levels, char *out, size_t len);

/* A VAE file holds the original layout (with or without
 * first_stage_model.) or diffusers' names: 1 when key is original. */
int sd_orig_is_vae_original_key(const char *key);

#endif
