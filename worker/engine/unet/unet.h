/* unet.h - diffusers' UNet2DConditionModel as SDXL's base and refiner use it,
 * built from its config.json: down/up block types, layers_per_block,
 * transformer_layers_per_block and attention_head_dim (read as head counts,
 * as diffusers does when num_attention_heads is null) per level,
 * use_linear_projection, the text_time additional embedding. */
#ifndef SDXL_WORKER_UNET_H
#define SDXL_WORKER_UNET_H

#include "common/model_folder.h"
#include "kernels/ops.h"

#define SD_UNET_MAX_LEVELS 8

typedef struct {
    int in_channels, out_channels, sample_size, layers_per_block, levels, groups;
    int block_out[SD_UNET_MAX_LEVELS];
    int down_cross[SD_UNET_MAX_LEVELS], up_cross[SD_UNET_MAX_LEVELS];
    int down_layers[SD_UNET_MAX_LEVELS], up_layers[SD_UNET_MAX_LEVELS]; /* transformer depth per level */
    int heads[SD_UNET_MAX_LEVELS];
    int mid_layers, cross_dim, linear_proj, flip_sin_to_cos;
    float eps, freq_shift;
    int time_embed_dim;
    int text_time;               /* addition_embed_type == "text_time" */
    int addition_time_embed_dim; /* per time id */
    int add_embed_in;            /* projection_class_embeddings_input_dim */
} sd_unet_config;

typedef struct sd_unet sd_unet;

sd_status sd_unet_config_load(sd_unet_config *cfg, const sd_component *c, sd_error *err);
/* The same from a parsed config.json (the fuzz target's entry; cfg zeroed by the caller). */
sd_status sd_unet_config_parse(sd_unet_config *cfg, const sd_json_doc *d, sd_error *err);
sd_status sd_unet_load(sd_unet **out, sd_backend *be, const sd_component *c, const char *variant, sd_error *err);
void sd_unet_free(sd_unet *u);
const sd_unet_config *sd_unet_get_config(const sd_unet *u);
/* the backend its weights live on */
sd_backend *sd_unet_backend(const sd_unet *u);
/* Number of time ids the text_time embedding expects (6 base, 5 refiner),
 * derived from the config: (add_embed_in - text_embeds dim) / addition_time_embed_dim. */
int sd_unet_time_ids(const sd_unet *u, int text_embeds_dim);

/* One forward: sample [B, in, h, w], timesteps [B] (host), ctx [B, S, cross],
 * text_embeds [B, P], time_ids [B, n] (host) -> *out [B, out, h, w]. */
sd_status sd_unet_forward(sd_unet *u, const sd_tensor *sample, const float *timesteps, const sd_tensor *ctx,
                          const sd_tensor *text_embeds, const float *time_ids, int n_time_ids, sd_tensor *out,
                          sd_error *err);

/* The same forward in two parts, for a step that is replayed (unet_step.h):
 * the host inputs, uploaded into preallocated tensors by the embed calls
 * (tproj [B, block_out[0]] from the timesteps; ids [B * n,
 * addition_time_embed_dim] from the time ids, text_time models only), and
 * the rest, which only queues device work (no transfer, no wait: it can be
 * captured as a graph). ids is NULL for models without text_time. */
sd_status sd_unet_embed_timesteps(const sd_unet *u, sd_tensor *tproj, const float *timesteps, sd_error *err);
sd_status sd_unet_embed_time_ids(const sd_unet *u, sd_tensor *ids, const float *time_ids, sd_error *err);
sd_status sd_unet_forward_prepared(sd_unet *u, const sd_tensor *sample, const sd_tensor *tproj, const sd_tensor *ctx,
                                   const sd_tensor *text_embeds, const sd_tensor *ids, sd_tensor *out, sd_error *err);

/* Names and shapes of every parameter the config implies, in load order
 * (what sdxl random-model writes). */
#include "worker/engine/weights/param_loader.h"
sd_status sd_unet_list_params(const sd_component *c, sd_param_list *list, sd_error *err);

#endif
