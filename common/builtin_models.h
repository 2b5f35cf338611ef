/* builtin_models.h - the real SDXL base and refiner configs embedded in the
 * binaries (builtin_configs.S), for single-file checkpoints opened without a
 * --config folder. */
#ifndef SDXL_COMMON_BUILTIN_MODELS_H
#define SDXL_COMMON_BUILTIN_MODELS_H

#include "common/model_folder.h"

extern const sd_builtin_model sd_builtin_sdxl_base, sd_builtin_sdxl_refiner;

/* the embedded files themselves (NUL-terminated JSON) */
extern const char sd_preset_base_model_index[], sd_preset_refiner_model_index[], sd_preset_base_unet[],
    sd_preset_refiner_unet[], sd_preset_vae[], sd_preset_text_encoder[], sd_preset_text_encoder_2[],
    sd_preset_scheduler[];

/* A model folder or single file (folder_or_file), with --config DIR for a
 * file, using the builtin configs for a file without one. */
sd_status sd_model_open_path(sd_model_folder *m, const char *folder_or_file, const char *config_dir, sd_error *err);

#endif
