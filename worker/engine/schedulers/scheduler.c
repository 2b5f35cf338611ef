/* scheduler.c - see scheduler.h. Each expression mirrors diffusers v0.24's
 * float32 tensor code (0-d tensors for per-step scalars), or numpy's float64
 * where diffusers builds its tables with numpy. */
#include "worker/engine/schedulers/scheduler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void sd_scheduler_free(sd_scheduler *s)
{
    free(s->prev_output);
    s->prev_output = NULL;
}

sd_status sd_scheduler_init(sd_scheduler *s, const sd_json_doc *cfg, int kind, sd_error *err)
{
    memset(s, 0, sizeof *s);
    if (kind >= 0) {
        s->kind = (sd_sched_kind)kind;
    } else {
        const char *cls = sd_json_string_or(cfg, "_class_name", "EulerDiscreteScheduler");
        sd_sched_kind k;
        if (sd_sched_kind_parse(cls, &k) != 0)
            return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: scheduler class '%s' is not supported", cfg->path, cls);
        /* a DPMSolverMultistep config without karras sigmas would be another
         * scheduler than the one we implement */
        if (k == SD_SCHED_KIND_DPMPP_2M_KARRAS && !sd_json_bool_or(cfg, "use_karras_sigmas", 0))
            return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: DPMSolverMultistepScheduler without use_karras_sigmas is not "
                           "supported", cfg->path);
        s->kind = k;
    }
    /* Absent, it means what the diffusers of the goldens (0.24) did: DPM++
     * ends on sigma_min, Euler on 0. Euler ending on sigma_min is not built. */
    int dpm = s->kind == SD_SCHED_KIND_DPMPP_2M_KARRAS;
    const char *final_sigmas = sd_json_string_or(cfg, "final_sigmas_type", dpm ? "sigma_min" : "zero");
    if (strcmp(final_sigmas, "zero") && (strcmp(final_sigmas, "sigma_min") || !dpm))
        return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: final_sigmas_type '%s' is not supported for %s (%s)", cfg->path,
                       final_sigmas, sd_sched_kind_class(s->kind), dpm ? "sigma_min, zero" : "zero");
    s->final_sigma_zero = dpm && !strcmp(final_sigmas, "zero");
    s->num_train = (int)sd_json_int_or(cfg, "num_train_timesteps", 1000);
    if (s->num_train < 2 || s->num_train > SD_SCHED_MAX_STEPS)
        return sd_fail(err, SD_ERR_INVALID, "%s: num_train_timesteps %d out of range", cfg->path, s->num_train);
    s->steps_offset = (int)sd_json_int_or(cfg, "steps_offset", 0);
    const char *spacing = sd_json_string_or(cfg, "timestep_spacing", "leading");
    s->spacing = !strcmp(spacing, "leading") ? 0 : !strcmp(spacing, "linspace") ? 1 : !strcmp(spacing, "trailing") ? 2 : -1;
    if (s->spacing < 0)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: timestep_spacing '%s' is not supported", cfg->path, spacing);
    const char *pred = sd_json_string_or(cfg, "prediction_type", "epsilon");
    if (strcmp(pred, "epsilon"))
        return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: prediction_type '%s' is not supported (epsilon)", cfg->path, pred);
    const char *sched = sd_json_string_or(cfg, "beta_schedule", "linear");
    float b0 = (float)sd_json_double_or(cfg, "beta_start", 0.0001), b1 = (float)sd_json_double_or(cfg, "beta_end", 0.02);
    int N = s->num_train;
    float betas[SD_SCHED_MAX_STEPS];
    /* torch.linspace(start, end, N) in float32: start + step*i for the first
     * half, end - step*(N-1-i) for the second */
    float start, end;
    if (!strcmp(sched, "scaled_linear")) {
        start = (float)sqrt(sd_json_double_or(cfg, "beta_start", 0.0001));
        end = (float)sqrt(sd_json_double_or(cfg, "beta_end", 0.02));
    } else if (!strcmp(sched, "linear")) {
        start = b0;
        end = b1;
    } else {
        return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: beta_schedule '%s' is not supported", cfg->path, sched);
    }
    float step = (end - start) / (float)(N - 1);
    for (int i = 0; i < N; i++) {
        float v = i < N / 2 ? start + step * (float)i : end - step * (float)(N - 1 - i);
        betas[i] = !strcmp(sched, "scaled_linear") ? v * v : v;
    }
    float acc = 1.0f;
    for (int i = 0; i < N; i++) {
        acc = acc * (1.0f - betas[i]);
        s->alphas_cumprod[i] = acc;
    }
    s->final_alpha_cumprod = sd_json_bool_or(cfg, "set_alpha_to_one", 1) ? 1.0f : s->alphas_cumprod[0];
    s->step_index = -1;
    return SD_OK;
}

int sd_scheduler_order(const sd_scheduler *s)
{
    (void)s;
    return 1;
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

/* diffusers' _sigma_to_t: piecewise-linear inverse of the log sigma table */
static double sigma_to_t(const sd_scheduler *s, double sigma, const float *log_sigmas)
{
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    int N = s->num_train, low = 0;
    for (int i = 0; i < N; i++)
        if (log_sigma - (double)log_sigmas[i] >= 0)
            low = i;
    if (low > N - 2)
        low = N - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = (lo - log_sigma) / (lo - hi);
    w = w < 0 ? 0 : w > 1 ? 1 : w;
    return (1.0 - w) * low + w * (low + 1);
}

sd_status sd_scheduler_set_timesteps(sd_scheduler *s, int steps, sd_error *err)
{
    if (steps < 1 || steps > s->num_train)
        return sd_fail(err, SD_ERR_INVALID, "steps must be 1 to %d, not %d", s->num_train, steps);
    int N = s->num_train;
    s->n = steps;
    s->step_index = -1;
    s->lower_order_nums = 0;
    free(s->prev_output);
    s->prev_output = NULL;
    if (s->kind == SD_SCHED_KIND_DPMPP_2M_KARRAS) {
        /* sigmas by Karras et al. (rho 7) between the table's ends, timesteps
         * from the inverse table, rounded half to even as numpy does */
        float log_sigmas[SD_SCHED_MAX_STEPS];
        for (int i = 0; i < N; i++)
            log_sigmas[i] = logf(train_sigma(s, i));
        double smin = train_sigma(s, 0), smax = train_sigma(s, N - 1);
        double min_inv = pow(smin, 1.0 / 7.0), max_inv = pow(smax, 1.0 / 7.0);
        int n = 0;
        for (int i = 0; i < steps; i++) {
            double sg = pow(max_inv + linspace01(i, steps) * (min_inv - max_inv), 7.0);
            double t = nearbyint(sigma_to_t(s, sg, log_sigmas));
            /* np.unique keeps the first of repeated timesteps */
            int dup = 0;
            for (int k = 0; k < n && !dup; k++)
                dup = s->timesteps[k] == (float)t;
            s->sigmas[i] = (float)sg;
            if (!dup)
                s->timesteps[n++] = (float)t;
        }
        s->sigmas[steps] = s->final_sigma_zero ? 0.0f : s->sigmas[steps - 1];
        s->n = n;
        s->init_noise_sigma = 1.0f;
        return SD_OK;
    }
    /* timesteps by spacing */
    for (int i = 0; i < steps; i++) {
        double t;
        if (s->spacing == 0) {
            int ratio = N / steps;
            t = (double)((steps - 1 - i) * ratio) + s->steps_offset;
        } else if (s->spacing == 1) {
            t = (double)(N - 1) * linspace01(steps - 1 - i, steps);
        } else {
            double ratio = (double)N / steps;
            t = nearbyint((double)N - i * ratio) - 1;
        }
        s->timesteps[i] = (float)t;
    }
    if (s->kind == SD_SCHED_KIND_DDIM) {
        for (int i = 0; i < steps; i++)
            s->timesteps[i] = (float)(int)s->timesteps[i];
        s->init_noise_sigma = 1.0f;
        return SD_OK;
    }
    /* Euler family: sigma(t) by linear interpolation in the table (np.interp) */
    float maxs = 0.0f;
    for (int i = 0; i < steps; i++) {
        double t = s->timesteps[i];
        int lo = (int)floor(t);
        double fr = t - lo;
        double sg = lo >= N - 1 ? train_sigma(s, N - 1)
                                : (double)train_sigma(s, lo) + fr * ((double)train_sigma(s, lo + 1) - train_sigma(s, lo));
        s->sigmas[i] = (float)sg;
        maxs = s->sigmas[i] > maxs ? s->sigmas[i] : maxs;
    }
    s->sigmas[steps] = 0.0f;
    s->init_noise_sigma = s->spacing == 0 ? sqrtf(maxs * maxs + 1.0f) : maxs;
    return SD_OK;
}

static sd_status init_step_index(sd_scheduler *s, float t, sd_error *err)
{
    if (s->step_index >= 0)
        return SD_OK;
    /* diffusers takes the second match if the timestep repeats */
    int first = -1, second = -1;
    for (int i = 0; i < s->n; i++)
        if (s->timesteps[i] == t) {
            if (first < 0)
                first = i;
            else if (second < 0)
                second = i;
        }
    if (first < 0)
        return sd_fail(err, SD_ERR_INVALID, "scheduler: timestep %g is not in the schedule", (double)t);
    s->step_index = second >= 0 ? second : first;
    return SD_OK;
}

sd_status sd_scheduler_input_divisor(sd_scheduler *s, float t, float *divisor, sd_error *err)
{
    if (s->kind == SD_SCHED_KIND_DDIM || s->kind == SD_SCHED_KIND_DPMPP_2M_KARRAS) {
        *divisor = 1.0f;
        return SD_OK;
    }
    SD_TRY(init_step_index(s, t, err));
    float sigma = s->sigmas[s->step_index];
    *divisor = sqrtf(sigma * sigma + 1.0f);
    return SD_OK;
}

static void draw_noise(sd_torch_gen *gen, float *noise, size_t n)
{
    sd_torch_randn(gen, noise, n);
}

/* The Euler step both Euler schedulers share: x0 = x - sigma * eps,
 * derivative d = (x - x0) / sigma, x += d * dt (diffusers' order of
 * operations); x0 is kept if asked for. */
static void euler_update(float *x, const float *mo, float sigma, float dt, float *x0, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float pred = x[i] - sigma * mo[i];
        if (x0)
            x0[i] = pred;
        float d = (x[i] - pred) / sigma;
        x[i] = x[i] + d * dt;
    }
}

static sd_status step_euler(sd_scheduler *s, const float *mo, float *x, size_t n, sd_torch_gen *gen, float *x0,
                            sd_error *err)
{
    float sigma = s->sigmas[s->step_index];
    if (gen) { /* diffusers draws (and, with s_churn 0, ignores) noise here */
        float *noise = malloc(n * sizeof *noise);
        if (!noise)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        draw_noise(gen, noise, n);
        free(noise);
    }
    float sigma_hat = sigma * (0.0f + 1.0f);
    euler_update(x, mo, sigma_hat, s->sigmas[s->step_index + 1] - sigma_hat, x0, n);
    return SD_OK;
}

static sd_status step_euler_a(sd_scheduler *s, const float *mo, float *x, size_t n, sd_torch_gen *gen, float *x0,
                              sd_error *err)
{
    if (!gen)
        return sd_fail(err, SD_ERR_INVALID, "euler_a needs a random generator");
    float sigma = s->sigmas[s->step_index], st = s->sigmas[s->step_index + 1];
    float sf2 = sigma * sigma, st2 = st * st;
    float sigma_up = sqrtf(st2 * (sf2 - st2) / sf2);
    float sigma_down = sqrtf(st2 - sigma_up * sigma_up);
    float *noise = malloc(n * sizeof *noise);
    if (!noise)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    euler_update(x, mo, sigma, sigma_down - sigma, x0, n);
    draw_noise(gen, noise, n);
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] + noise[i] * sigma_up;
    free(noise);
    return SD_OK;
}

/* alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t */
static void alpha_sigma(float sigma, float *a, float *sg)
{
    *a = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *sg = sigma * *a;
}

static sd_status step_dpmpp(sd_scheduler *s, const float *mo, float *x, size_t n, float *x0_out, sd_error *err)
{
    int i = s->step_index;
    int last = i == s->n - 1, second_last = i == s->n - 2;
    int lower_final = last && (s->n < 15 || s->final_sigma_zero), lower_second = second_last && s->n < 15;
    float a_s0, s_s0;
    alpha_sigma(s->sigmas[i], &a_s0, &s_s0);
    /* convert_model_output: x0 prediction */
    float *m0 = malloc(n * sizeof *m0);
    if (!m0)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n; k++)
        m0[k] = (x[k] - s_s0 * mo[k]) / a_s0;
    if (x0_out)
        memcpy(x0_out, m0, n * sizeof *m0);
    float a_t, s_t;
    alpha_sigma(s->sigmas[i + 1], &a_t, &s_t);
    /* a final sigma of 0 gives lambda_t = +inf, h = +inf, c1 = 0, c2 = -1:
     * the first-order update then returns the x0 prediction, as in diffusers */
    float lambda_t = logf(a_t) - logf(s_t), lambda_s0 = logf(a_s0) - logf(s_s0);
    float h = lambda_t - lambda_s0;
    float c1 = s_t / s_s0, c2 = a_t * (expf(-h) - 1.0f);
    if (s->lower_order_nums < 1 || lower_final || !s->prev_output) {
        for (size_t k = 0; k < n; k++)
            x[k] = c1 * x[k] - c2 * m0[k];
    } else {
        (void)lower_second; /* order 2 is the highest here: the same update */
        float a_s1, s_s1;
        alpha_sigma(s->sigmas[i - 1], &a_s1, &s_s1);
        float lambda_s1 = logf(a_s1) - logf(s_s1);
        float h0 = lambda_s0 - lambda_s1;
        float r0 = h0 / h, inv_r0 = 1.0f / r0, half_c2 = 0.5f * c2;
        const float *m1 = s->prev_output;
        for (size_t k = 0; k < n; k++) {
            float d1 = inv_r0 * (m0[k] - m1[k]);
            x[k] = (c1 * x[k] - c2 * m0[k]) - half_c2 * d1;
        }
    }
    if (s->prev_len != n) {
        free(s->prev_output);
        s->prev_output = malloc(n * sizeof(float));
        s->prev_len = n;
        if (!s->prev_output) {
            free(m0);
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        }
    }
    memcpy(s->prev_output, m0, n * sizeof *m0);
    free(m0);
    if (s->lower_order_nums < 2)
        s->lower_order_nums++;
    return SD_OK;
}

static float ddim_alpha(const sd_scheduler *s, int t)
{
    return t >= 0 ? s->alphas_cumprod[t] : s->final_alpha_cumprod;
}

static sd_status step_ddim(sd_scheduler *s, const float *mo, float t, float *x, size_t n, float *x0)
{
    int ti = (int)t, prev = ti - s->num_train / s->n;
    float a_t = ddim_alpha(s, ti), a_prev = ddim_alpha(s, prev);
    float b_t = 1.0f - a_t;
    float sq_b = sqrtf(b_t), sq_a = sqrtf(a_t), sq_ap = sqrtf(a_prev);
    float dir = sqrtf(1.0f - a_prev - 0.0f);
    for (size_t k = 0; k < n; k++) {
        float pred = (x[k] - sq_b * mo[k]) / sq_a;
        if (x0)
            x0[k] = pred;
        x[k] = sq_ap * pred + dir * mo[k];
    }
    return SD_OK;
}

sd_status sd_scheduler_step(sd_scheduler *s, const float *model_output, float t, float *sample, size_t n,
                            sd_torch_gen *gen, float *pred_x0, sd_error *err)
{
    if (s->kind == SD_SCHED_KIND_DDIM)
        return step_ddim(s, model_output, t, sample, n, pred_x0);
    SD_TRY(init_step_index(s, t, err));
    if (s->step_index >= s->n)
        return sd_fail(err, SD_ERR_INVALID, "scheduler: stepped past the last timestep");
    sd_status st;
    switch (s->kind) {
    case SD_SCHED_KIND_EULER:
        st = step_euler(s, model_output, sample, n, gen, pred_x0, err);
        break;
    case SD_SCHED_KIND_EULER_ANCESTRAL:
        st = step_euler_a(s, model_output, sample, n, gen, pred_x0, err);
        break;
    default:
        st = step_dpmpp(s, model_output, sample, n, pred_x0, err);
        break;
    }
    if (st == SD_OK)
        s->step_index++;
    return st;
}

sd_status sd_scheduler_add_noise(const sd_scheduler *s, const float *x0, const float *noise, float t, float *out,
                                 size_t n, sd_error *err)
{
    if (s->kind == SD_SCHED_KIND_DDIM || s->kind == SD_SCHED_KIND_DPMPP_2M_KARRAS) {
        int ti = (int)t;
        if (ti < 0 || ti >= s->num_train)
            return sd_fail(err, SD_ERR_INVALID, "add_noise: timestep %g out of range", (double)t);
        float a = s->alphas_cumprod[ti];
        float sa = sqrtf(a), sb = sqrtf(1.0f - a);
        for (size_t k = 0; k < n; k++)
            out[k] = sa * x0[k] + sb * noise[k];
        return SD_OK;
    }
    int idx = -1;
    for (int i = 0; i < s->n && idx < 0; i++)
        if (s->timesteps[i] == t)
            idx = i;
    if (idx < 0)
        return sd_fail(err, SD_ERR_INVALID, "add_noise: timestep %g is not in the schedule", (double)t);
    float sigma = s->sigmas[idx];
    for (size_t k = 0; k < n; k++)
        out[k] = x0[k] + noise[k] * sigma;
    return SD_OK;
}
