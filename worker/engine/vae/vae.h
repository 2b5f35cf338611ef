/* vae.h - diffusers' AutoencoderKL (encoder, decoder, mid-block attention,
 * quant_conv / post_quant_conv), built from config.json. */
#ifndef SDXL_WORKER_VAE_H
#define SDXL_WORKER_VAE_H

#include "common/model_folder.h"
#include "kernels/ops.h"

#define SD_VAE_MAX_LEVELS 8
/* resnets per level at most (layers_per_block + 1 in the decoder) */
#define SD_VAE_MAX_RES 17
#define SD_VAE_MAX_LATENT 64

typedef struct {
    int in_channels, out_channels, latent_channels, layers_per_block, levels, groups, sample_size;
    int block_out[SD_VAE_MAX_LEVELS];
    int mid_attention, quant_conv, post_quant_conv;
    float scaling_factor;
    int force_upcast;
    /* latents_mean and latents_std, when the config sets both (a VAE with
     * per-channel latent statistics; SDXL's own are null) */
    int has_latents_stats;
    float latents_mean[SD_VAE_MAX_LATENT], latents_std[SD_VAE_MAX_LATENT];
} sd_vae_config;

typedef struct sd_vae sd_vae;

sd_status sd_vae_config_load(sd_vae_config *cfg, const sd_component *c, sd_error *err);
/* The same from a parsed config.json (cfg zeroed by the caller). */
sd_status sd_vae_config_parse(sd_vae_config *cfg, const sd_json_doc *d, sd_error *err);
/* the halves a process runs: img2img encodes, the final stage decodes */
enum { SD_VAE_ENCODER = 1, SD_VAE_DECODER = 2, SD_VAE_BOTH = 3 };

/* Loads both halves. */
sd_status sd_vae_load(sd_vae **out, sd_backend *be, const sd_component *c, const char *variant, sd_error *err);
/* Loads the parts asked for (SD_VAE_* bits); the others' tensors are only
 * checked to be the model's, and encoding or decoding with a part not
 * loaded is an error. */
sd_status sd_vae_load_parts(sd_vae **out, sd_backend *be, const sd_component *c, const char *variant, int parts,
                           sd_error *err);
/* The backend its weights live on (tensors it takes must be there). */
sd_backend *sd_vae_backend(const sd_vae *v);
void sd_vae_free(sd_vae *v);
const sd_vae_config *sd_vae_get_config(const sd_vae *v);
/* The image-to-latent scale: 2^(levels-1) (8 for SDXL). */
int sd_vae_scale_factor(const sd_vae *v);

/* The pipeline's latents [B, latent, h, w] (host) as the decoder takes them,
 * in place, as diffusers' SDXL pipelines compute it in float32:
 * x / scaling_factor, or x * std / scaling_factor + mean with latent stats. */
void sd_vae_latents_for_decoder(const sd_vae_config *c, float *x, int64_t batch, int64_t plane);
/* The encoder's sampled latents as the pipeline holds them, in place:
 * x * scaling_factor, or (x - mean) * scaling_factor / std with latent stats. */
void sd_vae_latents_from_encoder(const sd_vae_config *c, float *x, int64_t batch, int64_t plane);

/* z [B, latent, h, w] (already as sd_vae_latents_for_decoder leaves it) -> image [B, out, 8h, 8w]. */
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
#include "worker/engine/weights/param_loader.h"
sd_status sd_vae_list_params(const sd_component *c, sd_param_list *list, sd_error *err);

#endif
