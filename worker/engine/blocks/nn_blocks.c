/* nn_blocks.c - see nn_blocks.h. Each forward allocates its output and frees
 * its temporaries before returning. */
#include "worker/engine/blocks/nn_blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ResnetBlock2D ---- */

sd_status sd_resnet_load(sd_resnet *r, sd_param_loader *pl, const char *prefix, int in_ch, int out_ch, int temb_ch,
                         int groups, float eps, sd_error *err)
{
    memset(r, 0, sizeof *r);
    r->in_ch = in_ch;
    r->out_ch = out_ch;
    r->groups = groups;
    r->eps = eps;
    sd_param_prefix(pl, "%s", prefix);
    SD_TRY(sd_param_get(pl, "norm1.weight", SHAPE1(in_ch), &r->norm1_w, err));
    SD_TRY(sd_param_get(pl, "norm1.bias", SHAPE1(in_ch), &r->norm1_b, err));
    SD_TRY(sd_param_get(pl, "conv1.weight", SHAPE4(out_ch, in_ch, 3, 3), &r->conv1_w, err));
    SD_TRY(sd_param_get(pl, "conv1.bias", SHAPE1(out_ch), &r->conv1_b, err));
    if (temb_ch) {
        SD_TRY(sd_param_get(pl, "time_emb_proj.weight", SHAPE2(out_ch, temb_ch), &r->temb_w, err));
        SD_TRY(sd_param_get(pl, "time_emb_proj.bias", SHAPE1(out_ch), &r->temb_b, err));
    }
    SD_TRY(sd_param_get(pl, "norm2.weight", SHAPE1(out_ch), &r->norm2_w, err));
    SD_TRY(sd_param_get(pl, "norm2.bias", SHAPE1(out_ch), &r->norm2_b, err));
    SD_TRY(sd_param_get(pl, "conv2.weight", SHAPE4(out_ch, out_ch, 3, 3), &r->conv2_w, err));
    SD_TRY(sd_param_get(pl, "conv2.bias", SHAPE1(out_ch), &r->conv2_b, err));
    if (in_ch != out_ch) {
        SD_TRY(sd_param_get(pl, "conv_shortcut.weight", SHAPE4(out_ch, in_ch, 1, 1), &r->short_w, err));
        SD_TRY(sd_param_get(pl, "conv_shortcut.bias", SHAPE1(out_ch), &r->short_b, err));
    }
    return SD_OK;
}

sd_status sd_resnet_forward(const sd_resnet *r, const sd_tensor *x, const sd_tensor *temb_act, sd_tensor *y,
                            sd_error *err)
{
    sd_backend *be = x->be;
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3];
    int64_t in_shape[4] = {B, r->in_ch, H, W}, out_shape[4] = {B, r->out_ch, H, W};
    sd_tensor n1 = {0}, h = {0}, tp = {0};
    sd_status st = sd_tensor_alloc(be, &n1, 4, in_shape, err);
    if (st == SD_OK)
        st = sd_op_group_norm(&n1, x, r->norm1_w, r->norm1_b, r->groups, r->eps, 1, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(be, &h, 4, out_shape, err);
    if (st == SD_OK)
        st = sd_op_conv2d(&h, &n1, r->conv1_w, r->conv1_b, 1, 1, err);
    sd_tensor_free(&n1);
    if (st == SD_OK && r->temb_w && temb_act) {
        int64_t ts[2] = {B, r->out_ch};
        st = sd_tensor_alloc(be, &tp, 2, ts, err);
        if (st == SD_OK)
            st = sd_op_linear(&tp, temb_act, r->temb_w, r->temb_b, SD_ACT_NONE, err);
        if (st == SD_OK)
            st = sd_op_add_channel_bias(&h, &h, &tp, err);
        sd_tensor_free(&tp);
    }
    if (st == SD_OK)
        st = sd_op_group_norm(&h, &h, r->norm2_w, r->norm2_b, r->groups, r->eps, 1, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(be, y, 4, out_shape, err);
    if (st == SD_OK)
        st = sd_op_conv2d(y, &h, r->conv2_w, r->conv2_b, 1, 1, err);
    if (st == SD_OK) {
        if (r->short_w) {
            st = sd_op_conv2d(&h, x, r->short_w, r->short_b, 1, 0, err);
            if (st == SD_OK)
                st = sd_op_add(y, y, &h, err);
        } else {
            st = sd_op_add(y, y, x, err);
        }
    }
    sd_tensor_free(&h);
    if (st != SD_OK)
        sd_tensor_free(y);
    return st;
}

/* ---- Transformer2DModel ---- */

static sd_status tblock_load(sd_tblock *b, sd_param_loader *pl, int C, int cross, sd_error *err)
{
    int64_t F = 4 * (int64_t)C;
    SD_TRY(sd_param_get(pl, "norm1.weight", SHAPE1(C), &b->norm1_w, err));
    SD_TRY(sd_param_get(pl, "norm1.bias", SHAPE1(C), &b->norm1_b, err));
    SD_TRY(sd_param_get(pl, "attn1.to_q.weight", SHAPE2(C, C), &b->q1, err));
    SD_TRY(sd_param_get(pl, "attn1.to_k.weight", SHAPE2(C, C), &b->k1, err));
    SD_TRY(sd_param_get(pl, "attn1.to_v.weight", SHAPE2(C, C), &b->v1, err));
    SD_TRY(sd_param_get(pl, "attn1.to_out.0.weight", SHAPE2(C, C), &b->o1_w, err));
    SD_TRY(sd_param_get(pl, "attn1.to_out.0.bias", SHAPE1(C), &b->o1_b, err));
    SD_TRY(sd_param_get(pl, "norm2.weight", SHAPE1(C), &b->norm2_w, err));
    SD_TRY(sd_param_get(pl, "norm2.bias", SHAPE1(C), &b->norm2_b, err));
    SD_TRY(sd_param_get(pl, "attn2.to_q.weight", SHAPE2(C, C), &b->q2, err));
    SD_TRY(sd_param_get(pl, "attn2.to_k.weight", SHAPE2(C, cross), &b->k2, err));
    SD_TRY(sd_param_get(pl, "attn2.to_v.weight", SHAPE2(C, cross), &b->v2, err));
    SD_TRY(sd_param_get(pl, "attn2.to_out.0.weight", SHAPE2(C, C), &b->o2_w, err));
    SD_TRY(sd_param_get(pl, "attn2.to_out.0.bias", SHAPE1(C), &b->o2_b, err));
    SD_TRY(sd_param_get(pl, "norm3.weight", SHAPE1(C), &b->norm3_w, err));
    SD_TRY(sd_param_get(pl, "norm3.bias", SHAPE1(C), &b->norm3_b, err));
    SD_TRY(sd_param_get(pl, "ff.net.0.proj.weight", SHAPE2(2 * F, C), &b->ff1_w, err));
    SD_TRY(sd_param_get(pl, "ff.net.0.proj.bias", SHAPE1(2 * F), &b->ff1_b, err));
    SD_TRY(sd_param_get(pl, "ff.net.2.weight", SHAPE2(C, F), &b->ff2_w, err));
    SD_TRY(sd_param_get(pl, "ff.net.2.bias", SHAPE1(C), &b->ff2_b, err));
    return SD_OK;
}

sd_status sd_transformer2d_load(sd_transformer2d *t, sd_param_loader *pl, const char *prefix, int C, int heads,
                                int layers, int cross_dim, int groups, int linear_proj, sd_error *err)
{
    memset(t, 0, sizeof *t);
    t->channels = C;
    t->heads = heads;
    t->layers = layers;
    t->groups = groups;
    t->linear_proj = linear_proj;
    t->cross_dim = cross_dim;
    if (heads < 1 || C % heads)
        return sd_fail(err, SD_ERR_INVALID, "%s: %d channels do not split into %d attention heads", prefix, C, heads);
    t->blocks = calloc((size_t)layers, sizeof *t->blocks);
    if (!t->blocks)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_param_prefix(pl, "%s", prefix);
    SD_TRY(sd_param_get(pl, "norm.weight", SHAPE1(C), &t->norm_w, err));
    SD_TRY(sd_param_get(pl, "norm.bias", SHAPE1(C), &t->norm_b, err));
    if (linear_proj) {
        SD_TRY(sd_param_get(pl, "proj_in.weight", SHAPE2(C, C), &t->proj_in_w, err));
        SD_TRY(sd_param_get(pl, "proj_out.weight", SHAPE2(C, C), &t->proj_out_w, err));
    } else {
        SD_TRY(sd_param_get(pl, "proj_in.weight", SHAPE4(C, C, 1, 1), &t->proj_in_w, err));
        SD_TRY(sd_param_get(pl, "proj_out.weight", SHAPE4(C, C, 1, 1), &t->proj_out_w, err));
    }
    SD_TRY(sd_param_get(pl, "proj_in.bias", SHAPE1(C), &t->proj_in_b, err));
    SD_TRY(sd_param_get(pl, "proj_out.bias", SHAPE1(C), &t->proj_out_b, err));
    for (int i = 0; i < layers; i++) {
        sd_param_prefix(pl, "%stransformer_blocks.%d.", prefix, i);
        SD_TRY(tblock_load(&t->blocks[i], pl, C, cross_dim, err));
    }
    return SD_OK;
}

void sd_transformer2d_free(sd_transformer2d *t)
{
    free(t->blocks);
    t->blocks = NULL;
}

/* Scratch tensors of one transformer forward. */
typedef struct {
    sd_tensor n, q, k, v, a, ff, g, kc, vc;
} tscratch;

static void tscratch_free(tscratch *s)
{
    sd_tensor *all[] = {&s->n, &s->q, &s->k, &s->v, &s->a, &s->ff, &s->g, &s->kc, &s->vc};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sd_tensor_free(all[i]);
}

static sd_status tblock_forward(const sd_tblock *b, int heads, sd_tensor *t, const sd_tensor *ctx, tscratch *s,
                                sd_error *err)
{
    /* self-attention */
    SD_TRY(sd_op_layer_norm(&s->n, t, b->norm1_w, b->norm1_b, 1e-5f, err));
    SD_TRY(sd_op_linear(&s->q, &s->n, b->q1, NULL, SD_ACT_NONE, err));
    SD_TRY(sd_op_linear(&s->k, &s->n, b->k1, NULL, SD_ACT_NONE, err));
    SD_TRY(sd_op_linear(&s->v, &s->n, b->v1, NULL, SD_ACT_NONE, err));
    SD_TRY(sd_op_attention(&s->a, &s->q, &s->k, &s->v, heads, 0, err));
    SD_TRY(sd_op_linear(&s->n, &s->a, b->o1_w, b->o1_b, SD_ACT_NONE, err));
    SD_TRY(sd_op_add(t, t, &s->n, err));
    /* cross-attention on the text embeddings */
    SD_TRY(sd_op_layer_norm(&s->n, t, b->norm2_w, b->norm2_b, 1e-5f, err));
    SD_TRY(sd_op_linear(&s->q, &s->n, b->q2, NULL, SD_ACT_NONE, err));
    SD_TRY(sd_op_linear(&s->kc, ctx, b->k2, NULL, SD_ACT_NONE, err));
    SD_TRY(sd_op_linear(&s->vc, ctx, b->v2, NULL, SD_ACT_NONE, err));
    SD_TRY(sd_op_attention(&s->a, &s->q, &s->kc, &s->vc, heads, 0, err));
    SD_TRY(sd_op_linear(&s->n, &s->a, b->o2_w, b->o2_b, SD_ACT_NONE, err));
    SD_TRY(sd_op_add(t, t, &s->n, err));
    /* GEGLU feed-forward */
    SD_TRY(sd_op_layer_norm(&s->n, t, b->norm3_w, b->norm3_b, 1e-5f, err));
    SD_TRY(sd_op_linear(&s->ff, &s->n, b->ff1_w, b->ff1_b, SD_ACT_NONE, err));
    SD_TRY(sd_op_geglu(&s->g, &s->ff, err));
    SD_TRY(sd_op_linear(&s->n, &s->g, b->ff2_w, b->ff2_b, SD_ACT_NONE, err));
    return sd_op_add(t, t, &s->n, err);
}

static sd_status transformer_body(const sd_transformer2d *t, const sd_tensor *x, const sd_tensor *ctx,
                                  sd_tensor *y, tscratch *s, sd_tensor *h, sd_tensor *seq, sd_tensor *seq2,
                                  sd_error *err)
{
    sd_backend *be = x->be;
    int64_t B = x->shape[0], C = t->channels, L = x->shape[2] * x->shape[3], S = ctx->shape[1];
    int64_t seq_shape[3] = {B, L, C}, ff_shape[3] = {B, L, 8 * C}, g_shape[3] = {B, L, 4 * C},
            ctx_shape[3] = {B, S, C};
    SD_TRY(sd_tensor_alloc(be, h, 4, x->shape, err));
    SD_TRY(sd_op_group_norm(h, x, t->norm_w, t->norm_b, t->groups, 1e-6f, 0, err));
    SD_TRY(sd_tensor_alloc(be, seq, 3, seq_shape, err));
    SD_TRY(sd_tensor_alloc(be, seq2, 3, seq_shape, err));
    if (t->linear_proj) {
        SD_TRY(sd_op_nchw_to_nlc(seq2, h, err));
        SD_TRY(sd_op_linear(seq, seq2, t->proj_in_w, t->proj_in_b, SD_ACT_NONE, err));
    } else {
        SD_TRY(sd_op_conv2d(y, h, t->proj_in_w, t->proj_in_b, 1, 0, err));
        SD_TRY(sd_op_nchw_to_nlc(seq, y, err));
    }
    sd_tensor *seqs[] = {&s->n, &s->q, &s->k, &s->v, &s->a};
    for (int i = 0; i < 5; i++)
        SD_TRY(sd_tensor_alloc(be, seqs[i], 3, seq_shape, err));
    SD_TRY(sd_tensor_alloc(be, &s->ff, 3, ff_shape, err));
    SD_TRY(sd_tensor_alloc(be, &s->g, 3, g_shape, err));
    SD_TRY(sd_tensor_alloc(be, &s->kc, 3, ctx_shape, err));
    SD_TRY(sd_tensor_alloc(be, &s->vc, 3, ctx_shape, err));
    for (int i = 0; i < t->layers; i++)
        SD_TRY(tblock_forward(&t->blocks[i], t->heads, seq, ctx, s, err));
    if (t->linear_proj) {
        SD_TRY(sd_op_linear(seq2, seq, t->proj_out_w, t->proj_out_b, SD_ACT_NONE, err));
        SD_TRY(sd_op_nlc_to_nchw(y, seq2, err));
    } else {
        SD_TRY(sd_op_nlc_to_nchw(h, seq, err));
        SD_TRY(sd_op_conv2d(y, h, t->proj_out_w, t->proj_out_b, 1, 0, err));
    }
    return sd_op_add(y, y, x, err);
}

sd_status sd_transformer2d_forward(const sd_transformer2d *t, const sd_tensor *x, const sd_tensor *ctx,
                                   sd_tensor *y, sd_error *err)
{
    if (ctx->ndim != 3 || ctx->shape[0] != x->shape[0] || ctx->shape[2] != t->cross_dim)
        return sd_fail(err, SD_ERR_INVALID, "cross-attention context must be [B, S, %d] with B = %lld",
                       t->cross_dim, (long long)x->shape[0]);
    tscratch s;
    memset(&s, 0, sizeof s);
    sd_tensor h = {0}, seq = {0}, seq2 = {0};
    sd_status st = sd_tensor_alloc(x->be, y, 4, x->shape, err);
    if (st == SD_OK)
        st = transformer_body(t, x, ctx, y, &s, &h, &seq, &seq2, err);
    tscratch_free(&s);
    sd_tensor_free(&h);
    sd_tensor_free(&seq);
    sd_tensor_free(&seq2);
    if (st != SD_OK)
        sd_tensor_free(y);
    return st;
}

/* ---- the VAE's spatial attention ---- */

sd_status sd_spatial_attn_load(sd_spatial_attn *a, sd_param_loader *pl, const char *prefix, int C, int groups,
                               float eps, sd_error *err)
{
    memset(a, 0, sizeof *a);
    a->channels = C;
    a->groups = groups;
    a->eps = eps;
    sd_param_prefix(pl, "%s", prefix);
    SD_TRY(sd_param_get(pl, "group_norm.weight", SHAPE1(C), &a->norm_w, err));
    SD_TRY(sd_param_get(pl, "group_norm.bias", SHAPE1(C), &a->norm_b, err));
    SD_TRY(sd_param_get(pl, "to_q.weight", SHAPE2(C, C), &a->q_w, err));
    SD_TRY(sd_param_get(pl, "to_q.bias", SHAPE1(C), &a->q_b, err));
    SD_TRY(sd_param_get(pl, "to_k.weight", SHAPE2(C, C), &a->k_w, err));
    SD_TRY(sd_param_get(pl, "to_k.bias", SHAPE1(C), &a->k_b, err));
    SD_TRY(sd_param_get(pl, "to_v.weight", SHAPE2(C, C), &a->v_w, err));
    SD_TRY(sd_param_get(pl, "to_v.bias", SHAPE1(C), &a->v_b, err));
    SD_TRY(sd_param_get(pl, "to_out.0.weight", SHAPE2(C, C), &a->o_w, err));
    SD_TRY(sd_param_get(pl, "to_out.0.bias", SHAPE1(C), &a->o_b, err));
    return SD_OK;
}

sd_status sd_spatial_attn_forward(const sd_spatial_attn *a, const sd_tensor *x, sd_tensor *y, sd_error *err)
{
    sd_backend *be = x->be;
    int64_t B = x->shape[0], C = a->channels, L = x->shape[2] * x->shape[3];
    int64_t seq_shape[3] = {B, L, C};
    sd_tensor h = {0}, s[5];
    memset(s, 0, sizeof s);
    sd_status st = sd_tensor_alloc(be, &h, 4, x->shape, err);
    for (int i = 0; i < 5 && st == SD_OK; i++)
        st = sd_tensor_alloc(be, &s[i], 3, seq_shape, err);
    if (st == SD_OK)
        st = sd_op_group_norm(&h, x, a->norm_w, a->norm_b, a->groups, a->eps, 0, err);
    if (st == SD_OK)
        st = sd_op_nchw_to_nlc(&s[0], &h, err);
    if (st == SD_OK)
        st = sd_op_linear(&s[1], &s[0], a->q_w, a->q_b, SD_ACT_NONE, err);
    if (st == SD_OK)
        st = sd_op_linear(&s[2], &s[0], a->k_w, a->k_b, SD_ACT_NONE, err);
    if (st == SD_OK)
        st = sd_op_linear(&s[3], &s[0], a->v_w, a->v_b, SD_ACT_NONE, err);
    if (st == SD_OK)
        st = sd_op_attention(&s[4], &s[1], &s[2], &s[3], 1, 0, err);
    if (st == SD_OK)
        st = sd_op_linear(&s[0], &s[4], a->o_w, a->o_b, SD_ACT_NONE, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(be, y, 4, x->shape, err);
    if (st == SD_OK)
        st = sd_op_nlc_to_nchw(y, &s[0], err);
    if (st == SD_OK)
        st = sd_op_add(y, y, x, err);
    sd_tensor_free(&h);
    for (int i = 0; i < 5; i++)
        sd_tensor_free(&s[i]);
    if (st != SD_OK)
        sd_tensor_free(y);
    return st;
}

/* ---- samplers ---- */

sd_status sd_sampler_load(sd_sampler *s, sd_param_loader *pl, const char *prefix, int C, sd_error *err)
{
    memset(s, 0, sizeof *s);
    sd_param_prefix(pl, "%s", prefix);
    SD_TRY(sd_param_get(pl, "conv.weight", SHAPE4(C, C, 3, 3), &s->w, err));
    SD_TRY(sd_param_get(pl, "conv.bias", SHAPE1(C), &s->b, err));
    return SD_OK;
}

sd_status sd_downsample_forward(const sd_sampler *s, const sd_tensor *x, sd_tensor *y, sd_error *err)
{
    int64_t H = x->shape[2], W = x->shape[3];
    int64_t OH = s->vae_padding ? (H + 1 - 3) / 2 + 1 : (H + 2 - 3) / 2 + 1;
    int64_t OW = s->vae_padding ? (W + 1 - 3) / 2 + 1 : (W + 2 - 3) / 2 + 1;
    int64_t shape[4] = {x->shape[0], x->shape[1], OH, OW};
    SD_TRY(sd_tensor_alloc(x->be, y, 4, shape, err));
    sd_status st = s->vae_padding ? sd_op_conv2d_pad4(y, x, s->w, s->b, 2, 0, 1, 0, 1, err)
                                  : sd_op_conv2d(y, x, s->w, s->b, 2, 1, err);
    if (st != SD_OK)
        sd_tensor_free(y);
    return st;
}

sd_status sd_upsample_forward(const sd_sampler *s, const sd_tensor *x, int64_t out_h, int64_t out_w, sd_tensor *y,
                              sd_error *err)
{
    int64_t shape[4] = {x->shape[0], x->shape[1], out_h, out_w};
    sd_tensor up = {0};
    SD_TRY(sd_tensor_alloc(x->be, &up, 4, shape, err));
    sd_status st = sd_op_upsample_nearest(&up, x, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(x->be, y, 4, shape, err);
    if (st == SD_OK)
        st = sd_op_conv2d(y, &up, s->w, s->b, 1, 1, err);
    sd_tensor_free(&up);
    if (st != SD_OK)
        sd_tensor_free(y);
    return st;
}
