/* pipeline_text.c - the text stage: diffusers' encode_prompt of the SDXL
 * pipelines (both encoders' penultimate hidden states side by side, the
 * pooled projection of encoder 2, the negative row for guidance), and with
 * --long-prompts compel's CompelForSDXL in its place (long_prompt.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/text/long_prompt.h"

#define CHUNK 77

void sd_text_result_free(sd_text_result *t)
{
    free(t->embeds);
    free(t->pooled);
    free(t->r_embeds);
    free(t->r_pooled);
    memset(t, 0, sizeof *t);
}

/* penultimate hidden states (hidden NULL: not wanted) and the pooled
 * projection (pooled NULL: not wanted; encoder 2) of one text, on the host */
static sd_status encode_one(sd_clip_tokenizer *tok, sd_clip_text *te, const char *text, int skip, float **hidden,
                            int *S, int *D, float **pooled, int *P, sd_error *err)
{
    int64_t ids[CHUNK];
    int L = sd_clip_tokenizer_max_length(tok);
    if (L > CHUNK)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "tokenizer max length %d (77 supported)", L);
    SD_TRY(sd_clip_tokenize(tok, text, ids, NULL, err));
    sd_tensor pen = {0}, emb = {0};
    sd_clip_outputs o = {.penultimate = hidden ? &pen : NULL, .text_embeds = pooled ? &emb : NULL, .skip = skip};
    sd_status st = sd_clip_text_forward(te, ids, 1, L, &o, err);
    if (st == SD_OK && hidden) {
        *S = (int)pen.shape[1];
        *D = (int)pen.shape[2];
        *hidden = malloc((size_t)sd_tensor_numel(&pen) * sizeof(float));
        st = *hidden ? sd_tensor_to_host_f32(&pen, *hidden, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    if (st == SD_OK && pooled) {
        *P = (int)emb.shape[1];
        *pooled = malloc((size_t)*P * sizeof(float));
        st = *pooled ? sd_tensor_to_host_f32(&emb, *pooled, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    sd_tensor_free(&pen);
    sd_tensor_free(&emb);
    return st;
}

/* rows [S, D] grown to S2 rows with copies of pad [CHUNK, D]: compel pads a
 * shorter conditioning with the empty prompt's chunk */
static sd_status pad_rows(float **rows, int S, int S2, const float *pad, int D, sd_error *err)
{
    if (S2 <= S)
        return SD_OK;
    float *r = realloc(*rows, (size_t)S2 * (size_t)D * sizeof *r);
    if (!r)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (int s = S; s < S2; s += CHUNK)
        memcpy(r + (size_t)s * D, pad, (size_t)CHUNK * (size_t)D * sizeof *r);
    *rows = r;
    return SD_OK;
}

/* [S, D1] and [S, D2] side by side: [S, D1 + D2] (h1 NULL: D2 alone) */
static sd_status side_by_side(const float *h1, int D1, const float *h2, int D2, int S, float **out, sd_error *err)
{
    *out = malloc((size_t)S * (size_t)(D1 + D2) * sizeof **out);
    if (!*out)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (int s = 0; s < S; s++) {
        if (D1)
            memcpy(*out + (size_t)s * (D1 + D2), h1 + (size_t)s * D1, (size_t)D1 * sizeof(float));
        memcpy(*out + (size_t)s * (D1 + D2) + D1, h2 + (size_t)s * D2, (size_t)D2 * sizeof(float));
    }
    return SD_OK;
}

typedef struct {
    sd_clip_tokenizer *t1, *t2;
    sd_clip_text *e1, *e2; /* e1 NULL: the refiner, encoder 2 alone */
    int long_prompts;
} encoders;

/* compel's padding for a pair: both encoders' empty chunks side by side */
static sd_status empty_pair(const encoders *x, int skip, float **out, int *D, sd_error *err)
{
    float *p1 = NULL, *p2 = NULL;
    int D1 = 0, D2 = 0;
    sd_status st = SD_OK;
    if (x->e1)
        st = sd_long_prompt_empty_chunk(x->t1, x->e1, skip, &p1, &D1, err);
    if (st == SD_OK)
        st = sd_long_prompt_empty_chunk(x->t2, x->e2, skip, &p2, &D2, err);
    if (st == SD_OK)
        st = side_by_side(p1, D1, p2, D2, CHUNK, out, err);
    if (st == SD_OK)
        *D = D1 + D2;
    free(p1);
    free(p2);
    return st;
}

/* encode_prompt of diffusers for one (prompt, prompt_2) pair: [S, D1 + D2]
 * (or D2 alone without encoder 1) and pooled [P]. With --long-prompts each
 * encoder gives compel's chunks, the shorter padded to the longer as
 * CompelForSDXL pads them; the pooled projection stays the raw text's. */
static sd_status encode_pair(const encoders *x, const char *text1, const char *text2, int skip, float **embeds,
                             int *S, int *D, float **pooled, int *P, sd_error *err)
{
    float *h1 = NULL, *h2 = NULL;
    int S1 = 0, D1 = 0, S2 = 0, D2 = 0, chunks;
    /* without encoder 1 (the refiner) diffusers zips [prompt, prompt_2] with
     * [tokenizer_2]: encoder 2 then reads the first prompt, never prompt_2 */
    const char *for2 = x->e1 ? text2 : text1;
    sd_status st = SD_OK;
    if (!x->long_prompts) {
        if (x->e1)
            st = encode_one(x->t1, x->e1, text1, skip, &h1, &S1, &D1, NULL, NULL, err);
        if (st == SD_OK)
            st = encode_one(x->t2, x->e2, for2, skip, &h2, &S2, &D2, pooled, P, err);
    } else {
        if (x->e1 && (st = sd_long_prompt_encode(x->t1, x->e1, text1, skip, &h1, &chunks, &D1, err)) == SD_OK)
            S1 = chunks * CHUNK;
        if (st == SD_OK && (st = sd_long_prompt_encode(x->t2, x->e2, for2, skip, &h2, &chunks, &D2, err)) == SD_OK)
            S2 = chunks * CHUNK;
        if (st == SD_OK) /* the pooled projection alone, of the raw text */
            st = encode_one(x->t2, x->e2, for2, skip, NULL, NULL, NULL, pooled, P, err);
        float *pad = NULL;
        int pd;
        if (st == SD_OK && x->e1 && S1 != S2) {
            int longer = S1 > S2 ? S1 : S2;
            if (S1 < S2 && (st = sd_long_prompt_empty_chunk(x->t1, x->e1, skip, &pad, &pd, err)) == SD_OK)
                st = pad_rows(&h1, S1, longer, pad, D1, err);
            else if (S2 < S1 && (st = sd_long_prompt_empty_chunk(x->t2, x->e2, skip, &pad, &pd, err)) == SD_OK)
                st = pad_rows(&h2, S2, longer, pad, D2, err);
            S1 = S2 = longer;
        }
        free(pad);
    }
    if (st == SD_OK && x->e1 && S1 != S2)
        st = sd_fail(err, SD_ERR_INVALID, "the two tokenizers give %d and %d tokens", S1, S2);
    if (st == SD_OK && (st = side_by_side(h1, D1, h2, D2, S2, embeds, err)) == SD_OK) {
        *S = S2;
        *D = D1 + D2;
    }
    free(h1);
    free(h2);
    return st;
}

/* Stacks [negative; positive] (or positive alone) into out buffers. */
static sd_status stack(int cfg, const float *neg, const float *pos, size_t n, float **out, sd_error *err)
{
    *out = malloc((size_t)(1 + cfg) * n * sizeof(float));
    if (!*out)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (cfg) {
        if (neg)
            memcpy(*out, neg, n * sizeof(float));
        else
            memset(*out, 0, n * sizeof(float));
    }
    memcpy(*out + (size_t)cfg * n, pos, n * sizeof(float));
    return SD_OK;
}

static sd_status text_conditioning(const encoders *x, const sd_gen_params *g, int cfg, int force_zeros,
                                   float **embeds, float **pooled, int *S, int *D, int *P, sd_error *err)
{
    const char *p2 = g->prompt_2 ? g->prompt_2 : g->prompt;
    float *pe = NULL, *pp = NULL, *ne = NULL, *np = NULL, *pad = NULL;
    int nS = 0, nD, nP, pd;
    sd_status st = encode_pair(x, g->prompt, p2, g->clip_skip, &pe, S, D, &pp, P, err);
    int zero = g->negative_prompt == NULL && force_zeros;
    if (st == SD_OK && cfg && !zero) {
        const char *n1 = g->negative_prompt ? g->negative_prompt : "";
        const char *n2 = g->negative_prompt_2 ? g->negative_prompt_2 : n1;
        /* diffusers applies clip_skip to the prompt only: the negative
         * prompt always takes hidden_states[-2] */
        st = encode_pair(x, n1, n2, 0, &ne, &nS, &nD, &np, &nP, err);
    }
    /* compel pads the shorter of prompt and negative prompt */
    if (st == SD_OK && ne && nS < *S && (st = empty_pair(x, 0, &pad, &pd, err)) == SD_OK) {
        st = pad_rows(&ne, nS, *S, pad, nD, err);
        nS = *S;
    } else if (st == SD_OK && ne && *S < nS && (st = empty_pair(x, g->clip_skip, &pad, &pd, err)) == SD_OK) {
        st = pad_rows(&pe, *S, nS, pad, *D, err);
        *S = nS;
    }
    if (st == SD_OK)
        st = stack(cfg, ne, pe, (size_t)*S * (size_t)*D, embeds, err);
    if (st == SD_OK)
        st = stack(cfg, np, pp, (size_t)*P, pooled, err);
    free(pe);
    free(pp);
    free(ne);
    free(np);
    free(pad);
    return st;
}

sd_status sd_stage_text(sd_pipeline *p, const sd_gen_params *g, sd_text_result *out, sd_error *err)
{
    memset(out, 0, sizeof *out);
    if (!p->te2)
        return sd_fail(err, SD_ERR_INVALID, "text stage: the text encoders are not loaded");
    if (!g->prompt)
        return sd_fail(err, SD_ERR_INVALID, "--prompt: a prompt is required");
    out->cfg = g->guidance > 1.0f;
    encoders base = {p->tok1, p->tok2, p->te1, p->te2, g->long_prompts};
    sd_status st = text_conditioning(&base, g, out->cfg, p->force_zeros, &out->embeds, &out->pooled, &out->S,
                                     &out->D, &out->P, err);
    if (st == SD_OK && p->has_refiner) {
        encoders refiner = {NULL, p->rtok2, NULL, p->rte2, g->long_prompts};
        st = text_conditioning(&refiner, g, out->cfg, p->r_force_zeros, &out->r_embeds, &out->r_pooled, &out->rS,
                               &out->rD, &out->rP, err);
    }
    if (st != SD_OK)
        sd_text_result_free(out);
    return st;
}

sd_status sd_pipeline_truncation(const sd_pipeline *p, const sd_gen_params *g, char *out, size_t len, sd_error *err)
{
    out[0] = 0;
    /* --long-prompts encodes every token (only the pooled projection reads
     * the first 77, as compel's does) */
    if (!g->prompt || (!p->tok1 && !p->tok2) || g->long_prompts)
        return SD_OK;
    /* diffusers checks each encoder's prompt: prompt with tokenizer, prompt_2 with tokenizer_2 */
    const char *texts[2] = {g->prompt, g->prompt_2 ? g->prompt_2 : g->prompt};
    sd_clip_tokenizer *toks[2] = {p->tok1 ? p->tok1 : p->tok2, p->tok2};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && (!g->prompt_2 || !strcmp(g->prompt_2, g->prompt)))
            break;
        char part[1024];
        int dropped;
        SD_TRY(sd_clip_dropped_text(toks[i], texts[i], part, sizeof part, &dropped, err));
        if (dropped) {
            size_t at = strlen(out);
            snprintf(out + at, len - at, "%s%s%s", at ? "; " : "", i ? "prompt_2: " : "", part);
        }
    }
    return SD_OK;
}
