/* unet_step.h - the UNet forward of a denoising loop, run many times with
 * the same shapes: its inputs live in tensors allocated once, its
 * activations in an arena planned from the first step (kernels/arena.h), so
 * no step after the first allocates device memory, and, where the backend
 * can capture graphs and the caller asks for it, the third step is captured
 * and every later one relaunches that graph (one launch instead of ~1,500).
 * Steps 1 and 2 run eagerly: the first records the arena plan, the second
 * brings the backend's own scratch cache to the state every later step
 * starts from, so the captured addresses are the ones each replay sees.
 * The results are the same as sd_unet_forward's, bit for bit: the same ops
 * on the same data, only the memory behind them is placed differently. */
#ifndef SDXL_WORKER_UNET_STEP_H
#define SDXL_WORKER_UNET_STEP_H

#include "worker/engine/unet/unet.h"

typedef struct sd_unet_step sd_unet_step;

typedef struct {
    long long steps;        /* run so far */
    long long graph_steps;  /* of which relaunched as a captured graph */
    size_t arena_bytes;     /* the activation block */
    size_t peak_live_bytes; /* its lower bound: most activation bytes alive at once */
    int buffers;            /* activations per step */
} sd_unet_step_info;

/* A step over sample [B, in, h, w] conditioned on ctx [B, S, cross],
 * text_embeds [B, P] and time ids [B, nids] (P and nids 0 for a model
 * without text_time). It lives as long as the shapes stay: a pipeline keeps
 * it from image to image, so the arena is planned and the graph captured
 * once, not per image. use_graph: capture and relaunch where the backend
 * supports it. */
sd_status sd_unet_step_create(sd_unet_step **out, sd_unet *u, int64_t B, int64_t h, int64_t w, int64_t S, int64_t P,
                              int nids, int use_graph, sd_error *err);
/* 1 if s was made for this UNet and these shapes */
int sd_unet_step_fits(const sd_unet_step *s, const sd_unet *u, int64_t B, int64_t h, int64_t w, int64_t S, int64_t P,
                      int nids, int use_graph);
/* The conditioning of the next steps (host fp32): ctx [B, S, cross],
 * text_embeds [B, P], time_ids [B, nids]; the last two NULL without text_time. */
sd_status sd_unet_step_condition(sd_unet_step *s, const float *ctx, const float *text_embeds, const float *time_ids,
                                 sd_error *err);
/* sample (host fp32 [B, in, h, w]) at timesteps[B] -> pred (host fp32 [B, out, h, w]) */
sd_status sd_unet_step_run(sd_unet_step *s, const float *sample, const float *timesteps, float *pred,
                           sd_error *err);
void sd_unet_step_get_info(const sd_unet_step *s, sd_unet_step_info *info);
void sd_unet_step_free(sd_unet_step *s);

#endif
