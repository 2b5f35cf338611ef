/* scheduler.c - see scheduler.h: set_timesteps, steps and add_noise (the
 * config is read in scheduler_config.c). Each expression mirrors diffusers
 * 0.42's float32 tensor code (0-d tensors for per-step scalars; `x ** 0.5`
 * is torch's sqrt), or numpy's float64 where diffusers builds its tables
 * with numpy. */
#include "worker/engine/schedulers/scheduler.h"
#include "worker/engine/schedulers/brownian_tree.h"
#include "worker/engine/schedulers/scheduler_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sd_scheduler_free(sd_scheduler *s)
{
    for (int i = 0; i < 4; i++) {
        free(s->outputs[i]);
        s->outputs[i] = NULL;
    }
    s->out_len = 0;
    s->nderiv = 0;
    s->have_last = 0;
    sd_brownian_tree_free(s->tree);
    s->tree = NULL;
    s->sde_second = 0;
}

int sd_scheduler_order(const sd_scheduler *s)
{
    return s->cls == SD_SCHED_HEUN || s->cls == SD_SCHED_DPM_SDE ? 2 : 1;
}

void sd_scheduler_set_noise_seed(sd_scheduler *s, uint64_t seed)
{
    if (!s->noise_seed_fixed)
        s->noise_seed = seed;
}

/* sqrt((1 - ac) / ac) in float32, as diffusers builds its sigma table */
static float train_sigma(const sd_scheduler *s, int t)
{
    float ac = s->alphas_cumprod[t];
    return sqrtf((1.0f - ac) / ac);
}

/* np.linspace(0, 1, n)[i] */
static double linspace01(int i, int n)
{
    if (n == 1)
        return 0.0;
    if (i == n - 1)
        return 1.0;
    return (double)i * (1.0 / (double)(n - 1));
}

/* np.linspace(a, b, n)[i]: a + i*step, the last exactly b */
static double linspace(double a, double b, int i, int n)
{
    if (n == 1)
        return a;
    if (i == n - 1)
        return b;
    return a + (double)i * ((b - a) / (double)(n - 1));
}

/* diffusers' _sigma_to_t: piecewise-linear inverse of the log sigma table */
static double sigma_to_t(const sd_scheduler *s, double sigma, const double *log_sigmas)
{
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    int N = s->num_train, low = 0;
    for (int i = 0; i < N; i++)
        if (log_sigma - log_sigmas[i] >= 0)
            low = i;
    if (low > N - 2)
        low = N - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = (lo - log_sigma) / (lo - hi);
    w = w < 0 ? 0 : w > 1 ? 1 : w;
    return (1.0 - w) * low + w * (low + 1);
}

/* Karras et al.'s sigmas (rho 7) from sigma_max down to sigma_min */
static void karras(double smin, double smax, int steps, double *out)
{
    double min_inv = pow(smin, 1.0 / 7.0), max_inv = pow(smax, 1.0 / 7.0);
    for (int i = 0; i < steps; i++)
        out[i] = pow(max_inv + linspace01(i, steps) * (min_inv - max_inv), 7.0);
}

/* np.interp(t, arange(N), table) */
static double interp_sigma(const sd_scheduler *s, double t)
{
    int N = s->num_train;
    if (t <= 0)
        return train_sigma(s, 0);
    if (t >= N - 1)
        return train_sigma(s, N - 1);
    int lo = (int)floor(t);
    double fr = t - lo;
    return (double)train_sigma(s, lo) + fr * ((double)train_sigma(s, lo + 1) - train_sigma(s, lo));
}

/* The Euler family's and DDIM's spacings (float64, as numpy) */
static void spaced_timesteps(const sd_scheduler *s, int steps, double *t)
{
    int N = s->num_train;
    for (int i = 0; i < steps; i++) {
        if (s->spacing == SD_SPACING_LEADING)
            t[i] = (double)((steps - 1 - i) * (N / steps)) + s->steps_offset;
        else if (s->spacing == SD_SPACING_LINSPACE)
            t[i] = linspace(0, N - 1, steps - 1 - i, steps);
        else
            t[i] = nearbyint((double)N - i * ((double)N / steps)) - 1;
    }
}

/* DPMSolverMultistep's own spacings: steps + 1 points, the last dropped */
static void dpm_timesteps(const sd_scheduler *s, int steps, double *t)
{
    int N = s->num_train, last = N; /* lambda_min_clipped -inf clips nothing */
    for (int i = 0; i < steps; i++) {
        if (s->spacing == SD_SPACING_LINSPACE)
            t[i] = nearbyint(linspace(0, last - 1, steps - i, steps + 1));
        else if (s->spacing == SD_SPACING_LEADING)
            t[i] = nearbyint((double)(steps - i) * (double)(last / (steps + 1))) + s->steps_offset;
        else
            t[i] = nearbyint((double)last - i * ((double)N / steps)) - 1;
    }
}

/* DPMSolverSDEScheduler.set_timesteps: the Euler family's spacings in
 * float64 (no float32 step), Karras or interpolated sigmas, then each step
 * after the first twice with the second visit at the log-sigma midpoint's
 * timestep: t0 m0 t1 m1 ... t(N-1), sigmas s0 s1 s1 ... s(N-1) s(N-1) 0 */
static sd_status sde_timesteps(sd_scheduler *s, int steps, double *t, double *sg, const double *log_sigmas)
{
    spaced_timesteps(s, steps, t);
    for (int i = 0; i < steps; i++)
        sg[i] = interp_sigma(s, t[i]);
    if (s->karras) {
        karras(sg[steps - 1], sg[0], steps, sg);
        for (int i = 0; i < steps; i++)
            t[i] = sigma_to_t(s, sg[i], log_sigmas);
    }
    float maxs = 0.0f;
    s->timesteps[0] = (float)t[0];
    s->sigmas[0] = (float)sg[0];
    for (int i = 1; i < steps; i++) {
        /* _second_order_timesteps, in float64 from the float64 sigmas */
        double ta = -log(sg[i - 1]), tb = -log(sg[i]);
        double mid = exp(-(ta + (tb - ta) * 0.5));
        s->timesteps[2 * i - 1] = (float)sigma_to_t(s, mid, log_sigmas);
        s->timesteps[2 * i] = (float)t[i];
        s->sigmas[2 * i - 1] = s->sigmas[2 * i] = (float)sg[i];
    }
    s->sigmas[2 * steps - 1] = 0.0f;
    for (int i = 0; i < 2 * steps; i++)
        maxs = s->sigmas[i] > maxs ? s->sigmas[i] : maxs;
    s->n = 2 * steps - 1;
    s->sde_second = 0;
    s->init_noise_sigma = s->spacing != SD_SPACING_LEADING ? maxs : sqrtf(maxs * maxs + 1.0f);
    return SD_OK;
}

sd_status sd_scheduler_set_timesteps(sd_scheduler *s, int steps, sd_error *err)
{
    if (steps < 1 || steps > s->num_train)
        return sd_fail(err, SD_ERR_INVALID, "steps must be 1 to %d, not %d", s->num_train, steps);
    int N = s->num_train;
    s->n = steps;
    s->step_index = -1;
    s->begin_index = -1;
    s->lower_order_nums = 0;
    sd_scheduler_free(s);
    static __thread double t[SD_SCHED_MAX_STEPS], sg[SD_SCHED_MAX_STEPS], log_sigmas[SD_SCHED_MAX_STEPS];
    for (int i = 0; i < N; i++)
        log_sigmas[i] = log((double)train_sigma(s, i));
    if (s->cls == SD_SCHED_LCM) {
        /* the distillation's timesteps k*i - 1 (i = 1..original steps),
         * from the last, at floor(linspace(0, len, steps, endpoint=False)) */
        int orig = s->original_steps, k = N / orig;
        if (steps > orig)
            return sd_fail(err, SD_ERR_INVALID, "steps: LCM takes at most original_inference_steps (%d), not %d", orig,
                           steps);
        for (int i = 0; i < steps; i++) {
            long idx = (long)floor((double)i * ((double)orig / steps));
            s->timesteps[i] = (float)((orig - idx) * k - 1);
        }
        s->init_noise_sigma = 1.0f;
        return SD_OK;
    }
    if (s->cls == SD_SCHED_DDIM) {
        spaced_timesteps(s, steps, t);
        for (int i = 0; i < steps; i++)
            s->timesteps[i] = (float)(long long)(s->spacing == SD_SPACING_LINSPACE ? nearbyint(t[i]) : t[i]);
        s->init_noise_sigma = 1.0f;
        return SD_OK;
    }
    if (s->cls == SD_SCHED_DPM || s->cls == SD_SCHED_UNIPC) {
        if (s->karras) { /* over the whole table, timesteps by the inverse table, rounded */
            double smin = train_sigma(s, 0), smax = train_sigma(s, N - 1);
            if (s->cls == SD_SCHED_UNIPC && s->sigma_min > 0) /* UniPC's config may bound them */
                smin = s->sigma_min;
            if (s->cls == SD_SCHED_UNIPC && s->sigma_max > 0)
                smax = s->sigma_max;
            karras(smin, smax, steps, sg);
            for (int i = 0; i < steps; i++)
                t[i] = nearbyint(sigma_to_t(s, sg[i], log_sigmas));
        } else {
            dpm_timesteps(s, steps, t);
            for (int i = 0; i < steps; i++)
                sg[i] = interp_sigma(s, t[i]);
        }
        s->init_noise_sigma = 1.0f;
    } else if (s->cls == SD_SCHED_DPM_SDE) {
        return sde_timesteps(s, steps, t, sg, log_sigmas);
    } else {
        spaced_timesteps(s, steps, t);
        for (int i = 0; i < steps; i++) {
            t[i] = (float)t[i]; /* diffusers' Euler timesteps are float32 before the lookup */
            sg[i] = interp_sigma(s, t[i]);
        }
        if (s->karras) { /* between the interpolated ends, or the config's bounds; float timesteps */
            double smin = s->sigma_min > 0 ? s->sigma_min : sg[steps - 1];
            double smax = s->sigma_max > 0 ? s->sigma_max : sg[0];
            karras(smin, smax, steps, sg);
            for (int i = 0; i < steps; i++)
                t[i] = sigma_to_t(s, sg[i], log_sigmas);
        }
    }
    float maxs = 0.0f;
    for (int i = 0; i < steps; i++) {
        s->timesteps[i] = (float)t[i];
        s->sigmas[i] = (float)sg[i];
        maxs = s->sigmas[i] > maxs ? s->sigmas[i] : maxs;
    }
    s->sigmas[steps] = s->final_sigma_zero ? 0.0f : train_sigma(s, 0);
    if (!s->final_sigma_zero && s->cls == SD_SCHED_UNIPC && s->karras) /* UniPC ends on its last Karras sigma */
        s->sigmas[steps] = (float)sg[steps - 1];
    if (s->cls == SD_SCHED_HEUN) { /* every step after the first twice: t0 t1 t1 t2 t2 ..., sigmas s0 s1 s1 ... 0 */
        for (int i = steps - 1; i >= 1; i--) {
            s->timesteps[2 * i] = s->timesteps[i];
            s->timesteps[2 * i - 1] = s->timesteps[i];
        }
        s->sigmas[2 * steps - 1] = s->sigmas[steps];
        for (int i = steps - 1; i >= 1; i--) {
            s->sigmas[2 * i] = s->sigmas[i];
            s->sigmas[2 * i - 1] = s->sigmas[i];
        }
        s->n = 2 * steps - 1;
        s->heun_second = 0;
    }
    if (s->cls != SD_SCHED_DPM && s->cls != SD_SCHED_UNIPC) { /* the Euler family, LMS and Heun */
        maxs = s->sigmas[steps] > maxs ? s->sigmas[steps] : maxs;
        s->init_noise_sigma = s->spacing != SD_SPACING_LEADING ? maxs : sqrtf(maxs * maxs + 1.0f);
    }
    return SD_OK;
}

void sd_scheduler_set_begin_index(sd_scheduler *s, int index)
{
    s->begin_index = index;
}

/* diffusers' index_for_timestep: the second match when the timestep
 * repeats, the last index when it is absent; or the begin index when the
 * pipeline set one */
static void init_step_index(sd_scheduler *s, float t)
{
    if (s->step_index >= 0)
        return;
    if (s->begin_index >= 0) {
        s->step_index = s->begin_index;
        return;
    }
    int first = -1, second = -1;
    for (int i = 0; i < s->n; i++)
        if (s->timesteps[i] == t) {
            if (first < 0)
                first = i;
            else if (second < 0)
                second = i;
        }
    s->step_index = second >= 0 ? second : first >= 0 ? first : s->n - 1;
}

sd_status sd_scheduler_input_divisor(sd_scheduler *s, float t, float *divisor, sd_error *err)
{
    (void)err;
    if (s->cls == SD_SCHED_DDIM || s->cls == SD_SCHED_DPM || s->cls == SD_SCHED_LCM || s->cls == SD_SCHED_UNIPC) {
        *divisor = 1.0f;
        return SD_OK;
    }
    /* the Euler family and LMS; DPM++ SDE's second half at its midpoint */
    init_step_index(s, t);
    float sigma = s->cls == SD_SCHED_DPM_SDE && s->sde_second ? s->mid_point_sigma : s->sigmas[s->step_index];
    *divisor = sqrtf(sigma * sigma + 1.0f);
    return SD_OK;
}

float *sd_sched_noise_from(sd_torch_gen *gen, size_t n, sd_error *err)
{
    if (!gen) {
        sd_fail(err, SD_ERR_INVALID, "this sampler draws noise and needs a random generator");
        return NULL;
    }
    float *noise = malloc(n * sizeof *noise);
    if (!noise) {
        sd_fail(err, SD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    sd_torch_randn_item(gen, noise, n);
    return noise;
}

/* the Euler family's predicted x0 at sigma */
float sd_sched_euler_x0(const sd_scheduler *s, float x, float mo, float sigma)
{
    if (!s->v_prediction)
        return x - sigma * mo;
    float sq = sigma * sigma + 1.0f;
    return mo * (-sigma / sqrtf(sq)) + x / sq;
}

/* The Euler step Euler and Euler ancestral share: x0 predicted at sigma,
 * derivative d = (x - x0) / sigma, x += d * dt (diffusers' order of
 * operations); x0 kept if asked for. */
static void euler_update(const sd_scheduler *s, float *x, const float *mo, float sigma, float dt, float *x0, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float pred = sd_sched_euler_x0(s, x[i], mo[i], sigma);
        if (x0)
            x0[i] = pred;
        float d = (x[i] - pred) / sigma;
        x[i] = x[i] + d * dt;
    }
}

static sd_status step_euler(sd_scheduler *s, const float *mo, float *x, size_t n, float *x0)
{
    float sigma = s->sigmas[s->step_index], sigma_hat = sigma * (0.0f + 1.0f);
    euler_update(s, x, mo, sigma_hat, s->sigmas[s->step_index + 1] - sigma_hat, x0, n);
    return SD_OK;
}

static sd_status step_euler_a(sd_scheduler *s, const float *mo, float *x, size_t n, sd_torch_gen *gen, float *x0,
                              sd_error *err)
{
    float sigma = s->sigmas[s->step_index], st = s->sigmas[s->step_index + 1];
    float sf2 = sigma * sigma, st2 = st * st;
    float sigma_up = sqrtf(st2 * (sf2 - st2) / sf2);
    float sigma_down = sqrtf(st2 - sigma_up * sigma_up);
    euler_update(s, x, mo, sigma, sigma_down - sigma, x0, n);
    float *noise = sd_sched_noise_from(gen, n, err);
    if (!noise)
        return err->code;
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] + noise[i] * sigma_up;
    free(noise);
    return SD_OK;
}

sd_status sd_sched_ensure_outputs(sd_scheduler *s, size_t n, int count, sd_error *err)
{
    if (s->out_len == n)
        return SD_OK;
    sd_scheduler_free(s);
    for (int k = 0; k < count; k++)
        if (!(s->outputs[k] = calloc(n, sizeof(float))))
            return sd_fail(err, SD_ERR_NOMEM, "out of memory: %d scheduler history buffers of %zu floats", count, n);
    s->out_len = n;
    return SD_OK;
}

/* alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t */
void sd_sched_alpha_sigma(float sigma, float *a, float *sg)
{
    *a = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *sg = sigma * *a;
}

float sd_sched_lambda_of(float sigma)
{
    float a, sg;
    sd_sched_alpha_sigma(sigma, &a, &sg);
    return logf(a) - logf(sg);
}

/* One multistep DPM-Solver++ update of the given order (1-3), SDE or not,
 * midpoint or Heun, as diffusers' *_order_update functions write it. */
static void dpm_update(const sd_scheduler *s, int order, float *x, const float *noise, size_t n)
{
    int i = s->step_index;
    float a_t, s_t, a_s0, s_s0;
    sd_sched_alpha_sigma(s->sigmas[i + 1], &a_t, &s_t);
    sd_sched_alpha_sigma(s->sigmas[i], &a_s0, &s_s0);
    float lambda_t = logf(a_t) - logf(s_t), lambda_s0 = logf(a_s0) - logf(s_s0);
    float h = lambda_t - lambda_s0;
    const float *m0 = s->outputs[2], *m1 = s->outputs[1], *m2 = s->outputs[0];
    float em = expf(-h) - 1.0f, e2 = 1.0f - expf(-2.0f * h);
    float noise_c = s_t * sqrtf(1.0f - expf(-2.0f * h));
    if (order == 1) {
        /* a final sigma of 0: lambda_t = +inf, h = +inf, and the update
         * returns the x0 prediction, as in diffusers */
        float c1 = s_t / s_s0, c2 = a_t * em;
        float c1e = s_t / s_s0 * expf(-h), c2e = a_t * e2;
        for (size_t k = 0; k < n; k++)
            x[k] = s->sde ? (c1e * x[k] + c2e * m0[k]) + noise_c * noise[k] : c1 * x[k] - c2 * m0[k];
        return;
    }
    float lambda_s1 = sd_sched_lambda_of(s->sigmas[i - 1]);
    float h_0 = lambda_s0 - lambda_s1, r0 = h_0 / h;
    if (order == 2) {
        float inv_r0 = 1.0f / r0;
        float c1 = s_t / s_s0, c2 = a_t * em, half_c2 = 0.5f * c2;
        float heun_c = a_t * (em / h + 1.0f);
        float c1e = s_t / s_s0 * expf(-h), c2e = a_t * e2, half_c2e = 0.5f * c2e;
        float heun_ce = a_t * (e2 / (-2.0f * h) + 1.0f);
        for (size_t k = 0; k < n; k++) {
            float d1 = inv_r0 * (m0[k] - m1[k]);
            if (!s->sde)
                x[k] = s->solver_heun ? (c1 * x[k] - c2 * m0[k]) + heun_c * d1 : (c1 * x[k] - c2 * m0[k]) - half_c2 * d1;
            else
                x[k] = s->solver_heun ? ((c1e * x[k] + c2e * m0[k]) + heun_ce * d1) + noise_c * noise[k]
                                      : ((c1e * x[k] + c2e * m0[k]) + half_c2e * d1) + noise_c * noise[k];
        }
        return;
    }
    float lambda_s2 = sd_sched_lambda_of(s->sigmas[i - 2]);
    float h_1 = lambda_s1 - lambda_s2, r1 = h_1 / h;
    float inv_r0 = 1.0f / r0, inv_r1 = 1.0f / r1, w = r0 / (r0 + r1), inv_r01 = 1.0f / (r0 + r1);
    float c1 = s_t / s_s0, c2 = a_t * em, c3 = a_t * (em / h + 1.0f), c4 = a_t * ((expf(-h) - 1.0f + h) / (h * h) - 0.5f);
    float c1e = s_t / s_s0 * expf(-h), c2e = a_t * e2, c3e = a_t * (e2 / (-2.0f * h) + 1.0f);
    float two_h = 2.0f * h;
    float c4e = a_t * ((1.0f - expf(-2.0f * h) - 2.0f * h) / (two_h * two_h) - 0.5f);
    for (size_t k = 0; k < n; k++) {
        float d1_0 = inv_r0 * (m0[k] - m1[k]), d1_1 = inv_r1 * (m1[k] - m2[k]);
        float d1 = d1_0 + w * (d1_0 - d1_1), d2 = inv_r01 * (d1_0 - d1_1);
        if (!s->sde)
            x[k] = ((c1 * x[k] - c2 * m0[k]) + c3 * d1) - c4 * d2;
        else
            x[k] = (((c1e * x[k] + c2e * m0[k]) + c3e * d1) + c4e * d2) + noise_c * noise[k];
    }
}

static sd_status step_dpm(sd_scheduler *s, const float *mo, float *x, size_t n, sd_torch_gen *gen, float *x0_out,
                          sd_error *err)
{
    int i = s->step_index, len = s->n;
    int lower_final = i == len - 1 && (s->euler_at_final || (s->lower_order_final && len < 15) || s->final_sigma_zero);
    int lower_second = i == len - 2 && s->lower_order_final && len < 15;
    sd_status st = sd_sched_ensure_outputs(s, n, 3, err);
    if (st != SD_OK)
        return st;
    /* convert_model_output: the x0 prediction, into the newest slot */
    float *oldest = s->outputs[0];
    s->outputs[0] = s->outputs[1];
    s->outputs[1] = s->outputs[2];
    s->outputs[2] = oldest;
    float a_s0, s_s0;
    sd_sched_alpha_sigma(s->sigmas[i], &a_s0, &s_s0);
    float *m0 = s->outputs[2];
    for (size_t k = 0; k < n; k++)
        m0[k] = s->v_prediction ? a_s0 * x[k] - s_s0 * mo[k] : (x[k] - s_s0 * mo[k]) / a_s0;
    if (x0_out)
        memcpy(x0_out, m0, n * sizeof *m0);
    float *noise = NULL;
    if (s->sde && !(noise = sd_sched_noise_from(gen, n, err)))
        return err->code;
    int order = s->solver_order == 1 || s->lower_order_nums < 1 || lower_final ? 1
                : s->solver_order == 2 || s->lower_order_nums < 2 || lower_second ? 2
                                                                                   : 3;
    dpm_update(s, order, x, noise, n);
    free(noise);
    if (s->lower_order_nums < s->solver_order)
        s->lower_order_nums++;
    return SD_OK;
}


static float ddim_alpha(const sd_scheduler *s, int t)
{
    return t >= 0 ? s->alphas_cumprod[t] : s->final_alpha_cumprod;
}

static sd_status step_ddim(sd_scheduler *s, const float *mo, float t, float *x, size_t n, sd_torch_gen *gen, float *x0,
                           sd_error *err)
{
    int ti = (int)t, prev = ti - s->num_train / s->n;
    float a_t = ddim_alpha(s, ti), a_prev = ddim_alpha(s, prev);
    float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    float sq_b = sqrtf(b_t), sq_a = sqrtf(a_t), sq_ap = sqrtf(a_prev);
    float variance = (b_prev / b_t) * (1.0f - a_t / a_prev);
    float std = s->eta * sqrtf(variance);
    float dir = sqrtf(1.0f - a_prev - std * std);
    float r = s->clip_sample_range;
    for (size_t k = 0; k < n; k++) {
        float pred = s->v_prediction ? sq_a * x[k] - sq_b * mo[k] : (x[k] - sq_b * mo[k]) / sq_a;
        float eps = s->v_prediction ? sq_a * mo[k] + sq_b * x[k] : mo[k];
        if (s->clip_sample)
            pred = pred < -r ? -r : pred > r ? r : pred;
        if (x0)
            x0[k] = pred;
        x[k] = sq_ap * pred + dir * eps;
    }
    if (s->eta > 0.0f) {
        float *noise = sd_sched_noise_from(gen, n, err);
        if (!noise)
            return err->code;
        for (size_t k = 0; k < n; k++)
            x[k] = x[k] + std * noise[k];
        free(noise);
    }
    return SD_OK;
}

sd_status sd_scheduler_step(sd_scheduler *s, const float *model_output, float t, float *sample, size_t n,
                            sd_torch_gen *gen, float *pred_x0, sd_error *err)
{
    if (s->cls == SD_SCHED_DDIM)
        return step_ddim(s, model_output, t, sample, n, gen, pred_x0, err);
    init_step_index(s, t);
    if (s->step_index >= s->n)
        return sd_fail(err, SD_ERR_INVALID, "scheduler: stepped past the last timestep");
    sd_status st = s->cls == SD_SCHED_EULER     ? step_euler(s, model_output, sample, n, pred_x0)
                   : s->cls == SD_SCHED_EULER_A ? step_euler_a(s, model_output, sample, n, gen, pred_x0, err)
                   : s->cls == SD_SCHED_LMS     ? sd_sched_step_lms(s, model_output, sample, n, pred_x0, err)
                   : s->cls == SD_SCHED_HEUN    ? sd_sched_step_heun(s, model_output, sample, n, pred_x0, err)
                   : s->cls == SD_SCHED_LCM     ? sd_sched_step_lcm(s, model_output, t, sample, n, gen, pred_x0, err)
                   : s->cls == SD_SCHED_UNIPC   ? sd_sched_step_unipc(s, model_output, sample, n, pred_x0, err)
                   : s->cls == SD_SCHED_DPM_SDE ? sd_sched_step_dpm_sde(s, model_output, sample, n, gen, pred_x0, err)
                                                : step_dpm(s, model_output, sample, n, gen, pred_x0, err);
    if (st == SD_OK)
        s->step_index++;
    return st;
}

sd_status sd_scheduler_add_noise(const sd_scheduler *s, const float *x0, const float *noise, float t, float *out,
                                 size_t n, sd_error *err)
{
    if (s->cls == SD_SCHED_DDIM || s->cls == SD_SCHED_LCM) { /* DDPM's forward process at t */
        int ti = (int)t;
        if (ti < 0 || ti >= s->num_train)
            return sd_fail(err, SD_ERR_INVALID, "add_noise: timestep %g out of range", (double)t);
        float a = s->alphas_cumprod[ti];
        float sa = sqrtf(a), sb = sqrtf(1.0f - a);
        for (size_t k = 0; k < n; k++)
            out[k] = sa * x0[k] + sb * noise[k];
        return SD_OK;
    }
    /* the begin index the pipeline set, else the timestep's index */
    int idx = s->begin_index;
    for (int i = 0; i < s->n && idx < 0; i++)
        if (s->timesteps[i] == t)
            idx = i;
    if (idx < 0)
        return sd_fail(err, SD_ERR_INVALID, "add_noise: timestep %g is not in the schedule", (double)t);
    float sigma = s->sigmas[idx];
    if (s->cls == SD_SCHED_DPM || s->cls == SD_SCHED_UNIPC) {
        float a, sg;
        sd_sched_alpha_sigma(sigma, &a, &sg);
        for (size_t k = 0; k < n; k++)
            out[k] = a * x0[k] + sg * noise[k];
        return SD_OK;
    }
    for (size_t k = 0; k < n; k++)
        out[k] = x0[k] + noise[k] * sigma;
    return SD_OK;
}

const char *sd_scheduler_label(const sd_scheduler *s, char *buf, size_t len)
{
    switch (s->cls) {
    case SD_SCHED_EULER:
        snprintf(buf, len, "Euler%s", s->karras ? " Karras" : "");
        break;
    case SD_SCHED_EULER_A:
        snprintf(buf, len, "Euler a");
        break;
    case SD_SCHED_DPM:
        snprintf(buf, len, "DPM++ %s%s%s", s->solver_order == 3 ? "3M" : s->solver_order == 2 ? "2M" : "1S",
                 s->sde ? " SDE" : "", s->karras ? " Karras" : "");
        break;
    case SD_SCHED_DDIM:
        snprintf(buf, len, "DDIM");
        break;
    case SD_SCHED_LMS:
        snprintf(buf, len, "LMS%s", s->karras ? " Karras" : "");
        break;
    case SD_SCHED_HEUN:
        snprintf(buf, len, "Heun%s", s->karras ? " Karras" : "");
        break;
    case SD_SCHED_LCM:
        snprintf(buf, len, "LCM");
        break;
    case SD_SCHED_UNIPC:
        snprintf(buf, len, "UniPC%s", s->karras ? " Karras" : "");
        break;
    case SD_SCHED_DPM_SDE:
        snprintf(buf, len, "DPM++ SDE%s", s->karras ? " Karras" : "");
        break;
    }
    return buf;
}
