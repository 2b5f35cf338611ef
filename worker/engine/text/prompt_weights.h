/* prompt_weights.h - compel's prompt syntax (compel 2.x, what diffusers users
 * weight SDXL prompts with): a prompt becomes fragments of text, each with a
 * weight, as compel's PromptParser.parse_conjunction + flatten give them.
 *
 *   word+  word-  word++   a bare word, weight 1.1^n / 0.9^n
 *   (a red ball)1.3        a group with a number: that weight
 *   (a red ball)++         a group with +/-: 1.1^n / 0.9^n
 *   "a, quoted. text"0.8   quotes group as parentheses do
 *   word.attend(1.2)       the explicit form
 *   \( \) \"               literal parentheses and quotes
 * Weights of nested groups multiply; neighbouring fragments of equal weight
 * are joined by a space; a comma glued to the next word gets a space. Text
 * that matches none of the forms is kept as written (A1111's "(word:1.2)"
 * stays literal, as in compel).
 *
 * compel's other operators (.blend(), .and(), .add(), .swap(), useLora(),
 * withLora()) change what is encoded beyond weights; they are refused with
 * an error naming them rather than read as text. */
#ifndef SDXL_WORKER_PROMPT_WEIGHTS_H
#define SDXL_WORKER_PROMPT_WEIGHTS_H

#include "common/error.h"

typedef struct {
    char *text;
    double weight;
} sd_prompt_fragment;

typedef struct {
    sd_prompt_fragment *items;
    int n, cap;
} sd_prompt_fragments;

/* Parses prompt; on success out holds at least one fragment (an empty or
 * blank prompt is one empty fragment of weight 1). */
sd_status sd_prompt_parse_compel(const char *prompt, sd_prompt_fragments *out, sd_error *err);
void sd_prompt_fragments_free(sd_prompt_fragments *f);

#endif
