/* presets_blob.S - the config files `sdxl random-model` writes, embedded
 * from presets/ at build time (each NUL-terminated; names in presets.h).
 *
 * The sdxl-base and sdxl-refiner presets are the real SDXL configs, which
 * single-file checkpoints use too: common/builtin_configs.S embeds them.
 * presets/tiny: a small SDXL-shaped model
 * (3 UNet levels of 16-48 channels, 2-3 layer text encoders with the real
 * 49,408-token vocabulary) that runs a whole pipeline in well under a second
 * on a CPU. */
    .section .rodata
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
