/* unet.c - UNet2DConditionModel forward (see unet.h), laid out as diffusers'
 * module tree so each layer is found by its diffusers name:
 *   time_embedding.linear_{1,2}, add_embedding.linear_{1,2}, conv_in,
 *   down_blocks.L.{resnets.J, attentions.J, downsamplers.0},
 *   mid_block.{resnets.0, attentions.0, resnets.1},
 *   up_blocks.L.{resnets.J, attentions.J, upsamplers.0},
 *   conv_norm_out, conv_out. */
#include "worker/engine/unet/unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/engine/blocks/nn_blocks.h"

#define MAX_RES 17

typedef struct {
    int nres;
    sd_resnet res[MAX_RES];
    sd_transformer2d attn[MAX_RES];
    int has_attn, has_sampler;
    sd_sampler sampler;
} unet_level;

struct sd_unet {
    sd_unet_config cfg;
    sd_backend *be;
    sd_param_set params;
    sd_tensor *time1_w, *time1_b, *time2_w, *time2_b, *add1_w, *add1_b, *add2_w, *add2_b;
    sd_tensor *conv_in_w, *conv_in_b, *norm_out_w, *norm_out_b, *conv_out_w, *conv_out_b;
    unet_level down[SD_UNET_MAX_LEVELS], up[SD_UNET_MAX_LEVELS];
    sd_resnet mid_res[2];
    sd_transformer2d mid_attn;
};

const sd_unet_config *sd_unet_get_config(const sd_unet *u)
{
    return &u->cfg;
}

sd_backend *sd_unet_backend(const sd_unet *u)
{
    return u->be;
}

int sd_unet_time_ids(const sd_unet *u, int text_embeds_dim)
{
    if (!u->cfg.text_time || u->cfg.addition_time_embed_dim <= 0)
        return 0;
    return (u->cfg.add_embed_in - text_embeds_dim) / u->cfg.addition_time_embed_dim;
}

void sd_unet_free(sd_unet *u)
{
    if (!u)
        return;
    for (int l = 0; l < SD_UNET_MAX_LEVELS; l++)
        for (int j = 0; j < MAX_RES; j++) {
            sd_transformer2d_free(&u->down[l].attn[j]);
            sd_transformer2d_free(&u->up[l].attn[j]);
        }
    sd_transformer2d_free(&u->mid_attn);
    sd_param_set_free(&u->params);
    free(u);
}

static sd_status load_linear(sd_param_loader *pl, const char *name, int out, int in, sd_tensor **w, sd_tensor **b,
                             sd_error *err)
{
    char n[128];
    snprintf(n, sizeof n, "%s.weight", name);
    SD_TRY(sd_param_get(pl, n, SHAPE2(out, in), w, err));
    snprintf(n, sizeof n, "%s.bias", name);
    return sd_param_get(pl, n, SHAPE1(out), b, err);
}

static sd_status load_all(sd_unet *u, sd_param_loader *pl, sd_error *err)
{
    const sd_unet_config *c = &u->cfg;
    int TE = c->time_embed_dim, C0 = c->block_out[0];
    char p[160];
    sd_param_prefix(pl, "%s", "");
    SD_TRY(load_linear(pl, "time_embedding.linear_1", TE, C0, &u->time1_w, &u->time1_b, err));
    SD_TRY(load_linear(pl, "time_embedding.linear_2", TE, TE, &u->time2_w, &u->time2_b, err));
    if (c->text_time) {
        SD_TRY(load_linear(pl, "add_embedding.linear_1", TE, c->add_embed_in, &u->add1_w, &u->add1_b, err));
        SD_TRY(load_linear(pl, "add_embedding.linear_2", TE, TE, &u->add2_w, &u->add2_b, err));
    }
    SD_TRY(sd_param_get(pl, "conv_in.weight", SHAPE4(C0, c->in_channels, 3, 3), &u->conv_in_w, err));
    SD_TRY(sd_param_get(pl, "conv_in.bias", SHAPE1(C0), &u->conv_in_b, err));

    /* down path */
    int ch = C0;
    for (int l = 0; l < c->levels; l++) {
        unet_level *L = &u->down[l];
        int out = c->block_out[l];
        L->nres = c->layers_per_block;
        L->has_attn = c->down_cross[l];
        for (int j = 0; j < L->nres; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d.", l, j);
            SD_TRY(sd_resnet_load(&L->res[j], pl, p, j == 0 ? ch : out, out, TE, c->groups, c->eps, err));
            if (L->has_attn) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d.", l, j);
                SD_TRY(sd_transformer2d_load(&L->attn[j], pl, p, out, c->heads[l], c->down_layers[l], c->cross_dim,
                                             c->groups, c->linear_proj, err));
            }
        }
        ch = out;
        L->has_sampler = l < c->levels - 1;
        if (L->has_sampler) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.", l);
            SD_TRY(sd_sampler_load(&L->sampler, pl, p, out, err));
        }
    }
    /* mid block */
    int top = c->block_out[c->levels - 1];
    SD_TRY(sd_resnet_load(&u->mid_res[0], pl, "mid_block.resnets.0.", top, top, TE, c->groups, c->eps, err));
    SD_TRY(sd_transformer2d_load(&u->mid_attn, pl, "mid_block.attentions.0.", top, c->heads[c->levels - 1],
                                 c->mid_layers, c->cross_dim, c->groups, c->linear_proj, err));
    SD_TRY(sd_resnet_load(&u->mid_res[1], pl, "mid_block.resnets.1.", top, top, TE, c->groups, c->eps, err));

    /* up path: up block i works at level n-1-i */
    int prev = top;
    for (int i = 0; i < c->levels; i++) {
        int lvl = c->levels - 1 - i;
        unet_level *L = &u->up[i];
        int out = c->block_out[lvl];
        int skip_in = c->block_out[lvl > 0 ? lvl - 1 : 0];
        L->nres = c->layers_per_block + 1;
        L->has_attn = c->up_cross[i];
        for (int j = 0; j < L->nres; j++) {
            int res_skip = j == L->nres - 1 ? skip_in : out;
            int in = (j == 0 ? prev : out) + res_skip;
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d.", i, j);
            SD_TRY(sd_resnet_load(&L->res[j], pl, p, in, out, TE, c->groups, c->eps, err));
            if (L->has_attn) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d.", i, j);
                SD_TRY(sd_transformer2d_load(&L->attn[j], pl, p, out, c->heads[lvl], c->up_layers[lvl],
                                             c->cross_dim, c->groups, c->linear_proj, err));
            }
        }
        prev = out;
        L->has_sampler = i < c->levels - 1;
        if (L->has_sampler) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.", i);
            SD_TRY(sd_sampler_load(&L->sampler, pl, p, out, err));
        }
    }
    sd_param_prefix(pl, "%s", "");
    SD_TRY(sd_param_get(pl, "conv_norm_out.weight", SHAPE1(C0), &u->norm_out_w, err));
    SD_TRY(sd_param_get(pl, "conv_norm_out.bias", SHAPE1(C0), &u->norm_out_b, err));
    SD_TRY(sd_param_get(pl, "conv_out.weight", SHAPE4(c->out_channels, C0, 3, 3), &u->conv_out_w, err));
    SD_TRY(sd_param_get(pl, "conv_out.bias", SHAPE1(c->out_channels), &u->conv_out_b, err));
    return sd_param_check_all_used(pl, NULL, err);
}

sd_status sd_unet_load(sd_unet **out, sd_backend *be, const sd_component *c, const char *variant, sd_error *err)
{
    *out = NULL;
    sd_unet *u = calloc(1, sizeof *u);
    if (!u)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    u->be = be;
    sd_status st = sd_unet_config_load(&u->cfg, c, err);
    if (st == SD_OK && u->cfg.layers_per_block + 1 > MAX_RES)
        st = sd_fail(err, SD_ERR_UNSUPPORTED, "unet: layers_per_block %d is over %d", u->cfg.layers_per_block,
                     MAX_RES - 1);
    sd_param_loader pl;
    if (st == SD_OK) {
        st = sd_param_set_open(&u->params, &pl, be, c, variant, err);
        if (st == SD_OK) {
            st = load_all(u, &pl, err);
            sd_param_set_finish(&u->params, &pl, st == SD_OK);
        }
    }
    if (st != SD_OK) {
        sd_unet_free(u);
        return sd_error_prefix(err, st, "component '%s': ", c->name);
    }
    *out = u;
    return SD_OK;
}

/* ---- forward ---- */

/* emb = time_embedding(t) (+ add_embedding([text_embeds, time_proj(time_ids)])),
 * returned as silu(emb), the form every resnet's time_emb_proj consumes. */
/* emb = SiLU(time MLP(tproj) [+ add MLP(concat(text_embeds, ids))]), where
 * tproj [B, block_out[0]] and ids [B * n, addition_time_embed_dim] are the
 * sinusoidal projections the caller uploaded (sd_unet_embed_*). */
static sd_status time_embedding(sd_unet *u, int64_t B, const sd_tensor *tp, const sd_tensor *text_embeds,
                                const sd_tensor *ids, sd_tensor *emb_act, sd_error *err)
{
    const sd_unet_config *c = &u->cfg;
    sd_backend *be = u->be;
    int64_t TE = c->time_embed_dim;
    sd_tensor h = {0}, cat = {0}, emb2 = {0};
    int64_t es[2] = {B, TE};
    sd_status st = sd_tensor_alloc(be, &h, 2, es, err);
    if (st == SD_OK)
        st = sd_op_linear(&h, tp, u->time1_w, u->time1_b, SD_ACT_SILU, err);
    if (st == SD_OK)
        st = sd_tensor_alloc(be, emb_act, 2, es, err);
    if (st == SD_OK)
        st = sd_op_linear(emb_act, &h, u->time2_w, u->time2_b, SD_ACT_NONE, err);
    if (st == SD_OK && c->text_time) {
        int64_t P = text_embeds->shape[1], n_ids = ids->shape[0] / B;
        int64_t want = P + n_ids * c->addition_time_embed_dim;
        if (text_embeds->ndim != 2 || text_embeds->shape[0] != B || want != c->add_embed_in)
            st = sd_fail(err, SD_ERR_INVALID,
                         "unet: text_embeds [%lld, %lld] and %lld time ids give %lld features; the config's "
                         "projection_class_embeddings_input_dim is %d",
                         (long long)text_embeds->shape[0], (long long)P, (long long)n_ids, (long long)want,
                         c->add_embed_in);
        sd_tensor ids_view;
        int64_t view_shape[2] = {B, n_ids * c->addition_time_embed_dim};
        if (st == SD_OK)
            st = sd_tensor_view(&ids_view, ids, 2, view_shape, err);
        int64_t cat_shape[2] = {B, want};
        if (st == SD_OK)
            st = sd_tensor_alloc(be, &cat, 2, cat_shape, err);
        if (st == SD_OK)
            st = sd_op_concat(&cat, text_embeds, &ids_view, 1, err);
        if (st == SD_OK)
            st = sd_op_linear(&h, &cat, u->add1_w, u->add1_b, SD_ACT_SILU, err);
        if (st == SD_OK)
            st = sd_tensor_alloc(be, &emb2, 2, es, err);
        if (st == SD_OK)
            st = sd_op_linear(&emb2, &h, u->add2_w, u->add2_b, SD_ACT_NONE, err);
        if (st == SD_OK)
            st = sd_op_add(emb_act, emb_act, &emb2, err);
    }
    if (st == SD_OK)
        st = sd_op_act(emb_act, emb_act, SD_ACT_SILU, err);
    sd_tensor_free(&h);
    sd_tensor_free(&cat);
    sd_tensor_free(&emb2);
    if (st != SD_OK)
        sd_tensor_free(emb_act);
    return st;
}

/* Replaces *x by f(*x): frees the old tensor once the new one exists. */
static void replace(sd_tensor *x, sd_tensor *nx)
{
    sd_tensor_free(x);
    *x = *nx;
    memset(nx, 0, sizeof *nx);
}

typedef struct {
    sd_tensor t[SD_UNET_MAX_LEVELS * (MAX_RES + 1) + 1];
    int n;
} skip_stack;

static sd_status run(sd_unet *u, const sd_tensor *sample, const sd_tensor *ctx, const sd_tensor *emb,
                     skip_stack *skips, sd_tensor *x, sd_error *err)
{
    const sd_unet_config *c = &u->cfg;
    sd_backend *be = u->be;
    sd_tensor nx = {0}, cat = {0};
    int64_t shape[4] = {sample->shape[0], c->block_out[0], sample->shape[2], sample->shape[3]};
    SD_TRY(sd_tensor_alloc(be, x, 4, shape, err));
    SD_TRY(sd_op_conv2d(x, sample, u->conv_in_w, u->conv_in_b, 1, 1, err));
    /* skips hold copies: the stack owns its tensors */
#define PUSH_SKIP()                                                                 \
    do {                                                                            \
        SD_TRY(sd_tensor_alloc(be, &skips->t[skips->n], 4, x->shape, err));         \
        SD_TRY(sd_op_copy(&skips->t[skips->n], x, err));                            \
        skips->n++;                                                                 \
    } while (0)
    PUSH_SKIP();
    for (int l = 0; l < c->levels; l++) {
        const unet_level *L = &u->down[l];
        for (int j = 0; j < L->nres; j++) {
            SD_TRY(sd_resnet_forward(&L->res[j], x, emb, &nx, err));
            replace(x, &nx);
            if (L->has_attn) {
                SD_TRY(sd_transformer2d_forward(&L->attn[j], x, ctx, &nx, err));
                replace(x, &nx);
            }
            PUSH_SKIP();
        }
        if (L->has_sampler) {
            SD_TRY(sd_downsample_forward(&L->sampler, x, &nx, err));
            replace(x, &nx);
            PUSH_SKIP();
        }
    }
    SD_TRY(sd_resnet_forward(&u->mid_res[0], x, emb, &nx, err));
    replace(x, &nx);
    SD_TRY(sd_transformer2d_forward(&u->mid_attn, x, ctx, &nx, err));
    replace(x, &nx);
    SD_TRY(sd_resnet_forward(&u->mid_res[1], x, emb, &nx, err));
    replace(x, &nx);
    for (int i = 0; i < c->levels; i++) {
        const unet_level *L = &u->up[i];
        for (int j = 0; j < L->nres; j++) {
            sd_tensor *skip = &skips->t[--skips->n];
            int64_t cs[4] = {x->shape[0], x->shape[1] + skip->shape[1], x->shape[2], x->shape[3]};
            SD_TRY(sd_tensor_alloc(be, &cat, 4, cs, err));
            sd_status st = sd_op_concat(&cat, x, skip, 1, err);
            sd_tensor_free(skip);
            if (st != SD_OK) {
                sd_tensor_free(&cat);
                return st;
            }
            replace(x, &cat);
            SD_TRY(sd_resnet_forward(&L->res[j], x, emb, &nx, err));
            replace(x, &nx);
            if (L->has_attn) {
                SD_TRY(sd_transformer2d_forward(&L->attn[j], x, ctx, &nx, err));
                replace(x, &nx);
            }
        }
        if (L->has_sampler) {
            /* upsample to the size of the skip it will meet (2x, or the odd
             * size a non-multiple-of-8 latent produced on the way down) */
            const sd_tensor *next = &skips->t[skips->n - 1];
            SD_TRY(sd_upsample_forward(&L->sampler, x, next->shape[2], next->shape[3], &nx, err));
            replace(x, &nx);
        }
    }
    SD_TRY(sd_op_group_norm(x, x, u->norm_out_w, u->norm_out_b, c->groups, c->eps, 1, err));
    return SD_OK;
#undef PUSH_SKIP
}

static sd_status check_inputs(const sd_unet *u, const sd_tensor *sample, const sd_tensor *ctx,
                              const sd_tensor *text_embeds, int have_ids, sd_error *err)
{
    const sd_unet_config *c = &u->cfg;
    if (sample->ndim != 4 || sample->shape[1] != c->in_channels)
        return sd_fail(err, SD_ERR_INVALID, "unet: sample must be [B, %d, h, w]", c->in_channels);
    int64_t B = sample->shape[0];
    if (ctx->ndim != 3 || ctx->shape[0] != B || ctx->shape[2] != c->cross_dim)
        return sd_fail(err, SD_ERR_INVALID, "unet: encoder_hidden_states must be [%lld, S, %d]", (long long)B,
                       c->cross_dim);
    if (c->text_time && (!text_embeds || !have_ids))
        return sd_fail(err, SD_ERR_INVALID, "unet: text_time conditioning needs text_embeds and time_ids");
    return SD_OK;
}

sd_status sd_unet_embed_timesteps(const sd_unet *u, sd_tensor *tproj, const float *timesteps, sd_error *err)
{
    const sd_unet_config *c = &u->cfg;
    return sd_op_timestep_embedding(tproj, timesteps, (int)tproj->shape[0], c->block_out[0], c->flip_sin_to_cos,
                                    c->freq_shift, err);
}

sd_status sd_unet_embed_time_ids(const sd_unet *u, sd_tensor *ids, const float *time_ids, sd_error *err)
{
    const sd_unet_config *c = &u->cfg;
    return sd_op_timestep_embedding(ids, time_ids, (int)ids->shape[0], c->addition_time_embed_dim,
                                    c->flip_sin_to_cos, c->freq_shift, err);
}

sd_status sd_unet_forward_prepared(sd_unet *u, const sd_tensor *sample, const sd_tensor *tproj, const sd_tensor *ctx,
                                   const sd_tensor *text_embeds, const sd_tensor *ids, sd_tensor *out, sd_error *err)
{
    const sd_unet_config *c = &u->cfg;
    SD_TRY(check_inputs(u, sample, ctx, text_embeds, ids != NULL, err));
    int64_t B = sample->shape[0];
    if (tproj->ndim != 2 || tproj->shape[0] != B || tproj->shape[1] != c->block_out[0] ||
        (c->text_time && (ids->ndim != 2 || ids->shape[0] % B || ids->shape[1] != c->addition_time_embed_dim)))
        return sd_fail(err, SD_ERR_INVALID, "unet: timestep projections must be [%lld, %d] and [%lld * n, %d]",
                       (long long)B, c->block_out[0], (long long)B, c->addition_time_embed_dim);
    sd_tensor emb = {0}, x = {0};
    skip_stack *skips = calloc(1, sizeof *skips);
    if (!skips)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = time_embedding(u, B, tproj, text_embeds, ids, &emb, err);
    if (st == SD_OK)
        st = run(u, sample, ctx, &emb, skips, &x, err);
    int64_t os[4] = {B, c->out_channels, sample->shape[2], sample->shape[3]};
    if (st == SD_OK)
        st = sd_tensor_alloc(u->be, out, 4, os, err);
    if (st == SD_OK)
        st = sd_op_conv2d(out, &x, u->conv_out_w, u->conv_out_b, 1, 1, err);
    for (int i = 0; i < skips->n; i++)
        sd_tensor_free(&skips->t[i]);
    free(skips);
    sd_tensor_free(&emb);
    sd_tensor_free(&x);
    if (st != SD_OK)
        sd_tensor_free(out);
    return st;
}

sd_status sd_unet_forward(sd_unet *u, const sd_tensor *sample, const float *timesteps, const sd_tensor *ctx,
                          const sd_tensor *text_embeds, const float *time_ids, int n_time_ids, sd_tensor *out,
                          sd_error *err)
{
    const sd_unet_config *c = &u->cfg;
    SD_TRY(check_inputs(u, sample, ctx, text_embeds, time_ids != NULL, err));
    int64_t B = sample->shape[0];
    sd_tensor tproj = {0}, ids = {0};
    int64_t tps[2] = {B, c->block_out[0]}, ids_shape[2] = {B * n_time_ids, c->addition_time_embed_dim};
    sd_status st = sd_tensor_alloc(u->be, &tproj, 2, tps, err);
    if (st == SD_OK)
        st = sd_unet_embed_timesteps(u, &tproj, timesteps, err);
    if (st == SD_OK && c->text_time) {
        if (n_time_ids < 1)
            st = sd_fail(err, SD_ERR_INVALID, "unet: text_time conditioning needs at least one time id");
        if (st == SD_OK)
            st = sd_tensor_alloc(u->be, &ids, 2, ids_shape, err);
        if (st == SD_OK)
            st = sd_unet_embed_time_ids(u, &ids, time_ids, err);
    }
    if (st == SD_OK)
        st = sd_unet_forward_prepared(u, sample, &tproj, ctx, text_embeds, c->text_time ? &ids : NULL, out, err);
    sd_tensor_free(&tproj);
    sd_tensor_free(&ids);
    return st;
}

sd_status sd_unet_list_params(const sd_component *c, sd_param_list *list, sd_error *err)
{
    sd_unet *m = calloc(1, sizeof *m);
    if (!m)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = sd_unet_config_load(&m->cfg, c, err);
    if (st == SD_OK) {
        sd_param_loader pl;
        sd_param_begin_record(&pl, list);
        st = load_all(m, &pl, err);
    }
    sd_unet_free(m);
    return st;
}
