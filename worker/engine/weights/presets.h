/* presets.h - the model presets `sdxl random-model` writes (JSON files in presets/,
 * embedded by presets_blob.S). */
#ifndef SDXL_WORKER_PRESETS_H
#define SDXL_WORKER_PRESETS_H

#include "common/builtin_models.h" /* the sdxl-base and sdxl-refiner presets */

extern const char sd_preset_tiny_model_index[], sd_preset_tiny_unet[], sd_preset_tiny_vae[],
    sd_preset_tiny_text_encoder[], sd_preset_tiny_text_encoder_2[];

#endif
