/* clip_vocab.h - the CLIP vocabulary embedded in the binaries (see
 * clip_vocab_blob.S) and a writer of complete tokenizer folders from it. */
#ifndef SDXL_WORKER_CLIP_VOCAB_H
#define SDXL_WORKER_CLIP_VOCAB_H

#include "common/error.h"

/* Writes vocab.json, merges.txt, tokenizer_config.json and
 * special_tokens_map.json into dir (created). pad_bang selects SDXL's second
 * tokenizer (pad token "!") instead of the first (pad <|endoftext|>). */
sd_status sd_clip_write_tokenizer(const char *dir, int pad_bang, sd_error *err);

#endif
