/* scheduler_config.c - sd_scheduler_init: a scheduler_config.json read as
 * diffusers' Class.from_config(config, **overrides) reads it. For each class
 * the keys its __init__ takes are listed with the values we implement; a key
 * the class reads with any other value is refused naming it (a different
 * sampler would otherwise run silently); keys the class does not take are
 * ignored, as from_config ignores them. Betas and alphas_cumprod are built
 * in float32 as diffusers' torch code builds them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/engine/schedulers/scheduler.h"

typedef enum {
    K_BOOL,       /* true or false */
    K_FALSE,      /* only false (the feature is not implemented) */
    K_NULL,       /* only null (absent) */
    K_NUMBER,     /* any finite number */
    K_NULL_OR_NUMBER,
    K_NULL_OR_NEG_INF, /* null: Python's -Infinity as we read it (no clipping) */
    K_INT,        /* an integer in [lo, hi] */
    K_STRING,     /* one of the '|'-separated values */
    K_TRUE,       /* only true (the other form is not implemented) */
    K_EMPTY_LIST, /* only [] or null */
} key_kind;

typedef struct {
    const char *key;
    key_kind kind;
    const char *values; /* K_STRING */
    long long lo, hi;   /* K_INT */
} key_rule;

#define END {NULL, 0, NULL, 0, 0}
static const key_rule common_keys[] = {
    {"num_train_timesteps", K_INT, NULL, 2, SD_SCHED_MAX_STEPS},
    {"beta_start", K_NUMBER, NULL, 0, 0},
    {"beta_end", K_NUMBER, NULL, 0, 0},
    {"beta_schedule", K_STRING, "linear|scaled_linear", 0, 0},
    {"trained_betas", K_NULL, NULL, 0, 0},
    {"prediction_type", K_STRING, "epsilon|v_prediction", 0, 0},
    {"timestep_spacing", K_STRING, "linspace|leading|trailing", 0, 0},
    {"steps_offset", K_INT, NULL, 0, SD_SCHED_MAX_STEPS},
    END,
};
#define ZERO_SNR {"rescale_betas_zero_snr", K_BOOL, NULL, 0, 0}
/* the sigma schedules several classes take: Karras, or the two we do not build */
#define SIGMA_SCHEDULES                                                                                             \
    {"use_karras_sigmas", K_BOOL, NULL, 0, 0}, {"use_exponential_sigmas", K_FALSE, NULL, 0, 0},                     \
    {"use_beta_sigmas", K_FALSE, NULL, 0, 0}
/* dynamic thresholding, not built; its two numbers read only with it */
#define THRESHOLDING                                                                                                \
    {"thresholding", K_FALSE, NULL, 0, 0}, {"dynamic_thresholding_ratio", K_NUMBER, NULL, 0, 0},                   \
    {"sample_max_value", K_NUMBER, NULL, 0, 0}
static const key_rule euler_keys[] = {
    ZERO_SNR,
    {"interpolation_type", K_STRING, "linear", 0, 0},
    SIGMA_SCHEDULES,
    {"sigma_min", K_NULL_OR_NUMBER, NULL, 0, 0},
    {"sigma_max", K_NULL_OR_NUMBER, NULL, 0, 0},
    {"timestep_type", K_STRING, "discrete", 0, 0},
    {"final_sigmas_type", K_STRING, "zero|sigma_min", 0, 0},
    END,
};
static const key_rule euler_a_keys[] = {ZERO_SNR, END};
static const key_rule lms_keys[] = {
    SIGMA_SCHEDULES,
    END,
};
static const key_rule dpm_keys[] = {
    ZERO_SNR,
    {"solver_order", K_INT, NULL, 1, 3},
    THRESHOLDING,
    {"algorithm_type", K_STRING, "dpmsolver++|sde-dpmsolver++", 0, 0},
    {"solver_type", K_STRING, "midpoint|heun", 0, 0},
    {"lower_order_final", K_BOOL, NULL, 0, 0},
    {"euler_at_final", K_BOOL, NULL, 0, 0},
    SIGMA_SCHEDULES,
    {"use_lu_lambdas", K_FALSE, NULL, 0, 0},
    {"use_flow_sigmas", K_FALSE, NULL, 0, 0},
    {"flow_shift", K_NUMBER, NULL, 0, 0}, /* read only with flow sigmas */
    {"final_sigmas_type", K_STRING, "zero|sigma_min", 0, 0},
    {"lambda_min_clipped", K_NULL_OR_NEG_INF, NULL, 0, 0},
    {"variance_type", K_NULL, NULL, 0, 0},
    {"use_dynamic_shifting", K_FALSE, NULL, 0, 0},
    {"time_shift_type", K_STRING, "exponential", 0, 0},
    END,
};
static const key_rule heun_keys[] = {
    SIGMA_SCHEDULES,
    {"clip_sample", K_BOOL, NULL, 0, 0},
    {"clip_sample_range", K_NUMBER, NULL, 0, 0},
    END,
};
static const key_rule dpm_sde_keys[] = {
    SIGMA_SCHEDULES,
    {"noise_sampler_seed", K_INT, NULL, 0, 0x7fffffffffffffffLL},
    END,
};
static const key_rule unipc_keys[] = {
    ZERO_SNR,
    {"solver_order", K_INT, NULL, 1, 3},
    THRESHOLDING,
    {"predict_x0", K_TRUE, NULL, 0, 0},
    {"solver_type", K_STRING, "bh1|bh2", 0, 0},
    {"lower_order_final", K_BOOL, NULL, 0, 0},
    {"disable_corrector", K_EMPTY_LIST, NULL, 0, 0},
    {"solver_p", K_NULL, NULL, 0, 0},
    SIGMA_SCHEDULES,
    {"use_flow_sigmas", K_FALSE, NULL, 0, 0},
    {"flow_shift", K_NUMBER, NULL, 0, 0},
    {"final_sigmas_type", K_STRING, "zero|sigma_min", 0, 0},
    {"use_dynamic_shifting", K_FALSE, NULL, 0, 0},
    {"time_shift_type", K_STRING, "exponential", 0, 0},
    {"sigma_min", K_NULL_OR_NUMBER, NULL, 0, 0},
    {"sigma_max", K_NULL_OR_NUMBER, NULL, 0, 0},
    {"shift_terminal", K_NULL, NULL, 0, 0},
    END,
};
static const key_rule lcm_keys[] = {
    ZERO_SNR,
    {"original_inference_steps", K_INT, NULL, 1, SD_SCHED_MAX_STEPS},
    {"clip_sample", K_BOOL, NULL, 0, 0},
    {"clip_sample_range", K_NUMBER, NULL, 0, 0},
    {"set_alpha_to_one", K_BOOL, NULL, 0, 0},
    THRESHOLDING,
    {"timestep_scaling", K_NUMBER, NULL, 0, 0},
    END,
};
static const key_rule ddim_keys[] = {
    ZERO_SNR,
    {"clip_sample", K_BOOL, NULL, 0, 0},
    {"set_alpha_to_one", K_BOOL, NULL, 0, 0},
    THRESHOLDING,
    {"clip_sample_range", K_NUMBER, NULL, 0, 0},
    END,
};
#undef END

static const struct {
    const char *cls;
    sd_sched_class c;
    const key_rule *keys;
    const char *default_spacing; /* the class's own default */
} classes[] = {
    {"EulerDiscreteScheduler", SD_SCHED_EULER, euler_keys, "linspace"},
    {"EulerAncestralDiscreteScheduler", SD_SCHED_EULER_A, euler_a_keys, "linspace"},
    {"DPMSolverMultistepScheduler", SD_SCHED_DPM, dpm_keys, "linspace"},
    {"DDIMScheduler", SD_SCHED_DDIM, ddim_keys, "leading"},
    {"LMSDiscreteScheduler", SD_SCHED_LMS, lms_keys, "linspace"},
    {"HeunDiscreteScheduler", SD_SCHED_HEUN, heun_keys, "linspace"},
    {"LCMScheduler", SD_SCHED_LCM, lcm_keys, "leading"},
    {"UniPCMultistepScheduler", SD_SCHED_UNIPC, unipc_keys, "linspace"},
    {"DPMSolverSDEScheduler", SD_SCHED_DPM_SDE, dpm_sde_keys, "linspace"},
};

static const key_rule *find_rule(const key_rule *rules, const char *key)
{
    for (int i = 0; rules[i].key; i++)
        if (!strcmp(rules[i].key, key))
            return &rules[i];
    return NULL;
}

static int in_set(const char *values, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = values; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n))
            return 1;
        p = bar ? bar + 1 : p + len;
    }
    return 0;
}

/* Checks every key the class reads; cls names the class in messages. */
static sd_status check_keys(const sd_json_doc *cfg, const char *cls, const key_rule *own, sd_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(cfg->root, key, v) {
        const key_rule *r = find_rule(common_keys, key);
        if (!r)
            r = find_rule(own, key);
        if (!r)
            continue; /* not a parameter of this class: from_config drops it */
        int ok = 1;
        switch (r->kind) {
        case K_BOOL:
            ok = json_is_boolean(v) || json_is_null(v);
            break;
        case K_FALSE:
            ok = json_is_false(v) || json_is_null(v);
            break;
        case K_NULL:
        case K_NULL_OR_NEG_INF:
            ok = json_is_null(v);
            break;
        case K_NUMBER:
            ok = json_is_number(v) || json_is_null(v);
            break;
        case K_NULL_OR_NUMBER:
            ok = json_is_null(v) || (json_is_number(v) && json_number_value(v) > 0);
            break;
        case K_INT:
            ok = json_is_null(v) || (json_is_integer(v) && json_integer_value(v) >= r->lo && json_integer_value(v) <= r->hi);
            break;
        case K_STRING:
            ok = json_is_null(v) || (json_is_string(v) && in_set(r->values, json_string_value(v)));
            break;
        case K_TRUE:
            ok = json_is_true(v) || json_is_null(v);
            break;
        case K_EMPTY_LIST:
            ok = json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0);
            break;
        }
        if (ok)
            continue;
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        const char *want = r->kind == K_BOOL             ? "true or false"
                           : r->kind == K_FALSE          ? "false (the feature is not implemented)"
                           : r->kind == K_NULL           ? "null (the feature is not implemented)"
                           : r->kind == K_NULL_OR_NEG_INF ? "-Infinity (clipping is not implemented)"
                           : r->kind == K_NUMBER         ? "a number"
                           : r->kind == K_NULL_OR_NUMBER ? "null or a positive number"
                           : r->kind == K_INT            ? "an integer in range"
                           : r->kind == K_TRUE           ? "true (the other form is not implemented)"
                           : r->kind == K_EMPTY_LIST     ? "[] (skipping corrector steps is not implemented)"
                                                         : r->values;
        sd_status st = sd_fail(err, SD_ERR_UNSUPPORTED, "%s: %s reads '%s' = %s; supported: %s", cfg->path, cls, key,
                               text ? text : "?", want);
        free(text);
        return st;
    }
    return SD_OK;
}

static int flag_or(const sd_json_doc *cfg, const char *key, int dflt)
{
    return sd_json_bool_or(cfg, key, dflt) == 1;
}

/* torch.cumprod of 1 - betas on the CPU: a float32 tensor's product is
 * accumulated in double (PyTorch's acc_type), each element rounded to float */
static void cumprod_alphas(const float *betas, int N, float *out)
{
    double acc = 1.0;
    for (int i = 0; i < N; i++) {
        acc *= (double)(1.0f - betas[i]);
        out[i] = (float)acc;
    }
}

/* diffusers' rescale_zero_terminal_snr, in float32 */
static void rescale_zero_snr(float *betas, int N)
{
    float bar_sqrt[SD_SCHED_MAX_STEPS];
    cumprod_alphas(betas, N, bar_sqrt);
    for (int i = 0; i < N; i++)
        bar_sqrt[i] = sqrtf(bar_sqrt[i]);
    float s0 = bar_sqrt[0], sT = bar_sqrt[N - 1];
    float scale = s0 / (s0 - sT);
    for (int i = 0; i < N; i++)
        bar_sqrt[i] = (bar_sqrt[i] - sT) * scale;
    float prev = 0.0f;
    for (int i = 0; i < N; i++) {
        float bar = bar_sqrt[i] * bar_sqrt[i];
        float alpha = i == 0 ? bar : bar / prev;
        betas[i] = 1.0f - alpha;
        prev = bar;
    }
}

static sd_status build_alphas(sd_scheduler *s, const sd_json_doc *cfg, sd_error *err)
{
    const char *sched = sd_json_string_or(cfg, "beta_schedule", "linear");
    int N = s->num_train, scaled = !strcmp(sched, "scaled_linear");
    float start, end;
    if (scaled) {
        start = (float)sqrt(sd_json_double_or(cfg, "beta_start", 0.0001));
        end = (float)sqrt(sd_json_double_or(cfg, "beta_end", 0.02));
    } else {
        start = (float)sd_json_double_or(cfg, "beta_start", 0.0001);
        end = (float)sd_json_double_or(cfg, "beta_end", 0.02);
    }
    /* torch.linspace(start, end, N) in float32 as its vectorized CPU kernel
     * computes it, with fused multiply-adds: start + step*i for the first
     * half, end - step*(N-1-i) for the second (fmaf is correctly rounded on
     * any CPU, so this is the same everywhere) */
    float betas[SD_SCHED_MAX_STEPS], step = (end - start) / (float)(N - 1);
    for (int i = 0; i < N; i++) {
        float v = i < N / 2 ? fmaf(step, (float)i, start) : fmaf(-step, (float)(N - 1 - i), end);
        betas[i] = scaled ? v * v : v;
    }
    if (s->zero_snr)
        rescale_zero_snr(betas, N);
    cumprod_alphas(betas, N, s->alphas_cumprod);
    /* close to 0 without being 0, so the first sigma is finite (DDIM keeps 0;
     * LMS has no zero-SNR) */
    if (s->zero_snr &&
        (s->cls == SD_SCHED_EULER || s->cls == SD_SCHED_EULER_A || s->cls == SD_SCHED_DPM || s->cls == SD_SCHED_UNIPC))
        s->alphas_cumprod[N - 1] = 0x1p-24f;
    (void)err;
    return SD_OK;
}

sd_status sd_scheduler_init(sd_scheduler *s, const sd_json_doc *cfg, int kind, float eta, sd_error *err)
{
    memset(s, 0, sizeof *s);
    const sd_sched_kind_info *ki = kind >= 0 ? sd_sched_kind_get((sd_sched_kind)kind) : NULL;
    if (kind >= 0 && !ki)
        return sd_fail(err, SD_ERR_INVALID, "scheduler kind %d is unknown", kind);
    const char *cls = ki ? ki->cls : sd_json_string_or(cfg, "_class_name", "EulerDiscreteScheduler");
    int ci = -1;
    for (int i = 0; i < (int)(sizeof classes / sizeof classes[0]); i++)
        if (!strcmp(classes[i].cls, cls))
            ci = i;
    if (ci < 0)
        return sd_fail(err, SD_ERR_UNSUPPORTED,
                       "%s: scheduler class '%s' is not supported (EulerDiscreteScheduler, "
                       "EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler, DDIMScheduler, LMSDiscreteScheduler, HeunDiscreteScheduler, LCMScheduler, "
                       "UniPCMultistepScheduler, DPMSolverSDEScheduler; "
                       "--scheduler picks "
                       "one)",
                       cfg->path, cls);
    /* from_config reads the folder's keys whatever class it came from */
    SD_TRY(check_keys(cfg, cls, classes[ci].keys, err));
    s->cls = classes[ci].c;
    s->num_train = (int)sd_json_int_or(cfg, "num_train_timesteps", 1000);
    s->steps_offset = (int)sd_json_int_or(cfg, "steps_offset", 0);
    const char *spacing = sd_json_string_or(cfg, "timestep_spacing", classes[ci].default_spacing);
    s->spacing = !strcmp(spacing, "leading") ? SD_SPACING_LEADING
                 : !strcmp(spacing, "trailing") ? SD_SPACING_TRAILING
                                                : SD_SPACING_LINSPACE;
    s->v_prediction = !strcmp(sd_json_string_or(cfg, "prediction_type", "epsilon"), "v_prediction");
    s->zero_snr = find_rule(classes[ci].keys, "rescale_betas_zero_snr") && flag_or(cfg, "rescale_betas_zero_snr", 0);
    int euler = s->cls == SD_SCHED_EULER, dpm = s->cls == SD_SCHED_DPM, lms = s->cls == SD_SCHED_LMS;
    int heun = s->cls == SD_SCHED_HEUN, unipc = s->cls == SD_SCHED_UNIPC, sde = s->cls == SD_SCHED_DPM_SDE;
    s->karras = (euler || dpm || lms || heun || unipc || sde) && flag_or(cfg, "use_karras_sigmas", 0);
    if (sde && json_is_integer(json_object_get(cfg->root, "noise_sampler_seed"))) {
        s->noise_seed = (uint64_t)json_integer_value(json_object_get(cfg->root, "noise_sampler_seed"));
        s->noise_seed_fixed = 1;
    }
    if (euler || unipc) {
        s->sigma_min = sd_json_double_or(cfg, "sigma_min", 0);
        s->sigma_max = sd_json_double_or(cfg, "sigma_max", 0);
    }
    if (unipc) {
        s->solver_order = (int)sd_json_int_or(cfg, "solver_order", 2);
        s->bh1 = !strcmp(sd_json_string_or(cfg, "solver_type", "bh2"), "bh1");
        s->lower_order_final = flag_or(cfg, "lower_order_final", 1);
    }
    s->final_sigma_zero = lms || heun || sde || !strcmp(sd_json_string_or(cfg, "final_sigmas_type", "zero"), "zero");
    if (dpm) {
        s->solver_order = (int)sd_json_int_or(cfg, "solver_order", 2);
        s->sde = !strcmp(sd_json_string_or(cfg, "algorithm_type", "dpmsolver++"), "sde-dpmsolver++");
        s->solver_heun = !strcmp(sd_json_string_or(cfg, "solver_type", "midpoint"), "heun");
        s->lower_order_final = flag_or(cfg, "lower_order_final", 1);
        s->euler_at_final = flag_or(cfg, "euler_at_final", 0);
    }
    int lcm = s->cls == SD_SCHED_LCM;
    if (lcm) {
        s->original_steps = (int)sd_json_int_or(cfg, "original_inference_steps", 50);
        s->timestep_scaling = (float)sd_json_double_or(cfg, "timestep_scaling", 10.0);
    }
    if (s->cls == SD_SCHED_DDIM || heun || lcm) { /* DDIM clips by default, Heun and LCM not */
        s->clip_sample = flag_or(cfg, "clip_sample", s->cls == SD_SCHED_DDIM);
        s->clip_sample_range = (float)sd_json_double_or(cfg, "clip_sample_range", 1.0);
    }
    /* the sampler's own settings over the folder's */
    if (ki && ki->karras >= 0)
        s->karras = ki->karras;
    if (ki && ki->sde >= 0)
        s->sde = ki->sde;
    if (ki && ki->order > 0)
        s->solver_order = ki->order;
    if (!isfinite(eta) || eta < 0 || eta > 1)
        return sd_fail(err, SD_ERR_INVALID, "--eta: %g is not between 0 and 1", (double)eta);
    if (eta != 0.0f && s->cls != SD_SCHED_DDIM)
        return sd_fail(err, SD_ERR_INVALID,
                       "--eta: only DDIM takes eta (diffusers passes it to no other scheduler); the scheduler is %s",
                       cls);
    s->eta = eta;
    SD_TRY(build_alphas(s, cfg, err));
    s->final_alpha_cumprod = flag_or(cfg, "set_alpha_to_one", 1) ? 1.0f : s->alphas_cumprod[0];
    s->step_index = -1;
    s->begin_index = -1;
    /* what ran: the sampler's name and the settings that tell it apart */
    char label[64];
    sd_scheduler_label(s, label, sizeof label);
    snprintf(s->description, sizeof s->description, "%s (%s%s%s%s%s, %s spacing%s%s)", label, cls, s->karras ? ", Karras sigmas" : "",
             dpm ? (s->sde ? ", sde-dpmsolver++" : ", dpmsolver++") : "",
             dpm ? (s->solver_order == 3 ? ", order 3" : s->solver_order == 1 ? ", order 1" : ", order 2") : "",
             (euler || dpm) && !s->final_sigma_zero ? ", final sigma_min" : "", spacing,
             s->v_prediction ? ", v-prediction" : "", s->zero_snr ? ", zero-SNR" : "");
    if (s->cls == SD_SCHED_DDIM && s->eta != 0.0f)
        snprintf(s->description + strlen(s->description) - 1, sizeof s->description - strlen(s->description) + 1,
                 ", eta %g)", (double)s->eta);
    return SD_OK;
}
