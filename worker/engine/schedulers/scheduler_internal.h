/* scheduler_internal.h - what scheduler.c and scheduler_solvers.c share. */
#ifndef SDXL_WORKER_SCHEDULER_INTERNAL_H
#define SDXL_WORKER_SCHEDULER_INTERNAL_H

#include "worker/engine/schedulers/scheduler.h"

/* the Euler family's predicted x0 at sigma (epsilon or v prediction) */
float sd_sched_euler_x0(const sd_scheduler *s, float x, float mo, float sigma);
/* alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t */
void sd_sched_alpha_sigma(float sigma, float *a, float *sg);
/* log(alpha_t) - log(sigma_t) */
float sd_sched_lambda_of(float sigma);
/* n values of the item's generator (the batch's draw when one generator serves a batch); NULL after an error */
/* The solver's history buffers: `count` arrays of n floats, zeroed whenever n
 * changes (a new latent size restarts the history). */
sd_status sd_sched_ensure_outputs(sd_scheduler *s, size_t n, int count, sd_error *err);

float *sd_sched_noise_from(sd_torch_gen *gen, size_t n, sd_error *err);

sd_status sd_sched_step_lms(sd_scheduler *s, const float *mo, float *x, size_t n, float *x0, sd_error *err);
sd_status sd_sched_step_heun(sd_scheduler *s, const float *mo, float *x, size_t n, float *x0, sd_error *err);
sd_status sd_sched_step_lcm(sd_scheduler *s, const float *mo, float t, float *x, size_t n, sd_torch_gen *gen,
                            float *x0, sd_error *err);
sd_status sd_sched_step_dpm_sde(sd_scheduler *s, const float *mo, float *x, size_t n, sd_torch_gen *gen, float *x0,
                                sd_error *err);
sd_status sd_sched_step_unipc(sd_scheduler *s, const float *mo, float *x, size_t n, float *x0, sd_error *err);

#endif
