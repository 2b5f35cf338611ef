/* builtin_configs.S - the configs of stabilityai/stable-diffusion-xl-base-1.0
 * and -refiner-1.0 (model_index.json, unet, vae, text encoders, scheduler; the
 * refiner shares the base's VAE, text_encoder_2 and scheduler), as recorded in
 * ../shared/testdata/real-sdxl (a test checks they stay equal), embedded from
 * common/builtin/ at build time, each NUL-terminated. A single-file checkpoint
 * without --config uses them (builtin_models.c); `sdxl random-model` writes
 * them for its sdxl-base and sdxl-refiner presets. */
    .section .rodata
    .global sd_preset_base_model_index
sd_preset_base_model_index:
    .incbin "common/builtin/sdxl-base/model_index.json"
    .byte 0
    .global sd_preset_refiner_model_index
sd_preset_refiner_model_index:
    .incbin "common/builtin/sdxl-refiner/model_index.json"
    .byte 0
    .global sd_preset_base_unet
sd_preset_base_unet:
    .incbin "common/builtin/sdxl-base/unet.json"
    .byte 0
    .global sd_preset_refiner_unet
sd_preset_refiner_unet:
    .incbin "common/builtin/sdxl-refiner/unet.json"
    .byte 0
    .global sd_preset_vae
sd_preset_vae:
    .incbin "common/builtin/sdxl-base/vae.json"
    .byte 0
    .global sd_preset_text_encoder
sd_preset_text_encoder:
    .incbin "common/builtin/sdxl-base/text_encoder.json"
    .byte 0
    .global sd_preset_text_encoder_2
sd_preset_text_encoder_2:
    .incbin "common/builtin/sdxl-base/text_encoder_2.json"
    .byte 0
    .global sd_preset_scheduler
sd_preset_scheduler:
    .incbin "common/builtin/sdxl-base/scheduler.json"
    .byte 0
    .section .note.GNU-stack,"",@progbits
