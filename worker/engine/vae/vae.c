/* vae.c - AutoencoderKL (see vae.h), by diffusers' names:
 *   encoder.{conv_in, down_blocks.L.{resnets.J, downsamplers.0}, mid_block, conv_norm_out, conv_out}, quant_conv,
 *   post_quant_conv, decoder.{conv_in, mid_block, up_blocks.L.{resnets.J, upsamplers.0}, conv_norm_out, conv_out}.
 * Resnets and norms of the VAE use eps 1e-6 and no time embedding. */
#include "worker/engine/vae/vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/engine/blocks/nn_blocks.h"

#define VAE_EPS 1e-6f

typedef struct {
    int nres, has_sampler;
    sd_resnet res[SD_VAE_MAX_RES];
    sd_sampler sampler;
} vae_level;

typedef struct {
    sd_resnet res[2];
    sd_spatial_attn attn;
    int has_attn;
} vae_mid;

struct sd_vae {
    sd_vae_config cfg;
    sd_backend *be;
    int parts; /* SD_VAE_ENCODER | SD_VAE_DECODER: what was loaded */
    sd_param_set params;
    sd_tensor *enc_in_w, *enc_in_b, *enc_norm_w, *enc_norm_b, *enc_out_w, *enc_out_b, *quant_w, *quant_b;
    sd_tensor *pq_w, *pq_b, *dec_in_w, *dec_in_b, *dec_norm_w, *dec_norm_b, *dec_out_w, *dec_out_b;
    vae_level down[SD_VAE_MAX_LEVELS], up[SD_VAE_MAX_LEVELS];
    vae_mid enc_mid, dec_mid;
};

const sd_vae_config *sd_vae_get_config(const sd_vae *v)
{
    return &v->cfg;
}

int sd_vae_scale_factor(const sd_vae *v)
{
    return 1 << (v->cfg.levels - 1);
}

void sd_vae_free(sd_vae *v)
{
    if (!v)
        return;
    sd_param_set_free(&v->params);
    free(v);
}

static sd_status load_conv(sd_param_loader *pl, const char *name, int out, int in, int k, sd_tensor **w,
                           sd_tensor **b, sd_error *err)
{
    char n[160];
    snprintf(n, sizeof n, "%s.weight", name);
    SD_TRY(sd_param_get(pl, n, SHAPE4(out, in, k, k), w, err));
    snprintf(n, sizeof n, "%s.bias", name);
    return sd_param_get(pl, n, SHAPE1(out), b, err);
}

static sd_status load_norm(sd_param_loader *pl, const char *name, int ch, sd_tensor **w, sd_tensor **b,
                           sd_error *err)
{
    char n[160];
    snprintf(n, sizeof n, "%s.weight", name);
    SD_TRY(sd_param_get(pl, n, SHAPE1(ch), w, err));
    snprintf(n, sizeof n, "%s.bias", name);
    return sd_param_get(pl, n, SHAPE1(ch), b, err);
}

static sd_status load_mid(vae_mid *m, sd_param_loader *pl, const char *prefix, int ch, const sd_vae_config *c,
                          sd_error *err)
{
    char p[160];
    snprintf(p, sizeof p, "%smid_block.resnets.0.", prefix);
    SD_TRY(sd_resnet_load(&m->res[0], pl, p, ch, ch, 0, c->groups, VAE_EPS, err));
    m->has_attn = c->mid_attention;
    if (m->has_attn) {
        snprintf(p, sizeof p, "%smid_block.attentions.0.", prefix);
        SD_TRY(sd_spatial_attn_load(&m->attn, pl, p, ch, c->groups, VAE_EPS, err));
    }
    snprintf(p, sizeof p, "%smid_block.resnets.1.", prefix);
    return sd_resnet_load(&m->res[1], pl, p, ch, ch, 0, c->groups, VAE_EPS, err);
}

static sd_status load_encoder(sd_vae *v, sd_param_loader *pl, sd_error *err)
{
    const sd_vae_config *c = &v->cfg;
    int n = c->levels, top = c->block_out[n - 1], L = c->latent_channels;
    char p[160];
    sd_param_prefix(pl, "%s", "");
    SD_TRY(load_conv(pl, "encoder.conv_in", c->block_out[0], c->in_channels, 3, &v->enc_in_w, &v->enc_in_b, err));
    int ch = c->block_out[0];
    for (int i = 0; i < n; i++) {
        vae_level *lv = &v->down[i];
        int out = c->block_out[i];
        lv->nres = c->layers_per_block;
        for (int j = 0; j < lv->nres; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d.", i, j);
            SD_TRY(sd_resnet_load(&lv->res[j], pl, p, j == 0 ? ch : out, out, 0, c->groups, VAE_EPS, err));
        }
        ch = out;
        lv->has_sampler = i < n - 1;
        if (lv->has_sampler) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.", i);
            SD_TRY(sd_sampler_load(&lv->sampler, pl, p, out, err));
            lv->sampler.vae_padding = 1;
        }
    }
    SD_TRY(load_mid(&v->enc_mid, pl, "encoder.", top, c, err));
    sd_param_prefix(pl, "%s", "");
    SD_TRY(load_norm(pl, "encoder.conv_norm_out", top, &v->enc_norm_w, &v->enc_norm_b, err));
    SD_TRY(load_conv(pl, "encoder.conv_out", 2 * L, top, 3, &v->enc_out_w, &v->enc_out_b, err));
    if (c->quant_conv)
        SD_TRY(load_conv(pl, "quant_conv", 2 * L, 2 * L, 1, &v->quant_w, &v->quant_b, err));
    return SD_OK;
}

static sd_status load_decoder(sd_vae *v, sd_param_loader *pl, sd_error *err)
{
    const sd_vae_config *c = &v->cfg;
    int n = c->levels, top = c->block_out[n - 1], L = c->latent_channels;
    char p[160];
    sd_param_prefix(pl, "%s", "");
    if (c->post_quant_conv)
        SD_TRY(load_conv(pl, "post_quant_conv", L, L, 1, &v->pq_w, &v->pq_b, err));
    SD_TRY(load_conv(pl, "decoder.conv_in", top, L, 3, &v->dec_in_w, &v->dec_in_b, err));
    SD_TRY(load_mid(&v->dec_mid, pl, "decoder.", top, c, err));
    int prev = top;
    for (int i = 0; i < n; i++) {
        vae_level *lv = &v->up[i];
        int out = c->block_out[n - 1 - i];
        lv->nres = c->layers_per_block + 1;
        for (int j = 0; j < lv->nres; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d.", i, j);
            SD_TRY(sd_resnet_load(&lv->res[j], pl, p, j == 0 ? prev : out, out, 0, c->groups, VAE_EPS, err));
        }
        prev = out;
        lv->has_sampler = i < n - 1;
        if (lv->has_sampler) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.", i);
            SD_TRY(sd_sampler_load(&lv->sampler, pl, p, out, err));
        }
    }
    sd_param_prefix(pl, "%s", "");
    SD_TRY(load_norm(pl, "decoder.conv_norm_out", c->block_out[0], &v->dec_norm_w, &v->dec_norm_b, err));
    return load_conv(pl, "decoder.conv_out", c->out_channels, c->block_out[0], 3, &v->dec_out_w, &v->dec_out_b,
                     err);
}

/* The parts asked for; the other part's tensors are counted as present but
 * not loaded, so a stray tensor anywhere is still an error. */
static sd_status load_all(sd_vae *v, sd_param_loader *pl, sd_error *err)
{
    if (v->parts & SD_VAE_ENCODER)
        SD_TRY(load_encoder(v, pl, err));
    else {
        sd_param_skip_prefix(pl, "encoder.");
        sd_param_skip_prefix(pl, "quant_conv.");
    }
    if (v->parts & SD_VAE_DECODER)
        SD_TRY(load_decoder(v, pl, err));
    else {
        sd_param_skip_prefix(pl, "decoder.");
        sd_param_skip_prefix(pl, "post_quant_conv.");
    }
    return sd_param_check_all_used(pl, NULL, err);
}

sd_status sd_vae_load_parts(sd_vae **out, sd_backend *be, const sd_component *c, const char *variant, int parts,
                           sd_error *err)
{
    *out = NULL;
    if (!(parts & SD_VAE_BOTH) || (parts & ~SD_VAE_BOTH))
        return sd_fail(err, SD_ERR_INVALID, "component '%s': no VAE part to load (parts %d)", c->name, parts);
    sd_vae *v = calloc(1, sizeof *v);
    if (!v)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    v->be = be;
    v->parts = parts;
    sd_status st = sd_vae_config_load(&v->cfg, c, err);
    sd_param_loader pl;
    if (st == SD_OK) {
        st = sd_param_set_open(&v->params, &pl, be, c, variant, err);
        if (st == SD_OK) {
            st = load_all(v, &pl, err);
            sd_param_set_finish(&v->params, &pl, st == SD_OK);
        }
    }
    if (st != SD_OK) {
        sd_vae_free(v);
        return sd_error_prefix(err, st, "component '%s': ", c->name);
    }
    *out = v;
    return SD_OK;
}

sd_status sd_vae_load(sd_vae **out, sd_backend *be, const sd_component *c, const char *variant, sd_error *err)
{
    return sd_vae_load_parts(out, be, c, variant, SD_VAE_BOTH, err);
}

sd_backend *sd_vae_backend(const sd_vae *v)
{
    return v->be;
}

/* ---- forward ---- */

static void replace(sd_tensor *x, sd_tensor *nx)
{
    sd_tensor_free(x);
    *x = *nx;
    memset(nx, 0, sizeof *nx);
}

static sd_status conv_into(sd_backend *be, sd_tensor *x, const sd_tensor *w, const sd_tensor *b, int pad,
                           sd_error *err)
{
    int64_t shape[4] = {x->shape[0], w->shape[0], x->shape[2], x->shape[3]};
    sd_tensor y = {0};
    SD_TRY(sd_tensor_alloc(be, &y, 4, shape, err));
    sd_status st = sd_op_conv2d(&y, x, w, b, 1, pad, err);
    if (st != SD_OK) {
        sd_tensor_free(&y);
        return st;
    }
    replace(x, &y);
    return SD_OK;
}

static sd_status mid_forward(const vae_mid *m, sd_tensor *x, sd_error *err)
{
    sd_tensor nx = {0};
    SD_TRY(sd_resnet_forward(&m->res[0], x, NULL, &nx, err));
    replace(x, &nx);
    if (m->has_attn) {
        SD_TRY(sd_spatial_attn_forward(&m->attn, x, &nx, err));
        replace(x, &nx);
    }
    SD_TRY(sd_resnet_forward(&m->res[1], x, NULL, &nx, err));
    replace(x, &nx);
    return SD_OK;
}

static sd_status decode(sd_vae *v, const sd_tensor *z, sd_tensor *x, sd_error *err)
{
    const sd_vae_config *c = &v->cfg;
    sd_backend *be = v->be;
    sd_tensor nx = {0};
    SD_TRY(sd_tensor_alloc(be, x, 4, z->shape, err));
    SD_TRY(sd_op_copy(x, z, err));
    if (v->pq_w)
        SD_TRY(conv_into(be, x, v->pq_w, v->pq_b, 0, err));
    SD_TRY(conv_into(be, x, v->dec_in_w, v->dec_in_b, 1, err));
    SD_TRY(mid_forward(&v->dec_mid, x, err));
    for (int i = 0; i < c->levels; i++) {
        const vae_level *lv = &v->up[i];
        for (int j = 0; j < lv->nres; j++) {
            SD_TRY(sd_resnet_forward(&lv->res[j], x, NULL, &nx, err));
            replace(x, &nx);
        }
        if (lv->has_sampler) {
            SD_TRY(sd_upsample_forward(&lv->sampler, x, x->shape[2] * 2, x->shape[3] * 2, &nx, err));
            replace(x, &nx);
        }
    }
    SD_TRY(sd_op_group_norm(x, x, v->dec_norm_w, v->dec_norm_b, c->groups, VAE_EPS, 1, err));
    return conv_into(be, x, v->dec_out_w, v->dec_out_b, 1, err);
}

sd_status sd_vae_decode(sd_vae *v, const sd_tensor *z, sd_tensor *image, sd_error *err)
{
    if (z->ndim != 4 || z->shape[1] != v->cfg.latent_channels)
        return sd_fail(err, SD_ERR_INVALID, "vae decode: latents must be [B, %d, h, w]", v->cfg.latent_channels);
    if (!(v->parts & SD_VAE_DECODER))
        return sd_fail(err, SD_ERR_INVALID, "vae decode: this VAE was loaded without its decoder");
    memset(image, 0, sizeof *image);
    sd_status st = decode(v, z, image, err);
    if (st != SD_OK)
        sd_tensor_free(image);
    return st;
}

static sd_status encode(sd_vae *v, const sd_tensor *img, sd_tensor *x, sd_error *err)
{
    const sd_vae_config *c = &v->cfg;
    sd_backend *be = v->be;
    sd_tensor nx = {0};
    SD_TRY(sd_tensor_alloc(be, x, 4, img->shape, err));
    SD_TRY(sd_op_copy(x, img, err));
    SD_TRY(conv_into(be, x, v->enc_in_w, v->enc_in_b, 1, err));
    for (int i = 0; i < c->levels; i++) {
        const vae_level *lv = &v->down[i];
        for (int j = 0; j < lv->nres; j++) {
            SD_TRY(sd_resnet_forward(&lv->res[j], x, NULL, &nx, err));
            replace(x, &nx);
        }
        if (lv->has_sampler) {
            SD_TRY(sd_downsample_forward(&lv->sampler, x, &nx, err));
            replace(x, &nx);
        }
    }
    SD_TRY(mid_forward(&v->enc_mid, x, err));
    SD_TRY(sd_op_group_norm(x, x, v->enc_norm_w, v->enc_norm_b, c->groups, VAE_EPS, 1, err));
    SD_TRY(conv_into(be, x, v->enc_out_w, v->enc_out_b, 1, err));
    if (v->quant_w)
        SD_TRY(conv_into(be, x, v->quant_w, v->quant_b, 0, err));
    return SD_OK;
}

sd_status sd_vae_encode(sd_vae *v, const sd_tensor *image, sd_tensor *moments, sd_error *err)
{
    if (image->ndim != 4 || image->shape[1] != v->cfg.in_channels)
        return sd_fail(err, SD_ERR_INVALID, "vae encode: image must be [B, %d, H, W]", v->cfg.in_channels);
    if (!(v->parts & SD_VAE_ENCODER))
        return sd_fail(err, SD_ERR_INVALID, "vae encode: this VAE was loaded without its encoder");
    int f = sd_vae_scale_factor(v);
    if (image->shape[2] % f || image->shape[3] % f)
        return sd_fail(err, SD_ERR_INVALID, "vae encode: image size %lldx%lld is not a multiple of %d",
                       (long long)image->shape[3], (long long)image->shape[2], f);
    memset(moments, 0, sizeof *moments);
    sd_status st = encode(v, image, moments, err);
    if (st != SD_OK)
        sd_tensor_free(moments);
    return st;
}

void sd_vae_moments_split(const float *moments, int64_t B, int64_t L, int64_t hw, float *mean, float *std,
                          float *logvar)
{
    for (int64_t b = 0; b < B; b++) {
        const float *m = moments + b * 2 * L * hw;
        for (int64_t i = 0; i < L * hw; i++) {
            float lv = m[L * hw + i];
            lv = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
            if (mean)
                mean[b * L * hw + i] = m[i];
            if (logvar)
                logvar[b * L * hw + i] = lv;
            if (std)
                std[b * L * hw + i] = expf(0.5f * lv);
        }
    }
}

sd_status sd_vae_list_params(const sd_component *c, sd_param_list *list, sd_error *err)
{
    sd_vae *m = calloc(1, sizeof *m);
    if (!m)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    m->parts = SD_VAE_BOTH;
    sd_status st = sd_vae_config_load(&m->cfg, c, err);
    if (st == SD_OK) {
        sd_param_loader pl;
        sd_param_begin_record(&pl, list);
        st = load_all(m, &pl, err);
    }
    sd_vae_free(m);
    return st;
}
