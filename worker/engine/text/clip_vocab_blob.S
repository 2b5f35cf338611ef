/* clip_vocab_blob.S - the CLIP BPE vocabulary (vocab.json, merges.txt of
 * openai/clip-vit-large-patch14, identical for both SDXL tokenizers) linked
 * into the binaries, so a model written by `sdxl random-model` and the
 * default model of the main job need no files from outside the repository. */
    .section .rodata
    .balign 16
    .global sd_clip_vocab_json
    .global sd_clip_vocab_json_end
sd_clip_vocab_json:
    .incbin "worker/engine/text/data/clip/vocab.json"
sd_clip_vocab_json_end:
    .byte 0
    .balign 16
    .global sd_clip_merges_txt
    .global sd_clip_merges_txt_end
sd_clip_merges_txt:
    .incbin "worker/engine/text/data/clip/merges.txt"
sd_clip_merges_txt_end:
    .byte 0
    .section .note.GNU-stack,"",@progbits
