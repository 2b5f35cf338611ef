/* vae_config.c - AutoencoderKL's config.json (see vae.h): what the VAE is
 * built from, and how latents map to and from it (scaling_factor, and
 * latents_mean / latents_std where a config has them). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "worker/engine/vae/vae.h"

/* latents_mean / latents_std: null (SDXL) or one number per latent channel;
 * diffusers' SDXL pipelines use them only when both are set */
static sd_status parse_latents_stats(sd_vae_config *c, const sd_json_doc *d, sd_error *err)
{
    const char *keys[2] = {"latents_mean", "latents_std"};
    float *dst[2] = {c->latents_mean, c->latents_std};
    int set = 0;
    if (c->latent_channels < 1 || c->latent_channels > SD_VAE_MAX_LATENT)
        return sd_fail(err, SD_ERR_INVALID, "%s: latent_channels %d out of range (1 to %d)", d->path,
                       c->latent_channels, SD_VAE_MAX_LATENT);
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(d->root, keys[k]);
        if (!v || json_is_null(v))
            continue;
        if (!json_is_array(v) || (int)json_array_size(v) != c->latent_channels)
            return sd_fail(err, SD_ERR_INVALID, "%s: %s must be null or %d numbers (one per latent channel)",
                           d->path, keys[k], c->latent_channels);
        for (int i = 0; i < c->latent_channels; i++) {
            json_t *x = json_array_get(v, (size_t)i);
            if (!json_is_number(x) || (k == 1 && json_number_value(x) == 0))
                return sd_fail(err, SD_ERR_INVALID, "%s: %s[%d] is not a %snumber", d->path, keys[k], i,
                               k == 1 ? "non-zero " : "");
            dst[k][i] = (float)json_number_value(x);
        }
        set++;
    }
    c->has_latents_stats = set == 2;
    return SD_OK;
}

void sd_vae_latents_for_decoder(const sd_vae_config *c, float *x, int64_t batch, int64_t plane)
{
    for (int64_t b = 0; b < batch; b++)
        for (int ch = 0; ch < c->latent_channels; ch++) {
            float *p = x + (b * c->latent_channels + ch) * plane;
            for (int64_t i = 0; i < plane; i++)
                p[i] = c->has_latents_stats ? p[i] * c->latents_std[ch] / c->scaling_factor + c->latents_mean[ch]
                                            : p[i] / c->scaling_factor;
        }
}

void sd_vae_latents_from_encoder(const sd_vae_config *c, float *x, int64_t batch, int64_t plane)
{
    for (int64_t b = 0; b < batch; b++)
        for (int ch = 0; ch < c->latent_channels; ch++) {
            float *p = x + (b * c->latent_channels + ch) * plane;
            for (int64_t i = 0; i < plane; i++)
                p[i] = c->has_latents_stats ? (p[i] - c->latents_mean[ch]) * c->scaling_factor / c->latents_std[ch]
                                            : c->scaling_factor * p[i];
        }
}

sd_status sd_vae_config_parse(sd_vae_config *c, const sd_json_doc *d, sd_error *err)
{
    long long v;
    SD_TRY(sd_json_int(d, "in_channels", &v, err));
    c->in_channels = (int)v;
    SD_TRY(sd_json_int(d, "out_channels", &v, err));
    c->out_channels = (int)v;
    SD_TRY(sd_json_int(d, "latent_channels", &v, err));
    c->latent_channels = (int)v;
    SD_TRY(sd_json_int_in(d, "layers_per_block", 1, SD_VAE_MAX_RES - 1, &v, err));
    c->layers_per_block = (int)v;
    SD_TRY(sd_json_int_in(d, "norm_num_groups", 1, 1024, &v, err)); /* divides below (fuzz_json_config found 0) */
    c->groups = (int)v;
    c->sample_size = (int)sd_json_int_or(d, "sample_size", 1024);
    long long blocks[SD_VAE_MAX_LEVELS];
    SD_TRY(sd_json_int_list(d, "block_out_channels", blocks, SD_VAE_MAX_LEVELS, &c->levels, err));
    for (int i = 0; i < c->levels; i++) {
        if (blocks[i] < 1 || blocks[i] % c->groups)
            return sd_fail(err, SD_ERR_INVALID, "%s: block_out_channels[%d] = %lld is not a multiple of "
                           "norm_num_groups %d", d->path, i, blocks[i], c->groups);
        c->block_out[i] = (int)blocks[i];
    }
    const char *types[SD_VAE_MAX_LEVELS];
    int n;
    SD_TRY(sd_json_string_list(d, "down_block_types", types, SD_VAE_MAX_LEVELS, &n, err));
    for (int i = 0; i < n; i++)
        if (strcmp(types[i], "DownEncoderBlock2D"))
            return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: down_block_types[%d] '%s' is not supported", d->path, i,
                           types[i]);
    if (n != c->levels)
        return sd_fail(err, SD_ERR_INVALID, "%s: %d down block types for %d levels", d->path, n, c->levels);
    SD_TRY(sd_json_string_list(d, "up_block_types", types, SD_VAE_MAX_LEVELS, &n, err));
    for (int i = 0; i < n; i++)
        if (strcmp(types[i], "UpDecoderBlock2D"))
            return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: up_block_types[%d] '%s' is not supported", d->path, i,
                           types[i]);
    if (n != c->levels)
        return sd_fail(err, SD_ERR_INVALID, "%s: %d up block types for %d levels", d->path, n, c->levels);
    const char *act = sd_json_string_or(d, "act_fn", "silu");
    if (strcmp(act, "silu"))
        return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: act_fn '%s' is not supported (silu)", d->path, act);
    c->mid_attention = sd_json_bool_or(d, "mid_block_add_attention", 1);
    c->quant_conv = sd_json_bool_or(d, "use_quant_conv", 1);
    c->post_quant_conv = sd_json_bool_or(d, "use_post_quant_conv", 1);
    c->scaling_factor = (float)sd_json_double_or(d, "scaling_factor", 0.18215);
    c->force_upcast = sd_json_bool_or(d, "force_upcast", 1);
    return parse_latents_stats(c, d, err);
}

sd_status sd_vae_config_load(sd_vae_config *cfg, const sd_component *c, sd_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    sd_json_doc d;
    SD_TRY(sd_component_config(c, &d, err));
    sd_status st = sd_vae_config_parse(cfg, &d, err);
    sd_json_free(&d);
    return st;
}

