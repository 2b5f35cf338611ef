/* pipeline.h - SDXL generation as diffusers' StableDiffusionXLPipeline and
 * StableDiffusionXLImg2ImgPipeline (v0.24) do it, split into the three stage
 * functions the cluster runs apart (DESIGN.md): text -> unet -> final.
 * Each stage takes host fp32 arrays and returns host fp32 arrays, so the
 * stages can run in one process or in three, with the same bits.
 *
 * One item = one image. Randomness comes from torch's CPU generator seeded
 * with the item's seed: the initial latents (torch.randn [1,4,h,w]), the VAE
 * sample and noise of img2img, and the schedulers' draws. */
#ifndef SDXL_WORKER_PIPELINE_H
#define SDXL_WORKER_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/gen_params.h"
#include "common/model_folder.h"
#include "common/model_spec.h"
#include "kernels/ops.h"
#include "worker/engine/text/clip_text.h"
#include "worker/engine/text/clip_tokenizer.h"
#include "worker/engine/schedulers/scheduler.h"
#include "worker/engine/unet/unet.h"
#include "worker/engine/vae/vae.h"


/* Everything a process needs for the stages it runs. Load with the flags of
 * the stages wanted; the cluster's workers each load one stage. */
typedef struct {
    sd_backend *be;      /* UNet / text compute */
    sd_backend *f32_be;  /* the upcast VAE's (stage_backends.h); NULL when be is f32 */
    sd_model_folder base, refiner;
    int has_refiner;
    sd_clip_tokenizer *tok1, *tok2, *rtok2;
    sd_clip_text *te1, *te2, *rte2;
    sd_unet *unet, *runet;
    /* the base's VAE: vae decodes (final stage), vae_enc encodes init images
     * (UNet stage); the same object when one backend serves both, NULL where
     * the process does not run that stage */
    sd_vae *vae, *vae_enc;
    /* the refiner's VAE: it decodes when a refiner is loaded, as the refiner
     * pipeline outputs the image in diffusers' ensemble of experts (NULL: a
     * refiner folder without a VAE; the base's decodes) */
    sd_vae *rvae;
    sd_json_doc sched_cfg, rsched_cfg;
    int force_zeros, r_force_zeros, r_aesthetics;
    /* the model is an img2img pipeline with aesthetic-score time ids (the
     * refiner used on its own, as its model card does) */
    int base_aesthetics;
    int base_img2img; /* the model's pipeline class is StableDiffusionXLImg2ImgPipeline */
    /* --vae: the component that replaces the models' own VAEs */
    sd_component vae_swap;
    int has_vae_swap;
    /* what the image metadata records of --vae and --lora: file names and
     * content hashes ("" when none) */
    char vae_note[1100], lora_note[SD_MAX_LORAS * 1100];
    char variant[16]; /* the weight files' variant ("fp16"; "" the plain files) */
    /* hash of configs and weight headers, VAE and LoRAs, "+" the refiner's:
     * which model made an image (sd_model_spec_identity) */
    char identity[80];
    /* relaunch UNet steps as captured graphs where the backend can (CUDA):
     * set by SDXL_CUDA_GRAPH=1 until a GPU run has checked it (see README) */
    int unet_graph;
    /* the base's and the refiner's replayed steps (worker/engine/unet/unet_step.h), kept
     * from image to image while the shapes stay: planned and captured once */
    struct sd_unet_step *unet_steps[2];
} sd_pipeline;

/* the stages a process runs (bits) */
typedef enum { SD_STAGE_TEXT = 1, SD_STAGE_UNET = 2, SD_STAGE_FINAL = 4, SD_STAGE_ALL = 7 } sd_stage;

/* f32_be: the backend the VAE upcasts to (sd_stage_backends' f32_be; NULL
 * when be computes in f32). */
sd_status sd_pipeline_load(sd_pipeline *p, sd_backend *be, sd_backend *f32_be, const sd_model_spec *spec, int stages,
                           sd_error *err);
/* The base's VAE, for its config and scale factor: whichever half this
 * process loaded (NULL when it runs neither the UNet nor the final stage). */
const sd_vae *sd_pipeline_base_vae(const sd_pipeline *p);
void sd_pipeline_free(sd_pipeline *p);
/* The output size the pipeline will use for these params. */
void sd_pipeline_size(const sd_pipeline *p, const sd_gen_params *g, int *width, int *height);

/* ---- text stage ---- */
typedef struct {
    int cfg;        /* 1: [negative, positive] rows; 0: positive only */
    int S, D, P;    /* sequence length, embedding width, pooled width */
    float *embeds;  /* [1 + cfg, S, D] */
    float *pooled;  /* [1 + cfg, P] */
    int rS, rD, rP; /* refiner conditioning (when a refiner is loaded); rS differs from S
                     * only with --long-prompts (its own chunk count) */
    float *r_embeds, *r_pooled;
} sd_text_result;

sd_status sd_stage_text(sd_pipeline *p, const sd_gen_params *g, sd_text_result *out, sd_error *err);
void sd_text_result_free(sd_text_result *t);

/* ---- classifier-free guidance split over two processes ----
 * The engine knows no transport: a worker pair (worker/daemon/cfg_pair.h)
 * hands the denoising loop this hook. Each side computes one half of every
 * UNet pass and exchange() gathers both halves' predictions. */
typedef struct {
    int rank; /* 0: the unconditional half, 1: the text half */
    /* mine: this rank's n prediction floats; all: 2n floats, filled with
     * [rank 0's, rank 1's]; both sides call it once per step */
    sd_status (*exchange)(void *user, const float *mine, float *all, size_t n, sd_error *err);
    void *user;
} sd_cfg_split;

/* ---- progress and intermediate tensors ---- */
typedef struct {
    /* after each denoising step: stage "base" or "refiner" */
    void (*on_step)(void *user, const char *stage, int step, int steps);
    /* named latents for --save-latents: noise, initial, step_000..., refiner_step_000..., final */
    void (*on_latents)(void *user, const char *name, const float *data, const int64_t shape[4]);
    void *user;
    /* when set, the base denoising computes only this side's half of
     * classifier-free guidance and exchanges predictions through it */
    const sd_cfg_split *cfg_split;
} sd_gen_hooks;

/* ---- unet stage: base denoising ---- */
typedef struct {
    int64_t shape[4]; /* [1, 4, h, w] */
    float *latents;
    int refiner_pending; /* the final stage continues with the refiner */
} sd_latent_result;

sd_status sd_stage_unet(sd_pipeline *p, const sd_gen_params *g, const sd_text_result *text,
                        const sd_gen_hooks *hooks, sd_latent_result *out, sd_error *err);
void sd_latent_result_free(sd_latent_result *l);

/* ---- final stage: refiner steps (if any) and the VAE decode ---- */
typedef struct {
    int width, height;
    float *image;    /* [3, H, W] decoder output in [-1, 1] */
    uint8_t *rgb;    /* [H, W, 3], as diffusers rounds: round((x / 2 + 0.5).clamp(0, 1) * 255) */
} sd_image_result;

sd_status sd_stage_final(sd_pipeline *p, const sd_gen_params *g, const sd_text_result *text,
                         const sd_latent_result *lat, const sd_gen_hooks *hooks, sd_image_result *out,
                         sd_error *err);
void sd_image_result_free(sd_image_result *r);

/* Converts the decoder output to 8-bit RGB exactly as diffusers does. */
void sd_image_to_rgb8(const float *chw, int width, int height, uint8_t *rgb);

/* What CLIP's 77 tokens cut from g's prompts (diffusers warns with it):
 * the dropped text ("" none; "prompt_2: ..." for the second prompt). */
sd_status sd_pipeline_truncation(const sd_pipeline *p, const sd_gen_params *g, char *out, size_t len, sd_error *err);

/* The base's sampler for g as it runs: its A1111 label ("DPM++ 2M Karras")
 * and a description naming the class and settings (image metadata). */
sd_status sd_pipeline_sampler(const sd_pipeline *p, const sd_gen_params *g, char *label, size_t label_len, char *desc,
                              size_t desc_len, sd_error *err);

/* Checks params against the loaded models before any work; messages name the
 * flag (--width, --steps, ...). */
sd_status sd_pipeline_check_params(const sd_pipeline *p, const sd_gen_params *g, sd_error *err);

#endif
