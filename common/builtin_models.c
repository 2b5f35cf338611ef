/* builtin_models.c - see builtin_models.h. */
#include "common/builtin_models.h"

const sd_builtin_model sd_builtin_sdxl_base = {
    sd_preset_base_model_index,
    {{"unet", sd_preset_base_unet},
     {"vae", sd_preset_vae},
     {"text_encoder", sd_preset_text_encoder},
     {"text_encoder_2", sd_preset_text_encoder_2},
     {"scheduler", sd_preset_scheduler},
     {0, 0}},
};

/* the refiner repository's VAE, text_encoder_2 and scheduler configs are the base's */
const sd_builtin_model sd_builtin_sdxl_refiner = {
    sd_preset_refiner_model_index,
    {{"unet", sd_preset_refiner_unet},
     {"vae", sd_preset_vae},
     {"text_encoder_2", sd_preset_text_encoder_2},
     {"scheduler", sd_preset_scheduler},
     {0, 0}},
};

sd_status sd_model_open_path(sd_model_folder *m, const char *folder_or_file, const char *config_dir, sd_error *err)
{
    return sd_model_open_any(m, folder_or_file, config_dir, &sd_builtin_sdxl_base, &sd_builtin_sdxl_refiner, err);
}
