/* scheduler.h - the noise schedulers of diffusers (v0.24 semantics) that
 * SDXL pipelines use, on host fp32 arrays: Euler (SDXL's default), Euler
 * ancestral, DPM++ 2M with Karras sigmas, DDIM. Built from a
 * scheduler_config.json, with the class optionally overridden by name.
 * Arithmetic follows diffusers' float32 tensor expressions operation by
 * operation (no fused multiply-adds), so results match to the last bits. */
#ifndef SDXL_WORKER_SCHEDULER_H
#define SDXL_WORKER_SCHEDULER_H

#include <stddef.h>

#include "common/error.h"
#include "common/gen_params.h" /* sd_sched_kind: the names users pick */
#include "common/json_config.h"
#include "common/torch_rng.h"


#define SD_SCHED_MAX_STEPS 1000

typedef struct {
    sd_sched_kind kind;
    int num_train;
    int steps_offset;
    int spacing; /* 0 leading, 1 linspace, 2 trailing */
    float alphas_cumprod[SD_SCHED_MAX_STEPS];
    float final_alpha_cumprod; /* DDIM */
    /* DPM++: final_sigmas_type "zero" (diffusers >= 0.26's default, read
     * from the config) ends on sigma 0 with a first-order step; absent or
     * "sigma_min" ends on the last sigma, as diffusers 0.24 did */
    int final_sigma_zero;
    /* after set_timesteps */
    int n;
    float timesteps[SD_SCHED_MAX_STEPS];
    float sigmas[SD_SCHED_MAX_STEPS + 1]; /* Euler family and DPM++ */
    float init_noise_sigma;
    int step_index; /* -1 until the first scale/step */
    /* DPM++ 2M history */
    float *prev_output;
    size_t prev_len;
    int lower_order_nums;
} sd_scheduler;


/* Reads scheduler_config.json (betas, spacing, offset, prediction type);
 * kind < 0 keeps the config's class. */
sd_status sd_scheduler_init(sd_scheduler *s, const sd_json_doc *cfg, int kind, sd_error *err);
void sd_scheduler_free(sd_scheduler *s);
sd_status sd_scheduler_set_timesteps(sd_scheduler *s, int steps, sd_error *err);
/* The factor scale_model_input multiplies... divides by: returns the
 * divisor (sqrt(sigma^2 + 1) for the Euler family, 1 otherwise) for
 * timestep t, initialising the step index as diffusers does. */
sd_status sd_scheduler_input_divisor(sd_scheduler *s, float t, float *divisor, sd_error *err);
/* One step: sample <- prev_sample. gen supplies Euler ancestral's noise (and
 * the noise Euler draws and discards, as diffusers does); pred_x0 (may be
 * NULL) receives the predicted original sample where the scheduler has one. */
sd_status sd_scheduler_step(sd_scheduler *s, const float *model_output, float t, float *sample, size_t n,
                            sd_torch_gen *gen, float *pred_x0, sd_error *err);
/* add_noise: out = x0 + noise * sigma(t) (Euler family); DDIM and DPM use
 * sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise. */
sd_status sd_scheduler_add_noise(const sd_scheduler *s, const float *x0, const float *noise, float t, float *out,
                                 size_t n, sd_error *err);
/* scheduler.order (1 for all four) */
int sd_scheduler_order(const sd_scheduler *s);

#endif
