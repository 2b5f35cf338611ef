/* long_prompt.c - see long_prompt.h. Follows compel/embeddings_provider.py
 * (get_embeddings_for_weighted_prompt_fragments, _chunk_and_pad_token_ids,
 * _find_next_best_split_point, build_weighted_embedding_tensor,
 * _get_token_ranges_for_fragments, apply_embedding_weights) step by step,
 * in float32 where compel computes in float32. */
#include "worker/engine/text/long_prompt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "worker/engine/text/prompt_weights.h"

#define CHUNK 77 /* CLIP's positions: bos + 75 tokens + eos */
/* compel takes any length; past this a prompt is surely a mistake (a file
 * pasted as a prompt) and its encoder batch and conditioning would run to
 * gigabytes, so it is refused, naming its length */
#define MAX_CHUNKS 64

typedef struct {
    int64_t *ids;
    float *weights; /* compel keeps per-token weights as float32 */
    int n;          /* tokens so far (a multiple of CHUNK once chunked) */
    int cap, wcap;  /* room in ids and in weights */
} token_seq;

typedef struct {
    sd_clip_tokenizer *tok;
    sd_clip_text *te;
    int skip, D;
    float *empty; /* [CHUNK, D], made on first need */
} encoder;

static sd_status seq_push(token_seq *s, int64_t id, float w, sd_error *err)
{
    if (sd_grow((void **)&s->ids, &s->cap, s->n, sizeof *s->ids, 128) ||
        sd_grow((void **)&s->weights, &s->wcap, s->n, sizeof *s->weights, 128))
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    s->ids[s->n] = id;
    s->weights[s->n++] = w;
    return SD_OK;
}

static void seq_free(token_seq *s)
{
    free(s->ids);
    free(s->weights);
    memset(s, 0, sizeof *s);
}

/* one fragment's tokens (no bos/eos), malloc'd */
static sd_status fragment_tokens(sd_clip_tokenizer *tok, const char *text, int32_t **ids, int *n, sd_error *err)
{
    int cap = 256;
    for (;;) {
        *ids = malloc((size_t)cap * sizeof **ids);
        if (!*ids)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        sd_status st = sd_clip_encode(tok, text, *ids, cap, n, err);
        if (st != SD_OK || *n <= cap) {
            if (st != SD_OK) {
                free(*ids);
                *ids = NULL;
            }
            return st;
        }
        free(*ids);
        cap = *n;
    }
}

static int token_is(sd_clip_tokenizer *tok, int64_t id, const char *spelled)
{
    size_t len;
    const char *t = sd_clip_token_text(tok, (int32_t)id, &len);
    return t && len == strlen(spelled) && !memcmp(t, spelled, len);
}

static int token_ends_word(sd_clip_tokenizer *tok, int64_t id)
{
    size_t len;
    const char *t = sd_clip_token_text(tok, (int32_t)id, &len);
    return t && len >= 4 && !memcmp(t + len - 4, "</w>", 4);
}

/* _find_next_best_split_point with SplitLongTextMode.SENTENCES: the last
 * sentence end within the first max tokens, else the last phrase end, else
 * the last word end, else max; the chunk ends after it */
static int split_point(sd_clip_tokenizer *tok, const int64_t *ids, int n, int max)
{
    if (n <= max)
        return max;
    static const char *const phrase_ends[] = {".</w>", ",</w>", ";</w>", ":</w>"};
    for (int i = max - 1; i >= 0; i--)
        if (token_is(tok, ids[i], ".</w>"))
            return i + 1;
    for (int i = max - 1; i >= 0; i--)
        for (int k = 0; k < 4; k++)
            if (token_is(tok, ids[i], phrase_ends[k]))
                return i + 1;
    for (int i = max - 1; i >= 0; i--)
        if (token_ends_word(tok, ids[i]))
            return i + 1;
    return max;
}

/* _chunk_and_pad_token_ids: flat (tokens, weights) -> chunks of CHUNK */
static sd_status chunk_and_pad(sd_clip_tokenizer *tok, const token_seq *flat, token_seq *out, sd_error *err)
{
    int64_t bos = sd_clip_tokenizer_bos_id(tok), eos = sd_clip_tokenizer_eos_id(tok);
    int64_t pad = sd_clip_tokenizer_pad_id(tok);
    int at = 0;
    for (;;) {
        int sp = split_point(tok, flat->ids + at, flat->n - at, CHUNK - 2);
        int take = sp < flat->n - at ? sp : flat->n - at;
        SD_TRY(seq_push(out, bos, 1.0f, err));
        for (int i = 0; i < take; i++)
            SD_TRY(seq_push(out, flat->ids[at + i], flat->weights[at + i], err));
        SD_TRY(seq_push(out, eos, 1.0f, err));
        while (out->n % CHUNK)
            SD_TRY(seq_push(out, pad, 1.0f, err));
        at += take;
        if (at >= flat->n)
            return SD_OK;
    }
}

/* every chunk through the encoder at once: [chunks * CHUNK, D] */
static sd_status encode_chunks(encoder *e, const int64_t *ids, const float *mask, int chunks, float **hid,
                               sd_error *err)
{
    sd_tensor pen = {0};
    sd_clip_outputs o = {.penultimate = &pen, .skip = e->skip, .attention_mask = mask};
    SD_TRY(sd_clip_text_forward(e->te, ids, chunks, CHUNK, &o, err));
    e->D = (int)pen.shape[2];
    sd_status st = SD_OK;
    *hid = malloc((size_t)sd_tensor_numel(&pen) * sizeof **hid);
    if (!*hid)
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    else if ((st = sd_tensor_to_host_f32(&pen, *hid, err)) != SD_OK) {
        free(*hid);
        *hid = NULL;
    }
    sd_tensor_free(&pen);
    return st;
}

/* compel's empty_z: [bos, eos, pad...], no attention mask */
static sd_status empty_chunk(encoder *e, sd_error *err)
{
    if (e->empty)
        return SD_OK;
    int64_t ids[CHUNK];
    ids[0] = sd_clip_tokenizer_bos_id(e->tok);
    ids[1] = sd_clip_tokenizer_eos_id(e->tok);
    for (int i = 2; i < CHUNK; i++)
        ids[i] = sd_clip_tokenizer_pad_id(e->tok);
    return encode_chunks(e, ids, NULL, 1, &e->empty, err);
}

/* build_weighted_embedding_tensor: each chunk encoded under mask (NULL:
 * all ones, the same as no mask), then tokens weighted away from empty */
static sd_status weighted(encoder *e, const token_seq *s, const float *mask, float **out, sd_error *err)
{
    int chunks = s->n / CHUNK;
    SD_TRY(encode_chunks(e, s->ids, mask, chunks, out, err));
    size_t D = (size_t)e->D;
    for (int c = 0; c < chunks; c++) {
        const float *w = s->weights + (size_t)c * CHUNK;
        int all_one = 1;
        for (int i = 0; i < CHUNK; i++)
            all_one &= w[i] == 1.0f;
        if (all_one)
            continue;
        sd_status st = empty_chunk(e, err);
        if (st != SD_OK) {
            free(*out);
            *out = NULL;
            return st;
        }
        for (int i = 0; i < CHUNK; i++) {
            if (w[i] == 1.0f) /* torch.where keeps z itself there */
                continue;
            float *z = *out + ((size_t)c * CHUNK + (size_t)i) * D;
            const float *em = e->empty + (size_t)i * D;
            for (size_t d = 0; d < D; d++) {
                float delta = z[d] - em[d];
                z[d] = em[d] + delta * w[i];
            }
        }
    }
    return SD_OK;
}

/* _get_token_ranges_for_fragments (not truncating): where each fragment's
 * tokens sit in the chunked ids, stepping over the bos/eos/pad between
 * chunks; [first, last], or -1 for a fragment without tokens */
static sd_status fragment_range(sd_clip_tokenizer *tok, const token_seq *s, const int32_t *ft, int fn, int *from,
                                int *first, int *last, const char *text, sd_error *err)
{
    *first = *last = -1;
    if (fn == 0)
        return SD_OK;
    int64_t bos = sd_clip_tokenizer_bos_id(tok), eos = sd_clip_tokenizer_eos_id(tok);
    int64_t pad = sd_clip_tokenizer_pad_id(tok);
    int start = *from;
    for (;; start++) {
        if (start >= s->n - 1)
            return sd_fail(err, SD_ERR_INVALID, "--long-prompts: cannot find the tokens of \"%.60s\" (compel fails too)",
                           text);
        if (s->ids[start] == ft[0])
            break;
    }
    int end = start, rel = 0;
    for (;;) {
        if (end >= s->n - 1)
            return sd_fail(err, SD_ERR_INVALID, "--long-prompts: cannot find the end of \"%.60s\" (compel fails too)",
                           text);
        if (s->ids[end] == ft[rel]) {
            if (++rel == fn)
                break;
            end++;
        } else if (s->ids[end] == eos || s->ids[end] == pad || s->ids[end] == bos) {
            end++;
        } else {
            return sd_fail(err, SD_ERR_INVALID, "--long-prompts: the tokens of \"%.60s\" are not where compel expects",
                           text);
        }
    }
    *first = start;
    *last = end;
    *from = end + 1;
    return SD_OK;
}

/* everything of one prompt; frag_ids/frag_n: each fragment's tokens */
static sd_status encode_fragments(encoder *e, const sd_prompt_fragments *f, int32_t **frag_ids, const int *frag_n,
                                  float **out, int *chunks, sd_error *err)
{
    token_seq flat = {0}, seq = {0};
    float *base = NULL, *mask = NULL, *without = NULL, *lerp = NULL;
    sd_status st = SD_OK;
    for (int k = 0; k < f->n && st == SD_OK; k++)
        for (int i = 0; i < frag_n[k] && st == SD_OK; i++)
            st = seq_push(&flat, frag_ids[k][i], (float)f->items[k].weight, err);
    if (st == SD_OK)
        st = chunk_and_pad(e->tok, &flat, &seq, err);
    if (st == SD_OK && seq.n / CHUNK > MAX_CHUNKS)
        st = sd_fail(err, SD_ERR_INVALID,
                     "--long-prompts: the prompt is %d tokens in %d chunks; at most %d chunks (about %d tokens) are "
                     "encoded",
                     flat.n, seq.n / CHUNK, MAX_CHUNKS, MAX_CHUNKS * (CHUNK - 2));
    if (st == SD_OK)
        st = weighted(e, &seq, NULL, &base, err);
    size_t n = (size_t)seq.n * (size_t)e->D;
    /* the blend of [base, without fragment k...] by [1, tan(...)...],
     * normalised; as compel, in float32 */
    int blends = 0;
    for (int k = 0; k < f->n; k++)
        blends += f->items[k].weight < 1.0;
    float *lw = calloc((size_t)blends + 1, sizeof *lw);
    if (st == SD_OK && !lw)
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (st == SD_OK && blends) {
        lw[0] = 1.0f;
        lerp = calloc((size_t)(blends + 1) * n, sizeof *lerp);
        mask = malloc((size_t)seq.n * sizeof *mask);
        if (!lerp || !mask)
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
        else
            memcpy(lerp, base, n * sizeof *lerp);
    }
    int from = 0, b = 0;
    for (int k = 0; k < f->n && st == SD_OK && blends; k++) {
        int first, last;
        st = fragment_range(e->tok, &seq, frag_ids[k], frag_n[k], &from, &first, &last, f->items[k].text, err);
        if (st != SD_OK || !(f->items[k].weight < 1.0))
            continue;
        if (first < 0) {
            st = sd_fail(err, SD_ERR_INVALID,
                         "--long-prompts: an empty fragment weighted %g (compel cannot down-weight nothing)",
                         f->items[k].weight);
            break;
        }
        for (int i = 0; i < seq.n; i++)
            mask[i] = i >= first && i <= last ? 0.0f : 1.0f;
        /* the chunks' first and last positions stay visible */
        for (int i = 0; i < seq.n; i += CHUNK) {
            mask[i] = 1.0f;
            mask[i + CHUNK - 1] = 1.0f;
        }
        st = weighted(e, &seq, mask, &without, err);
        if (st == SD_OK) {
            b++;
            memcpy(lerp + (size_t)b * n, without, n * sizeof *lerp);
            double w = f->items[k].weight < 1e-5 ? 1e-5 : f->items[k].weight;
            lw[b] = (float)tan((1.0 - w) * 3.141592653589793 / 2); /* math.pi */
        }
        free(without);
        without = NULL;
    }
    if (st == SD_OK && blends) {
        float sum = 0.0f;
        for (int i = 0; i <= blends; i++)
            sum += lw[i];
        for (int i = 0; i <= blends; i++)
            lw[i] = lw[i] / sum;
        for (size_t j = 0; j < n; j++) {
            float acc = lerp[j] * lw[0];
            for (int i = 1; i <= blends; i++)
                acc += lerp[(size_t)i * n + j] * lw[i];
            base[j] = acc;
        }
    }
    free(lw);
    free(lerp);
    free(mask);
    if (st == SD_OK) {
        *out = base;
        *chunks = seq.n / CHUNK;
    } else {
        free(base);
    }
    seq_free(&flat);
    seq_free(&seq);
    return st;
}

sd_status sd_long_prompt_encode(sd_clip_tokenizer *tok, sd_clip_text *te, const char *prompt, int skip, float **out,
                                int *chunks, int *D, sd_error *err)
{
    *out = NULL;
    if (sd_clip_tokenizer_max_length(tok) != CHUNK)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "--long-prompts: tokenizer max length %d (77 supported)",
                       sd_clip_tokenizer_max_length(tok));
    sd_prompt_fragments f;
    SD_TRY(sd_prompt_parse_compel(prompt, &f, err));
    int32_t **ids = calloc((size_t)f.n, sizeof *ids);
    int *nids = calloc((size_t)f.n, sizeof *nids);
    sd_status st = ids && nids ? SD_OK : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (int k = 0; k < f.n && st == SD_OK; k++)
        st = fragment_tokens(tok, f.items[k].text, &ids[k], &nids[k], err);
    encoder e = {tok, te, skip, 0, NULL};
    if (st == SD_OK)
        st = encode_fragments(&e, &f, ids, nids, out, chunks, err);
    if (st == SD_OK)
        *D = e.D;
    for (int k = 0; ids && k < f.n; k++)
        free(ids[k]);
    free(ids);
    free(nids);
    free(e.empty);
    sd_prompt_fragments_free(&f);
    return st;
}

sd_status sd_long_prompt_empty_chunk(sd_clip_tokenizer *tok, sd_clip_text *te, int skip, float **out, int *D,
                                     sd_error *err)
{
    encoder e = {tok, te, skip, 0, NULL};
    SD_TRY(empty_chunk(&e, err));
    *out = e.empty;
    *D = e.D;
    return SD_OK;
}
