/* presets.h - the model presets `sdxl random-model` writes (JSON files in presets/,
 * embedded by presets_blob.S). */
#ifndef SDXL_WORKER_PRESETS_H
#define SDXL_WORKER_PRESETS_H

extern const char sd_preset_base_model_index[], sd_preset_refiner_model_index[], sd_preset_base_unet[],
    sd_preset_refiner_unet[], sd_preset_vae[], sd_preset_text_encoder[], sd_preset_text_encoder_2[],
    sd_preset_scheduler[], sd_preset_tiny_model_index[], sd_preset_tiny_unet[], sd_preset_tiny_vae[],
    sd_preset_tiny_text_encoder[], sd_preset_tiny_text_encoder_2[];

#endif
