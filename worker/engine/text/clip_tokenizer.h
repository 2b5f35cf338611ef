/* clip_tokenizer.h - the CLIP byte-level BPE tokenizer, reproducing the ids of
 * transformers' slow CLIPTokenizer as diffusers' SDXL pipelines call it
 * (padding="max_length", max_length=77, truncation=True), on the path taken
 * without ftfy: BasicTokenizer clean-up (control and format characters
 * dropped, whitespace to spaces, spaces around CJK ideographs, NFC,
 * lower-case, accents kept), CLIP's regex split, BPE over the first 48,894
 * merges. Special tokens (bos, eos, unk, pad) are never split: in SDXL's
 * second tokenizer, whose pad token is "!", a "!" in the text is id 0.
 *
 * A tokenizer keeps a word cache, so one instance must not be used from two
 * threads at once. */
#ifndef SDXL_WORKER_CLIP_TOKENIZER_H
#define SDXL_WORKER_CLIP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct sd_clip_tokenizer sd_clip_tokenizer;

/* Loads vocab.json, merges.txt and special_tokens_map.json /
 * tokenizer_config.json from a tokenizer folder. */
sd_status sd_clip_tokenizer_load(sd_clip_tokenizer **out, const char *dir, sd_error *err);
void sd_clip_tokenizer_free(sd_clip_tokenizer *t);

int sd_clip_tokenizer_max_length(const sd_clip_tokenizer *t); /* 77 */
int32_t sd_clip_tokenizer_pad_id(const sd_clip_tokenizer *t);
int32_t sd_clip_tokenizer_bos_id(const sd_clip_tokenizer *t);
int32_t sd_clip_tokenizer_eos_id(const sd_clip_tokenizer *t);

/* Tokenizes text (UTF-8) into exactly max_length ids: bos, the first
 * max_length-2 tokens, eos, then padding. *untruncated_len (may be NULL)
 * receives bos + all tokens + eos. Invalid UTF-8 is an SD_ERR_INVALID. */
sd_status sd_clip_tokenize(sd_clip_tokenizer *t, const char *text, int64_t *ids, int *untruncated_len,
                           sd_error *err);

/* What tokenize cuts from text: *dropped tokens (0 when it fits), and
 * their text in out (as transformers decodes them, for the warning diffusers
 * gives: "The following part of your input was truncated ..."). */
sd_status sd_clip_dropped_text(sd_clip_tokenizer *t, const char *text, char *out, size_t len, int *dropped,
                               sd_error *err);

/* The vocabulary's spelling of token id (byte-level characters, "</w>"
 * ending a word), as transformers' convert_ids_to_tokens gives it; not
 * NUL-terminated (*len bytes). NULL for an id without an entry, or out of
 * memory on the first call (it builds the id -> token table). */
const char *sd_clip_token_text(sd_clip_tokenizer *t, int32_t id, size_t *len);

/* Tokens of text without bos/eos/padding/truncation. Writes at most cap ids
 * and returns the total count in *n. */
sd_status sd_clip_encode(sd_clip_tokenizer *t, const char *text, int32_t *ids, int cap, int *n,
                         sd_error *err);

#endif
