/* gen_params.h - the generation parameters of one image, and the one table
 * that describes them: flag, JSON key, field, type, range, default, help
 * text and metadata name. Every place that reads or writes a parameter goes
 * through this table: `sdxl generate`'s flags, `sdxl submit`'s job-wide
 * flags and JSONL items (checked at submit), the worker's decoding of a task
 * (checked again: an item with a bad field fails with the reason) and the
 * metadata written beside each image. A new option is one row here.
 *
 * It lives in common/ (not in the engine) because the clients and the
 * coordinator check job specs with it and link no engine. */
#ifndef SDXL_COMMON_GEN_PARAMS_H
#define SDXL_COMMON_GEN_PARAMS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* The samplers a user can pick by name: A1111's and ComfyUI's names, each
 * a diffusers scheduler class built from the model's scheduler config with
 * a few settings overridden, as `Class.from_config(config, **overrides)`.
 * A class name ("EulerDiscreteScheduler") picks the class with the config's
 * own settings. worker/engine/schedulers implements them. */
typedef enum {
    SD_SCHED_KIND_EULER,
    SD_SCHED_KIND_EULER_KARRAS,
    SD_SCHED_KIND_EULER_ANCESTRAL,
    SD_SCHED_KIND_DPMPP_2M,
    SD_SCHED_KIND_DPMPP_2M_KARRAS,
    SD_SCHED_KIND_DPMPP_2M_SDE,
    SD_SCHED_KIND_DPMPP_2M_SDE_KARRAS,
    SD_SCHED_KIND_DPMPP_3M,
    SD_SCHED_KIND_DPMPP_3M_KARRAS,
    SD_SCHED_KIND_DPMPP_3M_SDE,
    SD_SCHED_KIND_DPMPP_3M_SDE_KARRAS,
    SD_SCHED_KIND_DDIM,
    SD_SCHED_KIND_LMS,
    SD_SCHED_KIND_LMS_KARRAS,
    SD_SCHED_KIND_HEUN,
    SD_SCHED_KIND_LCM,
    SD_SCHED_KIND_UNIPC,
    SD_SCHED_KIND_UNIPC_KARRAS,
    SD_SCHED_KIND_DPMPP_SDE,
    SD_SCHED_KIND_DPMPP_SDE_KARRAS,
    /* the classes as configured */
    SD_SCHED_KIND_CLASS_EULER,
    SD_SCHED_KIND_CLASS_EULER_ANCESTRAL,
    SD_SCHED_KIND_CLASS_DPM,
    SD_SCHED_KIND_CLASS_DDIM,
    SD_SCHED_KIND_CLASS_LMS,
    SD_SCHED_KIND_CLASS_HEUN,
    SD_SCHED_KIND_CLASS_LCM,
    SD_SCHED_KIND_CLASS_UNIPC,
    SD_SCHED_KIND_CLASS_DPM_SDE,
    SD_SCHED_KIND_COUNT
} sd_sched_kind;

typedef struct {
    const char *name;  /* "dpmpp_2m_sde_karras", or the class name */
    const char *label; /* "DPM++ 2M SDE Karras" (A1111, ComfyUI), NULL for a class */
    const char *cls;   /* "DPMSolverMultistepScheduler" */
    int karras;        /* use_karras_sigmas: -1 the config's, else 0 or 1 */
    int sde;           /* algorithm_type "sde-dpmsolver++": -1 the config's, else 0 or 1 */
    int order;         /* solver_order: 0 the config's */
} sd_sched_kind_info;

const sd_sched_kind_info *sd_sched_kind_get(sd_sched_kind k);
/* a name, label or class (any case); 0 on success, -1 for anything else */
int sd_sched_kind_parse(const char *name, sd_sched_kind *out);
/* the short name ("euler"), "?" for a value out of range */
const char *sd_sched_kind_name(sd_sched_kind k);
/* diffusers' class name ("EulerDiscreteScheduler") */
const char *sd_sched_kind_class(sd_sched_kind k);
/* "euler, euler_karras, ..." for messages and help */
const char *sd_sched_kind_names(void);

typedef struct {
    const char *prompt, *prompt_2, *negative_prompt, *negative_prompt_2; /* NULL: not given */
    uint64_t seed;
    int steps;
    float guidance, guidance_rescale;
    int width, height;      /* 0: the UNet's sample_size x the VAE's scale factor */
    int scheduler;          /* sd_sched_kind, or -1 for the model's scheduler_config.json */
    float high_noise_frac;  /* with a refiner: base denoises until this fraction (denoising_end) */
    float aesthetic_score, negative_aesthetic_score;
    int original_w, original_h, crop_top, crop_left, target_w, target_h; /* 0: default */
    /* the negative row's micro-conditioning (diffusers' negative_original_size,
     * negative_crops_coords_top_left, negative_target_size); 0: default */
    int neg_original_w, neg_original_h, neg_crop_top, neg_crop_left, neg_target_w, neg_target_h;
    int format;             /* sd_image_format (common/image_io.h) of a job item (generate takes it from --out) */
    /* img2img: image [3, init_h, init_w] in [-1, 1], or NULL */
    const float *init_image;
    int init_w, init_h;
    float strength;
    float eta; /* DDIM's eta (0: deterministic) */
    int clip_skip; /* diffusers' clip_skip: condition on hidden_states[-(2 + N)] (0: none) */
    int long_prompts; /* 1: prompts past 77 tokens and weights in compel's syntax (worker/engine/text/long_prompt.h) */
    /* sdxl generate --batch N --one-generator: item batch_i of batch_n drawn
     * from one generator seeded with seed, as diffusers' num_images_per_prompt
     * (batch_n 0: the item has a generator of its own) */
    int batch_n, batch_i;
    int watermark; /* 1: diffusers' invisible watermark (dwtDct), as with invisible-watermark installed */
    /* a job item's LoRAs ("FILE[:SCALE],...") and VAE, on top of what the
     * workers loaded (common/model_spec.h sd_model_spec_for_item); NULL: none */
    const char *loras, *vae;
} sd_gen_params;

/* A seed as JSON: an integer up to 2^63 - 1, a decimal string above
 * (JSON's integers stop there in most readers, ours included). */
json_t *sd_seed_to_json(uint64_t seed);
/* An integer >= 0 or a string of decimal digits up to 2^64 - 1: 0 and
 * *out, else -1. */
int sd_seed_from_json(const json_t *v, uint64_t *out);
/* The same from a flag's text. */
int sd_seed_parse(const char *text, uint64_t *out);

/* Defaults as diffusers': 50 steps, guidance 5, rescale 0, aesthetic 6 / 2.5,
 * strength 0.3, high_noise_frac 0.8 (the table's defaults). */
void sd_gen_params_init(sd_gen_params *p);

typedef enum {
    SD_GEN_PARAMS_TYPE_TEXT,      /* a UTF-8 string without NUL bytes */
    SD_GEN_PARAMS_TYPE_INT,       /* an integer in [min, max], a multiple of `multiple` */
    SD_GEN_PARAMS_TYPE_SEED,      /* an integer in [0, 2^64 - 1], as torch's manual_seed takes it (JSON: an
                                   * integer, or a decimal string above 2^63 - 1) */
    SD_GEN_PARAMS_TYPE_FLOAT,     /* a finite number in [min, max] (or open ends) */
    SD_GEN_PARAMS_TYPE_SCHEDULER, /* a scheduler name */
    SD_GEN_PARAMS_TYPE_FORMAT,    /* png, webp or jpeg */
    SD_GEN_PARAMS_TYPE_SIZE,      /* WxH: flag "1024x1024", JSON [w, h]; both in [min, max] */
    SD_GEN_PARAMS_TYPE_OFFSET,    /* Y,X: flag "0,0", JSON [y, x]; both in [min, max] */
    SD_GEN_PARAMS_TYPE_SWITCH,    /* on or off: a flag without a value turns it on; JSON true/false (or 1/0) */
} sd_gen_params_type;

/* Where a parameter is taken. */
enum {
    SD_GEN_PARAMS_SCOPE_GENERATE = 1, /* a flag of sdxl generate */
    SD_GEN_PARAMS_SCOPE_JOB = 2,      /* a flag of sdxl submit, a key of a job item */
};

typedef struct {
    const char *flag;   /* "--guidance-rescale" */
    const char *key;    /* "guidance_rescale": JSON key of a job item, task and image metadata */
    sd_gen_params_type type;
    size_t offset, offset2; /* fields of sd_gen_params (offset2: the second of a pair) */
    double min, max;
    int min_open, max_open; /* 1: the bound itself is outside the range */
    int multiple;           /* SD_GEN_PARAMS_TYPE_INT: values must be multiples of it (0: any) */
    int scope;              /* SD_GEN_PARAMS_SCOPE_* bits */
    int in_metadata;        /* recorded in each image's metadata (text chunks, JSON) */
    const char *metavar;    /* "N", "F", "TEXT", "WxH" */
    const char *deflt;      /* the default, as help text shows it */
    const char *help;
} sd_gen_params_spec;

extern const sd_gen_params_spec sd_gen_params_table[];
extern const int sd_gen_params_count;

/* The row of a flag ("--steps") or JSON key ("steps"); NULL if none. */
const sd_gen_params_spec *sd_gen_params_by_flag(const char *flag);
const sd_gen_params_spec *sd_gen_params_by_key(const char *key);

/* Checks a JSON value against the row (type, range) and stores it in g.
 * Text values point into v (keep v alive). Messages start with `name` (the
 * flag or key the value came from). */
sd_status sd_gen_params_set_json(sd_gen_params *g, const sd_gen_params_spec *s, const json_t *v, const char *name,
                            sd_error *err);
/* A flag's text as the JSON value a job item carries (new reference),
 * checked as sd_gen_params_set_json checks it. */
sd_status sd_gen_params_flag_to_json(const sd_gen_params_spec *s, const char *text, json_t **out, sd_error *err);
/* Parses a flag's text into g (generate). */
sd_status sd_gen_params_set_flag(sd_gen_params *g, const sd_gen_params_spec *s, const char *text, sd_error *err);

/* A job item's parameters (a JSON object): every key must be a row of
 * scope JOB, of the right type and in range, and "prompt" is required.
 * Fills g from the defaults; messages name the key. */
sd_status sd_gen_params_from_json(sd_gen_params *g, const json_t *obj, sd_error *err);

/* The value of a row as JSON (new reference), for metadata and job specs. */
json_t *sd_gen_params_to_json(const sd_gen_params *g, const sd_gen_params_spec *s);
/* The value as an image text chunk writes it ("5", "7.5", "euler"). */
void sd_gen_params_to_text(const sd_gen_params *g, const sd_gen_params_spec *s, char *buf, size_t len);

/* Prints the flag rows of a scope as help lines ("  --steps N  ... (50)"). */
#include <stdio.h>
void sd_gen_params_print_help(FILE *out, int scope);

#endif
