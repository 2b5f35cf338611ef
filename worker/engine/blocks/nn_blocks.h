/* nn_blocks.h - the diffusers building blocks shared by the UNet and the VAE:
 * ResnetBlock2D, Transformer2DModel (with BasicTransformerBlock: self-attn,
 * cross-attn, GEGLU feed-forward), the VAE's spatial self-attention, and the
 * Downsample2D / Upsample2D convolutions. Each loads under the loader's
 * current prefix by diffusers' names and runs through ops.h. */
#ifndef SDXL_WORKER_NN_BLOCKS_H
#define SDXL_WORKER_NN_BLOCKS_H

#include "kernels/ops.h"
#include "worker/engine/weights/param_loader.h"

/* ---- ResnetBlock2D ---- */
typedef struct {
    int in_ch, out_ch, groups;
    float eps;
    sd_tensor *norm1_w, *norm1_b, *conv1_w, *conv1_b, *temb_w, *temb_b, *norm2_w, *norm2_b, *conv2_w, *conv2_b,
        *short_w, *short_b;
} sd_resnet;

/* temb_ch 0: no time embedding (VAE). */
sd_status sd_resnet_load(sd_resnet *r, sd_param_loader *pl, const char *prefix, int in_ch, int out_ch, int temb_ch,
                         int groups, float eps, sd_error *err);
/* x -> *y (allocated here). temb_act = silu(emb) [B, temb_ch] or NULL. */
sd_status sd_resnet_forward(const sd_resnet *r, const sd_tensor *x, const sd_tensor *temb_act, sd_tensor *y,
                            sd_error *err);

/* ---- Transformer2DModel ---- */
typedef struct {
    sd_tensor *norm1_w, *norm1_b, *q1, *k1, *v1, *o1_w, *o1_b;
    sd_tensor *norm2_w, *norm2_b, *q2, *k2, *v2, *o2_w, *o2_b;
    sd_tensor *norm3_w, *norm3_b, *ff1_w, *ff1_b, *ff2_w, *ff2_b;
} sd_tblock;

typedef struct {
    int channels, heads, layers, groups, linear_proj, cross_dim;
    sd_tensor *norm_w, *norm_b, *proj_in_w, *proj_in_b, *proj_out_w, *proj_out_b;
    sd_tblock *blocks;
} sd_transformer2d;

sd_status sd_transformer2d_load(sd_transformer2d *t, sd_param_loader *pl, const char *prefix, int channels,
                                int heads, int layers, int cross_dim, int groups, int linear_proj, sd_error *err);
void sd_transformer2d_free(sd_transformer2d *t);
/* x [B,C,H,W] -> *y; ctx [B, S, cross_dim]. */
sd_status sd_transformer2d_forward(const sd_transformer2d *t, const sd_tensor *x, const sd_tensor *ctx,
                                   sd_tensor *y, sd_error *err);

/* ---- the VAE's mid-block attention (one head over all channels) ---- */
typedef struct {
    int channels, groups;
    float eps;
    sd_tensor *norm_w, *norm_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
} sd_spatial_attn;

sd_status sd_spatial_attn_load(sd_spatial_attn *a, sd_param_loader *pl, const char *prefix, int channels,
                               int groups, float eps, sd_error *err);
sd_status sd_spatial_attn_forward(const sd_spatial_attn *a, const sd_tensor *x, sd_tensor *y, sd_error *err);

/* ---- Downsample2D / Upsample2D (3x3 convs) ---- */
typedef struct {
    sd_tensor *w, *b;
    int vae_padding; /* VAE encoder: pad (0,1,0,1) then stride 2, no padding */
} sd_sampler;

sd_status sd_sampler_load(sd_sampler *s, sd_param_loader *pl, const char *prefix, int channels, sd_error *err);
sd_status sd_downsample_forward(const sd_sampler *s, const sd_tensor *x, sd_tensor *y, sd_error *err);
/* Upsamples to (out_h, out_w) by nearest neighbour, then the 3x3 conv. */
sd_status sd_upsample_forward(const sd_sampler *s, const sd_tensor *x, int64_t out_h, int64_t out_w, sd_tensor *y,
                              sd_error *err);

#endif
