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

typedef struct {
    char name[64];       /* key in model_index.json: "unet" */
    char library[64];    /* "diffusers" / "transformers" */
    char class_name[96]; /* "UNet2DConditionModel"; empty when null */
    int present;         /* 0 when model_index.json says [null, null] */
    sd_component_kind kind;
    char *dir; /* root/name */
} sd_component;

typedef struct {
    char *root;
    char pipeline_class[96];
    int force_zeros_for_empty_prompt; /* -1 when absent */
    int requires_aesthetics_score;    /* -1 when absent */
    int n;
    sd_component comps[SD_MAX_COMPONENTS];
} sd_model_folder;

sd_status sd_model_open(sd_model_folder *m, const char *dir, sd_error *err);
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
const sd_st_tensor *sd_weights_find(const sd_weights *w, const char *name);

/* The weight file base name of a known network class, or NULL. */
const char *sd_class_weights_basename(const char *class_name);

#endif
