/* presets_blob.S - the config files `sdxl random-model` writes, embedded
 * from presets/ at build time (each NUL-terminated; names in presets.h).
 *
 * presets/sdxl-base, presets/sdxl-refiner: the values of
 * stabilityai/stable-diffusion-xl-base-1.0 and -refiner-1.0 (model_index.json,
 * unet, vae, text encoders, scheduler; the refiner shares the base's VAE,
 * text_encoder_2 and scheduler), as recorded in ../shared/testdata/real-sdxl;
 * a test checks they stay equal. presets/tiny: a small SDXL-shaped model
 * (3 UNet levels of 16-48 channels, 2-3 layer text encoders with the real
 * 49,408-token vocabulary) that runs a whole pipeline in well under a second
 * on a CPU. */
    .section .rodata
    .global sd_preset_base_model_index
sd_preset_base_model_index:
    .incbin "worker/engine/weights/presets/sdxl-base/model_index.json"
    .byte 0
    .global sd_preset_refiner_model_index
sd_preset_refiner_model_index:
    .incbin "worker/engine/weights/presets/sdxl-refiner/model_index.json"
    .byte 0
    .global sd_preset_base_unet
sd_preset_base_unet:
    .incbin "worker/engine/weights/presets/sdxl-base/unet.json"
    .byte 0
    .global sd_preset_refiner_unet
sd_preset_refiner_unet:
    .incbin "worker/engine/weights/presets/sdxl-refiner/unet.json"
    .byte 0
    .global sd_preset_vae
sd_preset_vae:
    .incbin "worker/engine/weights/presets/sdxl-base/vae.json"
    .byte 0
    .global sd_preset_text_encoder
sd_preset_text_encoder:
    .incbin "worker/engine/weights/presets/sdxl-base/text_encoder.json"
    .byte 0
    .global sd_preset_text_encoder_2
sd_preset_text_encoder_2:
    .incbin "worker/engine/weights/presets/sdxl-base/text_encoder_2.json"
    .byte 0
    .global sd_preset_scheduler
sd_preset_scheduler:
    .incbin "worker/engine/weights/presets/sdxl-base/scheduler.json"
    .byte 0
    .global sd_preset_tiny_model_index
sd_preset_tiny_model_index:
    .incbin "worker/engine/weights/presets/tiny/model_index.json"
    .byte 0
    .global sd_preset_tiny_unet
sd_preset_tiny_unet:
    .incbin "worker/engine/weights/presets/tiny/unet.json"
    .byte 0
    .global sd_preset_tiny_vae
sd_preset_tiny_vae:
    .incbin "worker/engine/weights/presets/tiny/vae.json"
    .byte 0
    .global sd_preset_tiny_text_encoder
sd_preset_tiny_text_encoder:
    .incbin "worker/engine/weights/presets/tiny/text_encoder.json"
    .byte 0
    .global sd_preset_tiny_text_encoder_2
sd_preset_tiny_text_encoder_2:
    .incbin "worker/engine/weights/presets/tiny/text_encoder_2.json"
    .byte 0
    .section .note.GNU-stack,"",@progbits
