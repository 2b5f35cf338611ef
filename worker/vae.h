/* vae.h - diffusers' AutoencoderKL (encoder, decoder, mid-block attention,
 * quant_conv / post_quant_conv), built from config.json. */
#ifndef SDXL_WORKER_VAE_H
#define SDXL_WORKER_VAE_H

#include "common/model_folder.h"
#include "kernels/ops.h"

#define SD_VAE_MAX_LEVELS 8

typedef struct {
    int in_channels, out_channels, latent_channels, layers_per_block, levels, groups, sample_size;
    int block_out[SD_VAE_MAX_LEVELS];
    int mid_attention, quant_conv, post_quant_conv;
    float scaling_factor;
    int force_upcast;
} sd_vae_config;

typedef struct sd_vae sd_vae;

sd_status sd_vae_config_load(sd_vae_config *cfg, const sd_component *c, sd_error *err);
sd_status sd_vae_load(sd_vae **out, sd_backend *be, const sd_component *c, const char *variant, sd_error *err);
void sd_vae_free(sd_vae *v);
const sd_vae_config *sd_vae_get_config(const sd_vae *v);
/* The image-to-latent scale: 2^(levels-1) (8 for SDXL). */
int sd_vae_scale_factor(const sd_vae *v);

/* z [B, latent, h, w] (already divided by scaling_factor) -> image [B, out, 8h, 8w]. */
sd_status sd_vae_decode(sd_vae *v, const sd_tensor *z, sd_tensor *image, sd_error *err);
/* image [B, in, H, W] in [-1, 1] -> moments [B, 2*latent, H/8, W/8]
 * (mean, then logvar, unclamped: see sd_vae_moments_split). */
sd_status sd_vae_encode(sd_vae *v, const sd_tensor *image, sd_tensor *moments, sd_error *err);
/* Host-side split of moments into mean and std (logvar clamped to [-30, 20],
 * std = exp(0.5 logvar)), as DiagonalGaussianDistribution does. */
void sd_vae_moments_split(const float *moments, int64_t B, int64_t L, int64_t hw, float *mean, float *std,
                          float *logvar);

/* Names and shapes of every parameter the config implies, in load order
 * (what sdxl random-model writes). */
#include "worker/param_loader.h"
sd_status sd_vae_list_params(const sd_component *c, sd_param_list *list, sd_error *err);

#endif
