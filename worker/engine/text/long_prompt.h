/* long_prompt.h - `--long-prompts`: compel's conditioning of one prompt
 * through one CLIP text encoder, as CompelForSDXL (compel 2.5) sets up its
 * EmbeddingsProvider for SDXL: truncate_long_prompts=False, split at
 * sentence ends (falling back to phrase ends, word ends, then 75 tokens),
 * MASK down-weighting, penultimate hidden states not normalised.
 *
 *   - The prompt is parsed (prompt_weights.h) into weighted fragments, each
 *     tokenized on its own and the tokens joined.
 *   - They are cut into chunks of at most 75 tokens; each chunk becomes
 *     [bos, tokens, eos, pad...] of 77 and is encoded on its own; the
 *     result is the chunks' hidden states one after another (77 per chunk).
 *   - A token of weight w != 1 becomes empty + (z - empty) * w, where empty
 *     is the encoding of the empty prompt ([bos, eos, pad...]).
 *   - A fragment of weight w < 1 also blends the whole result towards the
 *     encoding with that fragment masked out of attention (its tokens
 *     hidden from every other), by tan((1 - w) * pi / 2) against 1.
 * Prompts of more than 64 chunks (about 4,800 tokens) are refused.
 * The pooled embedding is not made here: compel takes it from the prompt's
 * raw text, truncated to 77 tokens, as diffusers does without compel. */
#ifndef SDXL_WORKER_LONG_PROMPT_H
#define SDXL_WORKER_LONG_PROMPT_H

#include "worker/engine/text/clip_text.h"
#include "worker/engine/text/clip_tokenizer.h"

/* prompt -> *out [*chunks * 77, *D] on the host (malloc'd). skip is
 * diffusers' clip_skip (0: hidden_states[-2], what compel takes). */
sd_status sd_long_prompt_encode(sd_clip_tokenizer *tok, sd_clip_text *te, const char *prompt, int skip, float **out,
                                int *chunks, int *D, sd_error *err);

/* compel's padding chunk: the empty prompt's encoding, [77, *D]; shorter
 * conditionings are padded with it to the longest one's chunk count. */
sd_status sd_long_prompt_empty_chunk(sd_clip_tokenizer *tok, sd_clip_text *te, int skip, float **out, int *D,
                                     sd_error *err);

#endif
