/* lora.h - LoRA files as users download them, matched to the parameters
 * they change:
 *   - kohya / SGM naming (the seed's sd_xl_offset_example-lora_1.0):
 *     lora_unet_<module with _ for .>.lora_down.weight / .lora_up.weight /
 *     .alpha, the module in diffusers' names or the original layout's
 *     (input_blocks_4_1_...), lora_te1_ / lora_te2_ for the two text
 *     encoders; linear layers and convolutions (LoCon 3x3 down, 1x1 up);
 *   - diffusers / PEFT naming: unet.<module>.lora_A.weight / .lora_B.weight
 *     (or .lora.down / .lora.up, .lora_down / .lora_up), text_encoder.,
 *     text_encoder_2., optional .alpha.
 * A module resolves against the names of the model's own weights, so a key
 * that matches no layer is an error naming it, never skipped. The merge
 * itself (W += scale * alpha / rank * up @ down, in fp32, before any cast)
 * is the loader's (worker/engine/weights). */
#ifndef SDXL_COMMON_LORA_H
#define SDXL_COMMON_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/model_folder.h"
#include "common/safetensors.h"

typedef struct {
    char component[16];  /* "unet", "text_encoder", "text_encoder_2" */
    char target[256];    /* the parameter: "down_blocks.1.attentions.0.proj_in.weight" */
    const sd_st_tensor *up, *down;
    float scale;         /* the user's scale * alpha / rank */
} sd_lora_delta;

typedef struct {
    char *path;
    float scale;
    sd_st_file *file;
    sd_lora_delta *d;
    size_t n;
} sd_lora;

/* The names of m's weights that LoRA modules resolve against (its UNet and
 * both text encoders; headers only), read once for all the LoRAs of a load. */
typedef struct sd_lora_index sd_lora_index;
sd_status sd_lora_index_open(sd_lora_index **out, const sd_model_folder *m, const char *variant, sd_error *err);
void sd_lora_index_free(sd_lora_index *idx);

/* Opens path and resolves every module against idx. */
sd_status sd_lora_open(sd_lora *l, const char *path, float scale, const sd_lora_index *idx, sd_error *err);
void sd_lora_close(sd_lora *l);

/* The deltas of LoRAs for one component, sorted by target, for the loader. */
typedef struct sd_lora_deltas {
    const sd_lora_delta **d;
    size_t n;
} sd_lora_deltas;

sd_status sd_lora_deltas_for(const sd_lora *loras, int nloras, const char *component, sd_lora_deltas *out,
                             sd_error *err);
void sd_lora_deltas_free(sd_lora_deltas *d);
/* [first, first + *count) of d's entries for target */
size_t sd_lora_deltas_find(const sd_lora_deltas *d, const char *target, size_t *count);

#endif
