/* gen_params.c - see gen_params.h. */
#include "common/gen_params.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/image_io.h"
#include "common/parse_number.h"

#define EULER "EulerDiscreteScheduler"
#define DPM "DPMSolverMultistepScheduler"
static const sd_sched_kind_info sched_kinds[SD_SCHED_KIND_COUNT] = {
    {"euler", "Euler", EULER, 0, -1, 0},
    {"euler_karras", "Euler Karras", EULER, 1, -1, 0},
    {"euler_a", "Euler a", "EulerAncestralDiscreteScheduler", -1, -1, 0},
    {"dpmpp_2m", "DPM++ 2M", DPM, 0, 0, 2},
    {"dpmpp_2m_karras", "DPM++ 2M Karras", DPM, 1, 0, 2},
    {"dpmpp_2m_sde", "DPM++ 2M SDE", DPM, 0, 1, 2},
    {"dpmpp_2m_sde_karras", "DPM++ 2M SDE Karras", DPM, 1, 1, 2},
    {"dpmpp_3m", "DPM++ 3M", DPM, 0, 0, 3},
    {"dpmpp_3m_karras", "DPM++ 3M Karras", DPM, 1, 0, 3},
    {"dpmpp_3m_sde", "DPM++ 3M SDE", DPM, 0, 1, 3},
    {"dpmpp_3m_sde_karras", "DPM++ 3M SDE Karras", DPM, 1, 1, 3},
    {"ddim", "DDIM", "DDIMScheduler", -1, -1, 0},
    {"lms", "LMS", "LMSDiscreteScheduler", 0, -1, 0},
    {"lms_karras", "LMS Karras", "LMSDiscreteScheduler", 1, -1, 0},
    {"heun", "Heun", "HeunDiscreteScheduler", 0, -1, 0},
    {"lcm", "LCM", "LCMScheduler", -1, -1, 0},
    {"unipc", "UniPC", "UniPCMultistepScheduler", 0, -1, 0},
    {"unipc_karras", "UniPC Karras", "UniPCMultistepScheduler", 1, -1, 0},
    {"dpmpp_sde", "DPM++ SDE", "DPMSolverSDEScheduler", 0, -1, 0},
    {"dpmpp_sde_karras", "DPM++ SDE Karras", "DPMSolverSDEScheduler", 1, -1, 0},
    {EULER, NULL, EULER, -1, -1, 0},
    {"EulerAncestralDiscreteScheduler", NULL, "EulerAncestralDiscreteScheduler", -1, -1, 0},
    {DPM, NULL, DPM, -1, -1, 0},
    {"DDIMScheduler", NULL, "DDIMScheduler", -1, -1, 0},
    {"LMSDiscreteScheduler", NULL, "LMSDiscreteScheduler", -1, -1, 0},
    {"HeunDiscreteScheduler", NULL, "HeunDiscreteScheduler", -1, -1, 0},
    {"LCMScheduler", NULL, "LCMScheduler", -1, -1, 0},
    {"UniPCMultistepScheduler", NULL, "UniPCMultistepScheduler", -1, -1, 0},
    {"DPMSolverSDEScheduler", NULL, "DPMSolverSDEScheduler", -1, -1, 0},
};
#undef EULER
#undef DPM

const sd_sched_kind_info *sd_sched_kind_get(sd_sched_kind k)
{
    return (unsigned)k < SD_SCHED_KIND_COUNT ? &sched_kinds[k] : NULL;
}

int sd_sched_kind_parse(const char *name, sd_sched_kind *out)
{
    for (int i = 0; i < SD_SCHED_KIND_COUNT; i++)
        if (!strcasecmp(name, sched_kinds[i].name) || (sched_kinds[i].label && !strcasecmp(name, sched_kinds[i].label))) {
            *out = (sd_sched_kind)i;
            return 0;
        }
    return -1;
}

const char *sd_sched_kind_name(sd_sched_kind k)
{
    return (unsigned)k < SD_SCHED_KIND_COUNT ? sched_kinds[k].name : "?";
}

const char *sd_sched_kind_class(sd_sched_kind k)
{
    return (unsigned)k < SD_SCHED_KIND_COUNT ? sched_kinds[k].cls : "?";
}

const char *sd_sched_kind_names(void)
{
    return "euler, euler_karras, euler_a, dpmpp_2m, dpmpp_2m_karras, dpmpp_2m_sde, dpmpp_2m_sde_karras, dpmpp_3m, "
           "dpmpp_3m_karras, dpmpp_3m_sde, dpmpp_3m_sde_karras, dpmpp_sde, dpmpp_sde_karras, ddim, lms, lms_karras, heun, "
           "lcm, unipc, unipc_karras";
}

static const char *const format_names[] = {"png", "webp", "jpeg"};

#define F(field) offsetof(sd_gen_params, field)
#define GEN SD_GEN_PARAMS_SCOPE_GENERATE
#define JOB SD_GEN_PARAMS_SCOPE_JOB
#define BIG 3.4e38
/* flag, key, type, field, field2, min, max, min_open, max_open, multiple, scope, in_metadata, metavar, default, help */
const sd_gen_params_spec sd_gen_params_table[] = {
    {"--prompt", "prompt", SD_GEN_PARAMS_TYPE_TEXT, F(prompt), 0, 0, 0, 0, 0, 0, GEN | JOB, 1, "TEXT", "required",
     "the prompt"},
    {"--prompt-2", "prompt_2", SD_GEN_PARAMS_TYPE_TEXT, F(prompt_2), 0, 0, 0, 0, 0, 0, GEN | JOB, 1, "TEXT", "--prompt",
     "the prompt of the second text encoder"},
    {"--negative-prompt", "negative_prompt", SD_GEN_PARAMS_TYPE_TEXT, F(negative_prompt), 0, 0, 0, 0, 0, 0, GEN | JOB, 1,
     "TEXT", "none", "what the image should not show"},
    {"--negative-prompt-2", "negative_prompt_2", SD_GEN_PARAMS_TYPE_TEXT, F(negative_prompt_2), 0, 0, 0, 0, 0, 0,
     GEN | JOB, 1, "TEXT", "--negative-prompt", "the negative prompt of the second text encoder"},
    {"--seed", "seed", SD_GEN_PARAMS_TYPE_SEED, F(seed), 0, 0, 18446744073709551615.0, 0, 0, 0, GEN | JOB, 1, "N",
     "random (generate), 0 (submit)", "initial noise; item i of a batch or job without a seed uses N+i"},
    {"--steps", "steps", SD_GEN_PARAMS_TYPE_INT, F(steps), 0, 1, 1000, 0, 0, 0, GEN | JOB, 1, "N", "50",
     "denoising steps"},
    {"--guidance", "guidance", SD_GEN_PARAMS_TYPE_FLOAT, F(guidance), 0, 0, 100, 0, 0, 0, GEN | JOB, 1, "F", "5.0",
     "classifier-free guidance scale"},
    {"--guidance-rescale", "guidance_rescale", SD_GEN_PARAMS_TYPE_FLOAT, F(guidance_rescale), 0, 0, 1, 0, 0, 0,
     GEN | JOB, 1, "F", "0.0", "guidance rescale (Lin et al.)"},
    {"--width", "width", SD_GEN_PARAMS_TYPE_INT, F(width), 0, 8, 8192, 0, 0, 8, GEN | JOB, 0, "W", "the model's",
     "image width, a multiple of 8"},
    {"--height", "height", SD_GEN_PARAMS_TYPE_INT, F(height), 0, 8, 8192, 0, 0, 8, GEN | JOB, 0, "H", "the model's",
     "image height, a multiple of 8"},
    {"--scheduler", "scheduler", SD_GEN_PARAMS_TYPE_SCHEDULER, F(scheduler), 0, 0, 0, 0, 0, 0, GEN | JOB, 1, "NAME",
     "the model's",
     "euler, euler_karras, euler_a, dpmpp_2m, dpmpp_2m_karras, dpmpp_2m_sde, dpmpp_2m_sde_karras, dpmpp_3m, "
     "dpmpp_3m_karras, dpmpp_3m_sde, dpmpp_3m_sde_karras, dpmpp_sde, dpmpp_sde_karras (Brownian noise seeded with "
     "the image's seed), ddim, lms, lms_karras, heun, lcm (for LCM-LoRAs), unipc, unipc_karras; A1111's names (\"DPM++ 2M Karras\") too, or a "
     "diffusers class with the model's settings (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, "
     "DPMSolverMultistepScheduler, DDIMScheduler, LMSDiscreteScheduler, HeunDiscreteScheduler, LCMScheduler, UniPCMultistepScheduler, "
     "DPMSolverSDEScheduler)"},
    {"--high-noise-frac", "high_noise_frac", SD_GEN_PARAMS_TYPE_FLOAT, F(high_noise_frac), 0, 0, 1, 1, 1, 0, GEN | JOB,
     1, "F", "0.8", "with a refiner: the base denoises until this fraction"},
    {"--aesthetic-score", "aesthetic_score", SD_GEN_PARAMS_TYPE_FLOAT, F(aesthetic_score), 0, -BIG, BIG, 0, 0, 0,
     GEN | JOB, 1, "F", "6.0", "the refiner's aesthetic score"},
    {"--negative-aesthetic-score", "negative_aesthetic_score", SD_GEN_PARAMS_TYPE_FLOAT, F(negative_aesthetic_score), 0,
     -BIG, BIG, 0, 0, 0, GEN | JOB, 1, "F", "2.5", "the refiner's negative aesthetic score"},
    {"--original-size", "original_size", SD_GEN_PARAMS_TYPE_SIZE, F(original_w), F(original_h), 1, 65536, 0, 0, 0,
     GEN | JOB, 1, "WxH", "the output size", "micro-conditioning: original size"},
    {"--crop-top-left", "crop_top_left", SD_GEN_PARAMS_TYPE_OFFSET, F(crop_top), F(crop_left), 0, 65536, 0, 0, 0,
     GEN | JOB, 1, "Y,X", "0,0", "micro-conditioning: crop coordinates"},
    {"--target-size", "target_size", SD_GEN_PARAMS_TYPE_SIZE, F(target_w), F(target_h), 1, 65536, 0, 0, 0, GEN | JOB, 1,
     "WxH", "the output size", "micro-conditioning: target size"},
    {"--negative-original-size", "negative_original_size", SD_GEN_PARAMS_TYPE_SIZE, F(neg_original_w),
     F(neg_original_h), 1, 65536, 0, 0, 0, GEN | JOB, 1, "WxH", "--original-size",
     "micro-conditioning of the negative prompt: original size (with --negative-target-size)"},
    {"--negative-crop-top-left", "negative_crop_top_left", SD_GEN_PARAMS_TYPE_OFFSET, F(neg_crop_top), F(neg_crop_left),
     0, 65536, 0, 0, 0, GEN | JOB, 1, "Y,X", "0,0", "micro-conditioning of the negative prompt: crop coordinates"},
    {"--negative-target-size", "negative_target_size", SD_GEN_PARAMS_TYPE_SIZE, F(neg_target_w), F(neg_target_h), 1,
     65536, 0, 0, 0, GEN | JOB, 1, "WxH", "--target-size",
     "micro-conditioning of the negative prompt: target size (with --negative-original-size)"},
    {"--strength", "strength", SD_GEN_PARAMS_TYPE_FLOAT, F(strength), 0, 0, 1, 1, 0, 0, GEN, 1, "F", "0.3",
     "img2img: how much of --init-image is noised away"},
    {"--clip-skip", "clip_skip", SD_GEN_PARAMS_TYPE_INT, F(clip_skip), 0, 0, 64, 0, 0, 0, GEN | JOB, 1, "N", "0",
     "diffusers' clip_skip: both text encoders' layer N before the penultimate (A1111's \"Clip skip\" is N + 1)"},
    {"--long-prompts", "long_prompts", SD_GEN_PARAMS_TYPE_SWITCH, F(long_prompts), 0, 0, 1, 0, 0, 0, GEN | JOB, 1, "",
     "off",
     "encode prompts past 77 tokens in 75-token chunks and weight words in compel's syntax (word+, word-, "
     "(words)1.3, \"words\"0.8, word.attend(1.2)), as compel's CompelForSDXL does; off: CLIP's 77 tokens, the "
     "rest dropped with a warning, parentheses read as text"},
    {"--watermark", "watermark", SD_GEN_PARAMS_TYPE_INT, F(watermark), 0, 0, 1, 0, 0, 0, GEN | JOB, 0, "0|1", "1",
     "diffusers' invisible watermark (dwtDct, 48 bits) on images 256 px wide or more, as with the seed's "
     "invisible-watermark installed; 0 (or --no-watermark) leaves it out"},
    {"--eta", "eta", SD_GEN_PARAMS_TYPE_FLOAT, F(eta), 0, 0, 1, 0, 0, 0, GEN | JOB, 1, "F", "0.0",
     "DDIM's eta: 0 deterministic, 1 as DDPM (noise from the item's generator, as diffusers draws it)"},
    {"--format", "format", SD_GEN_PARAMS_TYPE_FORMAT, F(format), 0, 0, 0, 0, 0, 0, JOB, 0, "png|webp|jpeg", "png",
     "image format"},
    {"--lora", "loras", SD_GEN_PARAMS_TYPE_TEXT, F(loras), 0, 0, 0, 0, 0, 0, JOB, 0, "FILE[:SCALE],...", "none",
     "LoRAs merged on top of the workers' model (paths the workers read; repeatable)"},
    {"--vae", "vae", SD_GEN_PARAMS_TYPE_TEXT, F(vae), 0, 0, 0, 0, 0, 0, JOB, 0, "DIR|FILE", "the model's",
     "another VAE (a path the final workers read)"},
};
const int sd_gen_params_count = (int)(sizeof sd_gen_params_table / sizeof sd_gen_params_table[0]);
#undef F

json_t *sd_seed_to_json(uint64_t seed)
{
    if (seed <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)seed);
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
    return json_string(buf);
}

int sd_seed_parse(const char *text, uint64_t *out)
{
    if (!text || !*text || strlen(text) > 20)
        return -1;
    uint64_t v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int sd_seed_from_json(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return -1;
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    return json_is_string(v) ? sd_seed_parse(json_string_value(v), out) : -1;
}

void sd_gen_params_init(sd_gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->steps = 50;
    p->guidance = 5.0f;
    p->guidance_rescale = 0.0f;
    p->scheduler = -1;
    p->high_noise_frac = 0.8f;
    p->aesthetic_score = 6.0f;
    p->negative_aesthetic_score = 2.5f;
    p->watermark = 1;
    p->strength = 0.3f;
    p->format = SD_IMAGE_FORMAT_PNG;
}

const sd_gen_params_spec *sd_gen_params_by_flag(const char *flag)
{
    for (int i = 0; i < sd_gen_params_count; i++)
        if (!strcmp(sd_gen_params_table[i].flag, flag))
            return &sd_gen_params_table[i];
    return NULL;
}

const sd_gen_params_spec *sd_gen_params_by_key(const char *key)
{
    for (int i = 0; i < sd_gen_params_count; i++)
        if (!strcmp(sd_gen_params_table[i].key, key))
            return &sd_gen_params_table[i];
    return NULL;
}

#define FIELD(g, off, T) ((T *)((char *)(g) + (off)))

/* "from 1 to 1000", "between 0 and 1 (both excluded)", ... */
static void range_text(const sd_gen_params_spec *s, char *buf, size_t len)
{
    if (s->min <= -BIG && s->max >= BIG)
        snprintf(buf, len, "a finite number");
    else if (s->min_open || s->max_open)
        snprintf(buf, len, "a number %s %g and %s %g", s->min_open ? "above" : "from", s->min,
                 s->max_open ? "below" : "up to", s->max);
    else if (s->type == SD_GEN_PARAMS_TYPE_FLOAT)
        snprintf(buf, len, "a number from %g to %g", s->min, s->max);
    else if (s->multiple)
        snprintf(buf, len, "a multiple of %d from %g to %g", s->multiple, s->min, s->max);
    else
        snprintf(buf, len, "an integer from %.0f to %.0f", s->min, s->max);
}

static int in_range(const sd_gen_params_spec *s, double v)
{
    if (!isfinite(v) || v < s->min || v > s->max)
        return 0;
    if ((s->min_open && v == s->min) || (s->max_open && v == s->max))
        return 0;
    return 1;
}

static sd_status int_value(const sd_gen_params_spec *s, const json_t *v, const char *name, long long *out, sd_error *err)
{
    char r[96];
    range_text(s, r, sizeof r);
    if (!json_is_integer(v))
        return sd_fail(err, SD_ERR_INVALID, "%s: must be %s (an integer)", name, r);
    long long x = json_integer_value(v);
    if (!in_range(s, (double)x) || (s->multiple && x % s->multiple))
        return sd_fail(err, SD_ERR_INVALID, "%s: %lld is not %s", name, x, r);
    *out = x;
    return SD_OK;
}

static sd_status pair_value(const sd_gen_params_spec *s, const json_t *v, const char *name, sd_gen_params *g,
                            sd_error *err)
{
    const char *what = s->type == SD_GEN_PARAMS_TYPE_SIZE ? "[width, height]" : "[y, x]";
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
        !json_is_integer(json_array_get(v, 1)))
        return sd_fail(err, SD_ERR_INVALID, "%s: must be %s, two integers", name, what);
    long long a = json_integer_value(json_array_get(v, 0)), b = json_integer_value(json_array_get(v, 1));
    if (!in_range(s, (double)a) || !in_range(s, (double)b))
        return sd_fail(err, SD_ERR_INVALID, "%s: %s = [%lld, %lld] must be integers from %.0f to %.0f", name, what, a,
                       b, s->min, s->max);
    *FIELD(g, s->offset, int) = (int)a;
    *FIELD(g, s->offset2, int) = (int)b;
    return SD_OK;
}

sd_status sd_gen_params_set_json(sd_gen_params *g, const sd_gen_params_spec *s, const json_t *v, const char *name,
                            sd_error *err)
{
    char r[96];
    switch (s->type) {
    case SD_GEN_PARAMS_TYPE_TEXT:
        if (!json_is_string(v))
            return sd_fail(err, SD_ERR_INVALID, "%s: must be a string", name);
        if (strlen(json_string_value(v)) != json_string_length(v))
            return sd_fail(err, SD_ERR_INVALID, "%s: contains a NUL byte", name);
        *FIELD(g, s->offset, const char *) = json_string_value(v);
        return SD_OK;
    case SD_GEN_PARAMS_TYPE_INT: {
        long long x = 0;
        SD_TRY(int_value(s, v, name, &x, err));
        *FIELD(g, s->offset, int) = (int)x;
        return SD_OK;
    }
    case SD_GEN_PARAMS_TYPE_SEED: {
        uint64_t x;
        if (sd_seed_from_json(v, &x))
            return sd_fail(err, SD_ERR_INVALID,
                           "%s: must be an integer from 0 to 18446744073709551615 (a decimal string above 2^63 - 1)", name);
        *FIELD(g, s->offset, uint64_t) = x;
        return SD_OK;
    }
    case SD_GEN_PARAMS_TYPE_FLOAT: {
        range_text(s, r, sizeof r);
        if (!json_is_number(v))
            return sd_fail(err, SD_ERR_INVALID, "%s: must be %s", name, r);
        double x = json_number_value(v);
        if (!in_range(s, x))
            return sd_fail(err, SD_ERR_INVALID, "%s: %g is not %s", name, x, r);
        *FIELD(g, s->offset, float) = (float)x;
        return SD_OK;
    }
    case SD_GEN_PARAMS_TYPE_SCHEDULER: {
        sd_sched_kind k;
        if (!json_is_string(v) || sd_sched_kind_parse(json_string_value(v), &k))
            return sd_fail(err, SD_ERR_INVALID, "%s: %s%s%s is not one of %s (or a diffusers scheduler class)", name,
                           json_is_string(v) ? "'" : "", json_is_string(v) ? json_string_value(v) : "a non-string",
                           json_is_string(v) ? "'" : "", sd_sched_kind_names());
        *FIELD(g, s->offset, int) = (int)k;
        return SD_OK;
    }
    case SD_GEN_PARAMS_TYPE_FORMAT:
        for (int i = 0; json_is_string(v) && i < 3; i++)
            if (!strcmp(json_string_value(v), format_names[i])) {
                *FIELD(g, s->offset, int) = i;
                return SD_OK;
            }
        return sd_fail(err, SD_ERR_INVALID, "%s: must be png, webp or jpeg", name);
    case SD_GEN_PARAMS_TYPE_SIZE:
    case SD_GEN_PARAMS_TYPE_OFFSET:
        return pair_value(s, v, name, g, err);
    case SD_GEN_PARAMS_TYPE_SWITCH:
        if (json_is_boolean(v))
            *FIELD(g, s->offset, int) = json_is_true(v);
        else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
            *FIELD(g, s->offset, int) = (int)json_integer_value(v);
        else
            return sd_fail(err, SD_ERR_INVALID, "%s: must be true or false", name);
        return SD_OK;
    }
    return sd_fail(err, SD_ERR_INVALID, "%s: unknown parameter type", name);
}

sd_status sd_gen_params_flag_to_json(const sd_gen_params_spec *s, const char *text, json_t **out, sd_error *err)
{
    *out = NULL;
    json_t *v = NULL;
    switch (s->type) {
    case SD_GEN_PARAMS_TYPE_TEXT:
    case SD_GEN_PARAMS_TYPE_SCHEDULER:
    case SD_GEN_PARAMS_TYPE_FORMAT:
        v = json_string(text);
        if (!v)
            return sd_fail(err, SD_ERR_INVALID, "%s: not valid UTF-8", s->flag);
        break;
    case SD_GEN_PARAMS_TYPE_SEED: {
        uint64_t x;
        if (sd_seed_parse(text, &x))
            return sd_fail(err, SD_ERR_INVALID, "%s: '%s' is not an integer from 0 to 18446744073709551615", s->flag,
                           text);
        v = sd_seed_to_json(x);
        break;
    }
    case SD_GEN_PARAMS_TYPE_INT: {
        long long x;
        char r[96];
        range_text(s, r, sizeof r);
        if (sd_parse_int(text, (long long)s->min, s->max >= 9.2e18 ? 0x7fffffffffffffffLL : (long long)s->max, &x))
            return sd_fail(err, SD_ERR_INVALID, "%s: '%s' is not %s", s->flag, text, r);
        v = json_integer(x);
        break;
    }
    case SD_GEN_PARAMS_TYPE_FLOAT: {
        double x;
        if (sd_parse_double(text, &x) || !isfinite(x))
            return sd_fail(err, SD_ERR_INVALID, "%s: '%s' is not a finite number", s->flag, text);
        v = json_real(x);
        break;
    }
    case SD_GEN_PARAMS_TYPE_SIZE:
    case SD_GEN_PARAMS_TYPE_OFFSET: {
        char sep = s->type == SD_GEN_PARAMS_TYPE_SIZE ? 'x' : ',', c;
        int a, b, used = 0;
        if (sscanf(text, "%d%c%d%n", &a, &c, &b, &used) != 3 || text[used] ||
            (c != sep && !(sep == 'x' && c == 'X')))
            return sd_fail(err, SD_ERR_INVALID, "%s: '%s' is not %s", s->flag, text, s->metavar);
        v = json_pack("[i,i]", a, b);
        break;
    }
    case SD_GEN_PARAMS_TYPE_SWITCH: /* the flag alone: on */
        v = json_true();
        break;
    }
    sd_gen_params scratch;
    sd_gen_params_init(&scratch);
    sd_status st = sd_gen_params_set_json(&scratch, s, v, s->flag, err);
    if (st != SD_OK) {
        json_decref(v);
        return st;
    }
    *out = v;
    return SD_OK;
}

sd_status sd_gen_params_set_flag(sd_gen_params *g, const sd_gen_params_spec *s, const char *text, sd_error *err)
{
    if (s->type == SD_GEN_PARAMS_TYPE_TEXT) { /* the flag's own text, kept by the caller's argv */
        json_t *check = json_string(text); /* NULL: not valid UTF-8 */
        if (!check)
            return sd_fail(err, SD_ERR_INVALID, "%s: not valid UTF-8", s->flag);
        json_decref(check);
        *FIELD(g, s->offset, const char *) = text;
        return SD_OK;
    }
    json_t *v;
    SD_TRY(sd_gen_params_flag_to_json(s, text, &v, err));
    sd_status st = sd_gen_params_set_json(g, s, v, s->flag, err);
    json_decref(v);
    return st;
}

sd_status sd_gen_params_from_json(sd_gen_params *g, const json_t *obj, sd_error *err)
{
    sd_gen_params_init(g);
    if (!json_is_object(obj))
        return sd_fail(err, SD_ERR_INVALID, "item parameters: not a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        const sd_gen_params_spec *s = sd_gen_params_by_key(key);
        if (!s || !(s->scope & SD_GEN_PARAMS_SCOPE_JOB))
            return sd_fail(err, SD_ERR_INVALID, "unknown key '%s'", key);
        char name[64];
        snprintf(name, sizeof name, "key '%s'", key);
        SD_TRY(sd_gen_params_set_json(g, s, v, name, err));
    }
    if (!g->prompt)
        return sd_fail(err, SD_ERR_INVALID, "key 'prompt': a prompt string is required");
    return SD_OK;
}

json_t *sd_gen_params_to_json(const sd_gen_params *g, const sd_gen_params_spec *s)
{
    switch (s->type) {
    case SD_GEN_PARAMS_TYPE_TEXT: {
        const char *t = *FIELD(g, s->offset, const char *const);
        return json_string(t ? t : "");
    }
    case SD_GEN_PARAMS_TYPE_INT:
        return json_integer(*FIELD(g, s->offset, const int));
    case SD_GEN_PARAMS_TYPE_SEED:
        return sd_seed_to_json(*FIELD(g, s->offset, const uint64_t));
    case SD_GEN_PARAMS_TYPE_FLOAT:
        return json_real(*FIELD(g, s->offset, const float));
    case SD_GEN_PARAMS_TYPE_SCHEDULER:
    case SD_GEN_PARAMS_TYPE_FORMAT: {
        char buf[32];
        sd_gen_params_to_text(g, s, buf, sizeof buf);
        return json_string(buf);
    }
    case SD_GEN_PARAMS_TYPE_SIZE:
    case SD_GEN_PARAMS_TYPE_OFFSET:
        return json_pack("[i,i]", *FIELD(g, s->offset, const int), *FIELD(g, s->offset2, const int));
    case SD_GEN_PARAMS_TYPE_SWITCH:
        return json_boolean(*FIELD(g, s->offset, const int));
    }
    return json_null();
}

void sd_gen_params_to_text(const sd_gen_params *g, const sd_gen_params_spec *s, char *buf, size_t len)
{
    switch (s->type) {
    case SD_GEN_PARAMS_TYPE_TEXT: {
        const char *t = *FIELD(g, s->offset, const char *const);
        snprintf(buf, len, "%s", t ? t : "");
        return;
    }
    case SD_GEN_PARAMS_TYPE_INT:
        snprintf(buf, len, "%d", *FIELD(g, s->offset, const int));
        return;
    case SD_GEN_PARAMS_TYPE_SEED:
        snprintf(buf, len, "%llu", (unsigned long long)*FIELD(g, s->offset, const uint64_t));
        return;
    case SD_GEN_PARAMS_TYPE_FLOAT:
        snprintf(buf, len, "%g", (double)*FIELD(g, s->offset, const float));
        return;
    case SD_GEN_PARAMS_TYPE_SCHEDULER: {
        int k = *FIELD(g, s->offset, const int);
        snprintf(buf, len, "%s", k >= 0 ? sd_sched_kind_name((sd_sched_kind)k) : "model default");
        return;
    }
    case SD_GEN_PARAMS_TYPE_FORMAT: {
        int k = *FIELD(g, s->offset, const int);
        snprintf(buf, len, "%s", k >= 0 && k < 3 ? format_names[k] : "?");
        return;
    }
    case SD_GEN_PARAMS_TYPE_SIZE:
    case SD_GEN_PARAMS_TYPE_OFFSET:
        snprintf(buf, len, s->type == SD_GEN_PARAMS_TYPE_SIZE ? "%dx%d" : "%d,%d", *FIELD(g, s->offset, const int),
                 *FIELD(g, s->offset2, const int));
        return;
    case SD_GEN_PARAMS_TYPE_SWITCH:
        snprintf(buf, len, "%s", *FIELD(g, s->offset, const int) ? "on" : "off");
        return;
    }
    snprintf(buf, len, "?");
}

void sd_gen_params_print_help(FILE *out, int scope)
{
    for (int i = 0; i < sd_gen_params_count; i++) {
        const sd_gen_params_spec *s = &sd_gen_params_table[i];
        if (!(s->scope & scope))
            continue;
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", s->flag, s->metavar[0] ? " " : "", s->metavar);
        fprintf(out, "  %-32s %s (default: %s)\n", left, s->help, s->deflt);
    }
}
