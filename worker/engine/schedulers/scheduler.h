/* scheduler.h - the noise schedulers of diffusers (as diffusers 0.42 runs
 * them) that SDXL pipelines use, on host fp32 arrays, built from a
 * scheduler_config.json as `Class.from_config(config, **overrides)` builds
 * them:
 *   - EulerDiscreteScheduler (SDXL's default; Karras sigmas, final sigma)
 *   - EulerAncestralDiscreteScheduler
 *   - DPMSolverMultistepScheduler (DPM++ 2M and 3M, SDE or not, Karras
 *     sigmas or not, midpoint or Heun, lower-order final steps)
 *   - DDIMScheduler (eta, clip_sample)
 *   - LMSDiscreteScheduler (order 4, Karras sigmas)
 *   - HeunDiscreteScheduler (order 2: two model evaluations a step, its
 *     timesteps interleaved, 2N - 1 of them)
 *   - DPMSolverSDEScheduler (DPM++ SDE: order 2 as Heun, a midpoint in log
 *     sigma, noise from a Brownian tree seeded with noise_sampler_seed;
 *     brownian_tree.h)
 *   - UniPCMultistepScheduler (predictor-corrector, bh1/bh2, orders 1-3,
 *     the x0 form; its small linear systems solved as LAPACK does)
 *   - LCMScheduler (for LCM-LoRAs and LCM-distilled UNets: the
 *     distillation's timesteps, consistency boundary scalings, fresh noise
 *     between steps)
 * each with epsilon or v prediction, zero-SNR rescaled betas, linspace,
 * leading or trailing spacing. Every config key the class reads is followed
 * or refused with a message naming it (schedulers_config.c); keys the class
 * does not read are ignored, as diffusers ignores them. Arithmetic follows
 * diffusers' float32 tensor expressions operation by operation (no fused
 * multiply-adds), or numpy's float64 where diffusers builds its tables with
 * numpy, so results match to the last bits. */
#ifndef SDXL_WORKER_SCHEDULER_H
#define SDXL_WORKER_SCHEDULER_H

#include <stddef.h>

#include "common/error.h"
#include "common/gen_params.h" /* sd_sched_kind: the names users pick */
#include "common/json_config.h"
#include "common/torch_rng.h"

#define SD_SCHED_MAX_STEPS 1000

typedef enum { SD_SCHED_EULER, SD_SCHED_EULER_A, SD_SCHED_DPM, SD_SCHED_DDIM, SD_SCHED_LMS, SD_SCHED_HEUN,
               SD_SCHED_LCM, SD_SCHED_UNIPC, SD_SCHED_DPM_SDE } sd_sched_class;
typedef enum { SD_SPACING_LEADING, SD_SPACING_LINSPACE, SD_SPACING_TRAILING } sd_sched_spacing;

typedef struct {
    sd_sched_class cls;
    int num_train;
    int steps_offset;
    sd_sched_spacing spacing;
    int v_prediction;   /* prediction_type "v_prediction" (else "epsilon") */
    int zero_snr;       /* rescale_betas_zero_snr */
    int karras;         /* use_karras_sigmas (Euler, DPM) */
    double sigma_min, sigma_max; /* Euler's Karras bounds from the config (0: the schedule's ends) */
    int final_sigma_zero; /* final_sigmas_type "zero" (else "sigma_min"; Euler, DPM) */
    /* DPM */
    int solver_order;     /* 1, 2 or 3 */
    int sde;              /* algorithm_type "sde-dpmsolver++" (else "dpmsolver++") */
    int solver_heun;      /* solver_type "heun" (else "midpoint") */
    int lower_order_final, euler_at_final;
    /* UniPC (solver_order, lower_order_final above) */
    int bh1;           /* solver_type "bh1" (else "bh2") */
    int this_order;    /* the predictor's order at the last step */
    int have_last;     /* last_sample held (outputs[3]) */
    /* LCM */
    int original_steps;
    float timestep_scaling;
    /* DDIM (and Heun, LCM) */
    int clip_sample;
    float clip_sample_range;
    float eta;            /* the pipeline's eta (DDIM only) */
    float alphas_cumprod[SD_SCHED_MAX_STEPS];
    float final_alpha_cumprod; /* DDIM: set_alpha_to_one */
    /* after set_timesteps */
    int n; /* timesteps to run (2 * steps - 1 for Heun) */
    float timesteps[2 * SD_SCHED_MAX_STEPS];
    float sigmas[2 * SD_SCHED_MAX_STEPS + 1]; /* Euler family, DPM, LMS, Heun */
    float init_noise_sigma;
    int step_index;  /* -1 until the first scale/step */
    int begin_index; /* set_begin_index (img2img, the refiner's start), -1 none */
    /* DPM: the last solver_order x0 predictions, oldest first; LMS: the last
     * 4 derivatives, oldest first */
    float *outputs[4];
    int nderiv; /* LMS: derivatives kept */
    /* Heun: the first-order half's derivative, dt and sample (outputs[0..1]) */
    int heun_second;
    float heun_dt;
    /* DPM++ SDE: the first half's sample (outputs[0]) and midpoint sigma,
     * its noise's Brownian tree (made at the first step) and seed */
    int sde_second;
    float mid_point_sigma;
    struct sd_brownian_tree *tree;
    uint64_t noise_seed;
    int noise_seed_fixed; /* the config's noise_sampler_seed, which the pipeline's seed does not replace */
    size_t out_len;
    int lower_order_nums;
    /* what ran, for the image metadata: "DPMSolverMultistepScheduler(...)" */
    char description[256];
} sd_scheduler;

/* Reads scheduler_config.json; kind < 0 keeps the config's class and
 * settings, else the named sampler's class with its overrides (sd_sched_kind:
 * "dpmpp_2m_sde_karras" is DPMSolverMultistepScheduler.from_config(config,
 * algorithm_type="sde-dpmsolver++", use_karras_sigmas=True)). eta: DDIM's
 * (0; anything else is refused for the other classes). */
sd_status sd_scheduler_init(sd_scheduler *s, const sd_json_doc *cfg, int kind, float eta, sd_error *err);
void sd_scheduler_free(sd_scheduler *s);
sd_status sd_scheduler_set_timesteps(sd_scheduler *s, int steps, sd_error *err);
/* set_begin_index: the first step the pipeline runs (img2img's strength,
 * the refiner's denoising_start); add_noise and the first step use it. */
void sd_scheduler_set_begin_index(sd_scheduler *s, int index);
/* The factor scale_model_input divides by: sqrt(sigma^2 + 1) for the Euler
 * family, 1 otherwise, for timestep t, initialising the step index as
 * diffusers does. */
sd_status sd_scheduler_input_divisor(sd_scheduler *s, float t, float *divisor, sd_error *err);
/* One step: sample <- prev_sample. gen supplies the noise of the stochastic
 * samplers (Euler ancestral, DPM++ SDE, DDIM with eta > 0), drawn as
 * diffusers draws it from the pipeline's generator; pred_x0 (may be NULL)
 * receives the predicted original sample. */
sd_status sd_scheduler_step(sd_scheduler *s, const float *model_output, float t, float *sample, size_t n,
                            sd_torch_gen *gen, float *pred_x0, sd_error *err);
/* add_noise at timestep t (img2img): x0 + noise * sigma for the Euler
 * family, alpha_t x0 + sigma_t noise from the step's sigma for DPM,
 * sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise for DDIM. */
sd_status sd_scheduler_add_noise(const sd_scheduler *s, const float *x0, const float *noise, float t, float *out,
                                 size_t n, sd_error *err);
/* The sampler's name as A1111 and ComfyUI users know it ("DPM++ 2M SDE
 * Karras", "Euler a"), whatever picked it (a name or the folder's config). */
const char *sd_scheduler_label(const sd_scheduler *s, char *buf, size_t len);
/* The Brownian tree's seed of DPM++ SDE (diffusers' noise_sampler_seed):
 * the pipeline gives each item's seed, as A1111 and ComfyUI seed their
 * Brownian noise; a noise_sampler_seed in the config stays. diffusers
 * itself leaves it None and draws one from torch's global generator, so its
 * images are the same only with noise_sampler_seed set to the seed. */
void sd_scheduler_set_noise_seed(sd_scheduler *s, uint64_t seed);
/* scheduler.order (2 for Heun and DPM++ SDE, 1 for the others) */
int sd_scheduler_order(const sd_scheduler *s);

#endif
