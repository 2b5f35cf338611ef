/* model_folder.h - a diffusers model folder: model_index.json, its
 * components (unet, vae, text_encoder, ...), each component's config.json and
 * weight files, chosen by variant, single-file or sharded.
 *
 * Errors name the component and file at fault: a component missing from the
 * folder, null in model_index.json (the refiner has no text_encoder), of a
 * class we do not know, or with no weights of the requested variant. */
#ifndef SDXL_COMMON_MODEL_FOLDER_H
#define SDXL_COMMON_MODEL_FOLDER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "json_config.h"
#include "safetensors.h"

typedef enum {
    SD_COMPONENT_KIND_WEIGHTS,   /* a network with config.json + safetensors */
    SD_COMPONENT_KIND_TOKENIZER, /* vocab.json + merges.txt, or tokenizer.json */
    SD_COMPONENT_KIND_SCHEDULER, /* scheduler_config.json */
} sd_component_kind;

#define SD_MAX_COMPONENTS 16

struct sd_lora_deltas; /* lora.h */

typedef struct {
    char name[64];       /* key in model_index.json: "unet" */
    char library[64];    /* "diffusers" / "transformers" */
    char class_name[96]; /* "UNet2DConditionModel"; empty when null */
    int present;         /* 0 when model_index.json says [null, null] */
    sd_component_kind kind;
    char *dir; /* root/name; NULL when config_text stands for it */
    /* a model given as one file (sd_model_open_file) or a VAE file
     * (--vae FILE): the weights come from this file in Stability's original
     * layout, the configs from dir (--config) or config_text */
    char *single_file;
    int single_refiner;      /* the file has the refiner's layout */
    int vae_file;            /* a VAE on its own */
    const char *config_text; /* a config embedded in the binary (dir NULL) */
    /* LoRA deltas the loader merges into this component's weights */
    const struct sd_lora_deltas *lora;
} sd_component;

typedef struct {
    char *root;
    char pipeline_class[96];
    int force_zeros_for_empty_prompt; /* -1 when absent */
    int requires_aesthetics_score;    /* -1 when absent */
    int n;
    sd_component comps[SD_MAX_COMPONENTS];
    char *single_file; /* the model was given as this one file */
} sd_model_folder;

sd_status sd_model_open(sd_model_folder *m, const char *dir, sd_error *err);

/* The configs a single file uses when no --config names a folder: the real
 * SDXL base's or refiner's, embedded in the binary by the engine. */
typedef struct {
    const char *model_index;
    struct {
        const char *name, *text;
    } configs[8]; /* per component, ended by a NULL name */
} sd_builtin_model;

/* A single-file checkpoint in Stability's original layout (base or refiner,
 * told apart by its text encoder keys). Configs, tokenizers and scheduler
 * come from config_dir (a diffusers folder, as from_single_file(config=)),
 * or when it is NULL from the builtin model (components without folders:
 * tokenizers then use the embedded vocabulary). */
sd_status sd_model_open_file(sd_model_folder *m, const char *file, const char *config_dir,
                             const sd_builtin_model *builtin_base, const sd_builtin_model *builtin_refiner,
                             sd_error *err);
/* A folder (config_dir must be NULL) or a single file. */
sd_status sd_model_open_any(sd_model_folder *m, const char *path, const char *config_dir,
                            const sd_builtin_model *builtin_base, const sd_builtin_model *builtin_refiner,
                            sd_error *err);
void sd_model_close(sd_model_folder *m);

/* The component called name, or NULL if model_index.json does not list it. */
const sd_component *sd_model_find(const sd_model_folder *m, const char *name);
/* Like find, but an error (naming it) if absent or null. */
sd_status sd_model_require(const sd_model_folder *m, const char *name, const sd_component **out,
                           sd_error *err);

/* Loads a component's config.json (scheduler_config.json for schedulers). */
sd_status sd_component_config(const sd_component *c, sd_json_doc *doc, sd_error *err);

/* ---- weights ---- */
typedef struct {
    int nfiles;
    sd_st_file **files;
    size_t n;
    const sd_st_tensor **tensors; /* every tensor of every shard, sorted by name */
    char *description;            /* file name(s), for messages and inspect */
    char *index_path;             /* the shard index, when sharded */
    /* an original-layout file: its tensors renamed (and split or
     * transposed) to diffusers' names; transposed copies in bufs */
    sd_st_tensor *virt;
    size_t nvirt;
    void **bufs;
    size_t nbufs;
    /* for naming a missing parameter's key in the file (sd_weights_file_key) */
    char orig_component[16];
    int orig_refiner, orig_vae_file, orig_vae_levels, orig_has_unet;
    int orig_unet[4]; /* levels, layers, down_attn, up_attn of the UNet's layout */
} sd_weights;

/* Opens a component's weights. variant NULL picks what exists, preferring the
 * plain name (model.safetensors over model.fp16.safetensors); a variant
 * ("fp16") requires that variant. Sharded weights are read through
 * NAME.safetensors.index[.VARIANT].json and its weight_map. */
sd_status sd_weights_open(sd_weights *w, const sd_component *c, const char *variant, sd_error *err);
/* The same for an explicit folder and base name ("diffusion_pytorch_model"). */
sd_status sd_weights_open_dir(sd_weights *w, const char *dir, const char *basename, const char *variant,
                              sd_error *err);
void sd_weights_close(sd_weights *w);

/* One component ("unet", "vae", "text_encoder", "text_encoder_2") of a
 * single-file checkpoint in Stability's original layout (original_layout.h),
 * under diffusers' names; cfg is the component's config (the UNet's and the
 * VAE's block numbering follow it). refiner: the refiner's layout. vae_file:
 * path is a VAE alone, its keys with or without first_stage_model. A key
 * that belongs to no component, or maps to no parameter, is an error naming
 * it. */
sd_status sd_weights_open_original(sd_weights *w, const char *path, const char *component, int refiner, int vae_file,
                                   const sd_json_doc *cfg, sd_error *err);
/* For a file in the original layout, the key a diffusers parameter would
 * have there (messages): 1 and out, else 0. */
int sd_weights_file_key(const sd_weights *w, const char *name, char *out, size_t len);
const sd_st_tensor *sd_weights_find(const sd_weights *w, const char *name);

/* The weight file base name of a known network class, or NULL. */
const char *sd_class_weights_basename(const char *class_name);

#endif
