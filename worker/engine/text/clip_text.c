/* clip_text.c - see clip_text.h. Follows transformers' CLIPTextTransformer:
 * pre-LN encoder layers with a causal mask, final layer norm, pooled output
 * at argmax(input_ids) (eos_token_id == 2 in SDXL's configs: the legacy path). */
#include "worker/engine/text/clip_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/engine/weights/param_loader.h"

typedef struct {
    sd_tensor *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b, *ln2_w, *ln2_b, *fc1_w, *fc1_b,
        *fc2_w, *fc2_b;
} clip_layer;

struct sd_clip_text {
    sd_clip_config cfg;
    sd_backend *be;
    sd_tensor *tok_emb, *pos_emb, *final_ln_w, *final_ln_b, *proj;
    clip_layer *layers;
    sd_param_set params;
};

void sd_clip_text_free(sd_clip_text *m)
{
    if (!m)
        return;
    sd_param_set_free(&m->params);
    free(m->layers);
    free(m);
}

const sd_clip_config *sd_clip_text_config(const sd_clip_text *m)
{
    return &m->cfg;
}

static sd_status load_layer(sd_param_loader *pl, clip_layer *L, const sd_clip_config *c, sd_error *err)
{
    int64_t D = c->hidden, F = c->intermediate;
    SD_TRY(sd_param_get(pl, "layer_norm1.weight", SHAPE1(D), &L->ln1_w, err));
    SD_TRY(sd_param_get(pl, "layer_norm1.bias", SHAPE1(D), &L->ln1_b, err));
    SD_TRY(sd_param_get(pl, "self_attn.q_proj.weight", SHAPE2(D, D), &L->q_w, err));
    SD_TRY(sd_param_get(pl, "self_attn.q_proj.bias", SHAPE1(D), &L->q_b, err));
    SD_TRY(sd_param_get(pl, "self_attn.k_proj.weight", SHAPE2(D, D), &L->k_w, err));
    SD_TRY(sd_param_get(pl, "self_attn.k_proj.bias", SHAPE1(D), &L->k_b, err));
    SD_TRY(sd_param_get(pl, "self_attn.v_proj.weight", SHAPE2(D, D), &L->v_w, err));
    SD_TRY(sd_param_get(pl, "self_attn.v_proj.bias", SHAPE1(D), &L->v_b, err));
    SD_TRY(sd_param_get(pl, "self_attn.out_proj.weight", SHAPE2(D, D), &L->o_w, err));
    SD_TRY(sd_param_get(pl, "self_attn.out_proj.bias", SHAPE1(D), &L->o_b, err));
    SD_TRY(sd_param_get(pl, "layer_norm2.weight", SHAPE1(D), &L->ln2_w, err));
    SD_TRY(sd_param_get(pl, "layer_norm2.bias", SHAPE1(D), &L->ln2_b, err));
    SD_TRY(sd_param_get(pl, "mlp.fc1.weight", SHAPE2(F, D), &L->fc1_w, err));
    SD_TRY(sd_param_get(pl, "mlp.fc1.bias", SHAPE1(F), &L->fc1_b, err));
    SD_TRY(sd_param_get(pl, "mlp.fc2.weight", SHAPE2(D, F), &L->fc2_w, err));
    SD_TRY(sd_param_get(pl, "mlp.fc2.bias", SHAPE1(D), &L->fc2_b, err));
    return SD_OK;
}

static sd_status load_all(sd_clip_text *m, sd_param_loader *pl, sd_error *err)
{
    const sd_clip_config *c = &m->cfg;
    /* Every SDXL checkpoint names the tower "text_model."; transformers 5
     * saves a CLIPTextModel without that prefix (and loads both). */
    const char *root = pl->w && !sd_weights_find(pl->w, "text_model.embeddings.token_embedding.weight") &&
                               sd_weights_find(pl->w, "embeddings.token_embedding.weight")
                           ? ""
                           : "text_model.";
    sd_param_prefix(pl, "%sembeddings.", root);
    SD_TRY(sd_param_get(pl, "token_embedding.weight", SHAPE2(c->vocab, c->hidden), &m->tok_emb, err));
    SD_TRY(sd_param_get(pl, "position_embedding.weight", SHAPE2(c->max_positions, c->hidden), &m->pos_emb, err));
    for (int i = 0; i < c->layers; i++) {
        sd_param_prefix(pl, "%sencoder.layers.%d.", root, i);
        SD_TRY(load_layer(pl, &m->layers[i], c, err));
    }
    sd_param_prefix(pl, "%s", root);
    SD_TRY(sd_param_get(pl, "final_layer_norm.weight", SHAPE1(c->hidden), &m->final_ln_w, err));
    SD_TRY(sd_param_get(pl, "final_layer_norm.bias", SHAPE1(c->hidden), &m->final_ln_b, err));
    sd_param_prefix(pl, "%s", "");
    if (c->with_projection)
        SD_TRY(sd_param_get(pl, "text_projection.weight", SHAPE2(c->projection_dim, c->hidden), &m->proj, err));
    static const char *const ignore[] = {"position_ids", NULL};
    return sd_param_check_all_used(pl, ignore, err);
}

sd_status sd_clip_text_load(sd_clip_text **out, sd_backend *be, const sd_component *c, const char *variant,
                            sd_error *err)
{
    *out = NULL;
    sd_clip_text *m = calloc(1, sizeof *m);
    if (!m)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    m->be = be;
    sd_status st = sd_clip_config_load(&m->cfg, c, err);
    if (st != SD_OK) {
        free(m);
        return st;
    }
    m->layers = calloc((size_t)m->cfg.layers, sizeof *m->layers);
    if (!m->layers) {
        free(m);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    sd_param_loader pl;
    st = sd_param_set_open(&m->params, &pl, be, c, variant, err);
    if (st == SD_OK) {
        st = load_all(m, &pl, err);
        sd_param_set_finish(&m->params, &pl, st == SD_OK);
    }
    if (st != SD_OK) {
        sd_clip_text_free(m);
        return sd_error_prefix(err, st, "component '%s': ", c->name);
    }
    *out = m;
    return SD_OK;
}

/* One pre-LN encoder layer, in place on x. */
static sd_status layer_forward(const clip_layer *L, const sd_clip_config *c, sd_tensor *x, sd_tensor *h,
                               sd_tensor *q, sd_tensor *k, sd_tensor *v, sd_tensor *a, sd_tensor *f,
                               const sd_tensor *mask, sd_error *err)
{
    SD_TRY(sd_op_layer_norm(h, x, L->ln1_w, L->ln1_b, c->eps, err));
    SD_TRY(sd_op_linear(q, h, L->q_w, L->q_b, SD_ACT_NONE, err));
    SD_TRY(sd_op_linear(k, h, L->k_w, L->k_b, SD_ACT_NONE, err));
    SD_TRY(sd_op_linear(v, h, L->v_w, L->v_b, SD_ACT_NONE, err));
    SD_TRY(sd_op_attention_masked(a, q, k, v, mask, c->heads, 1, err));
    SD_TRY(sd_op_linear(h, a, L->o_w, L->o_b, SD_ACT_NONE, err));
    SD_TRY(sd_op_add(x, x, h, err));
    SD_TRY(sd_op_layer_norm(h, x, L->ln2_w, L->ln2_b, c->eps, err));
    SD_TRY(sd_op_linear(f, h, L->fc1_w, L->fc1_b, c->act, err));
    SD_TRY(sd_op_linear(h, f, L->fc2_w, L->fc2_b, SD_ACT_NONE, err));
    return sd_op_add(x, x, h, err);
}

static sd_status alloc_copy(sd_backend *be, sd_tensor *dst, const sd_tensor *src, sd_error *err)
{
    SD_TRY(sd_tensor_alloc(be, dst, src->ndim, src->shape, err));
    return sd_op_copy(dst, src, err);
}

sd_status sd_clip_text_forward(sd_clip_text *m, const int64_t *ids, int B, int S, sd_clip_outputs *out,
                               sd_error *err)
{
    const sd_clip_config *c = &m->cfg;
    if (B < 1 || S < 1 || S > c->max_positions)
        return sd_fail(err, SD_ERR_INVALID, "text encoder: %d x %d ids (sequence length 1 to %d)", B, S,
                       c->max_positions);
    if (out->text_embeds && !c->with_projection)
        return sd_fail(err, SD_ERR_INVALID, "text encoder: text_embeds needs CLIPTextModelWithProjection");
    int need_last = out->hidden_states || out->last_hidden || out->pooled || out->text_embeds;
    int run_layers = need_last ? c->layers : c->layers - 1;
    sd_backend *be = m->be;
    int64_t D = c->hidden;
    sd_tensor x = {0}, h = {0}, q = {0}, k = {0}, v = {0}, a = {0}, f = {0}, last = {0}, pooled = {0}, mask = {0};
    int64_t seq[3] = {B, S, D}, ff[3] = {B, S, c->intermediate};
    sd_status st = SD_OK;
    sd_tensor *seqs[] = {&x, &h, &q, &k, &v, &a};
    for (int i = 0; i < 6 && st == SD_OK; i++)
        st = sd_tensor_alloc(be, seqs[i], 3, seq, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(be, &f, 3, ff, err);
    if (st == SD_OK && out->attention_mask) {
        int64_t ms[2] = {B, S};
        st = sd_tensor_from_host(be, &mask, out->attention_mask, SD_DTYPE_F32, 2, ms, 0, err);
    }
    if (st == SD_OK)
        st = sd_op_embedding(&x, ids, m->tok_emb, m->pos_emb, err);
    if (st == SD_OK && out->hidden_states)
        st = alloc_copy(be, &out->hidden_states[0], &x, err);
    /* hidden_states[-(2 + skip)]: the output of layer `want` (-1: the embeddings) */
    int want = c->layers - 2 - out->skip;
    if (st == SD_OK && out->penultimate && want < -1)
        st = sd_fail(err, SD_ERR_INVALID, "--clip-skip %d: the text encoder has %d layers (at most %d)", out->skip,
                     c->layers, c->layers - 1);
    if (st == SD_OK && out->penultimate && want == -1)
        st = alloc_copy(be, out->penultimate, &x, err);
    for (int i = 0; i < run_layers && st == SD_OK; i++) {
        st = layer_forward(&m->layers[i], c, &x, &h, &q, &k, &v, &a, &f, out->attention_mask ? &mask : NULL, err);
        if (st == SD_OK && out->hidden_states)
            st = alloc_copy(be, &out->hidden_states[i + 1], &x, err);
        if (st == SD_OK && out->penultimate && i == want)
            st = alloc_copy(be, out->penultimate, &x, err);
    }
    if (st == SD_OK && need_last) {
        st = sd_tensor_alloc(be, &last, 3, seq, err);
        if (st == SD_OK)
            st = sd_op_layer_norm(&last, &x, m->final_ln_w, m->final_ln_b, c->eps, err);
    }
    if (st == SD_OK && (out->pooled || out->text_embeds)) {
        /* transformers: eos_token_id == 2 (old configs) -> argmax(ids);
         * otherwise the first position holding eos_token_id */
        int64_t *rows = malloc((size_t)B * sizeof *rows);
        if (!rows)
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
        for (int b = 0; b < B && st == SD_OK; b++) {
            const int64_t *r = ids + (size_t)b * (size_t)S;
            int64_t best = 0;
            for (int s = 1; s < S; s++) {
                if (c->eos_token_id == 2 ? r[s] > r[best] : (r[best] != c->eos_token_id && r[s] == c->eos_token_id))
                    best = s;
            }
            rows[b] = best;
        }
        int64_t ps[2] = {B, D};
        if (st == SD_OK)
            st = sd_tensor_alloc(be, &pooled, 2, ps, err);
        if (st == SD_OK)
            st = sd_op_gather_rows(&pooled, &last, rows, err);
        free(rows);
        if (st == SD_OK && out->text_embeds) {
            int64_t es[2] = {B, c->projection_dim};
            st = sd_tensor_alloc(be, out->text_embeds, 2, es, err);
            if (st == SD_OK)
                st = sd_op_linear(out->text_embeds, &pooled, m->proj, NULL, SD_ACT_NONE, err);
        }
    }
    for (int i = 0; i < 6; i++)
        sd_tensor_free(seqs[i]);
    sd_tensor_free(&f);
    sd_tensor_free(&mask);
    if (st == SD_OK && out->last_hidden)
        *out->last_hidden = last;
    else
        sd_tensor_free(&last);
    if (st == SD_OK && out->pooled)
        *out->pooled = pooled;
    else
        sd_tensor_free(&pooled);
    return st;
}

sd_status sd_clip_text_list_params(const sd_component *c, sd_param_list *list, sd_error *err)
{
    sd_clip_text *m = calloc(1, sizeof *m);
    if (!m)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = sd_clip_config_load(&m->cfg, c, err);
    if (st == SD_OK && !(m->layers = calloc((size_t)m->cfg.layers, sizeof *m->layers)))
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (st == SD_OK) {
        sd_param_loader pl;
        sd_param_begin_record(&pl, list);
        st = load_all(m, &pl, err);
    }
    sd_clip_text_free(m);
    return st;
}
