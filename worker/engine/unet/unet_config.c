/* unet_config.c - reads and checks a UNet2DConditionModel config.json.
 * Options SDXL does not use (class embeddings, other time embeddings, scale
 * shift norms, dual attention, ...) are refused by name rather than run wrongly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/engine/unet/unet.h"

/* A config key must be absent, null, or equal to its default. */
static sd_status expect_default(const sd_json_doc *d, const char *key, const char *want, sd_error *err)
{
    json_t *v = json_object_get(d->root, key);
    if (!v || json_is_null(v))
        return SD_OK;
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    int ok = s && !strcmp(s, want);
    sd_status st = ok ? SD_OK
                      : sd_fail(err, SD_ERR_UNSUPPORTED, "%s: '%s' = %s is not supported (only %s)", d->path, key,
                                s ? s : "?", want);
    free(s);
    return st;
}

/* int or list of n ints */
static sd_status per_level(const sd_json_doc *d, const char *key, int n, int *out, sd_error *err)
{
    long long v[SD_UNET_MAX_LEVELS];
    SD_TRY(sd_json_int_array(d, key, 1, v, n, err));
    for (int i = 0; i < n; i++) {
        if (v[i] < 1 || v[i] > 4096)
            return sd_fail(err, SD_ERR_INVALID, "%s: '%s'[%d] = %lld is out of range", d->path, key, i, v[i]);
        out[i] = (int)v[i];
    }
    return SD_OK;
}

sd_status sd_unet_config_parse(sd_unet_config *c, const sd_json_doc *d, sd_error *err)
{
    static const struct {
        const char *key, *value;
    } defaults[] = {
        {"act_fn", "\"silu\""},         {"center_input_sample", "false"},
        {"class_embed_type", "null"},   {"conv_in_kernel", "3"},
        {"conv_out_kernel", "3"},       {"dual_cross_attention", "false"},
        {"encoder_hid_dim", "null"},    {"encoder_hid_dim_type", "null"},
        {"mid_block_scale_factor", "1"}, {"num_class_embeds", "null"},
        {"only_cross_attention", "false"}, {"resnet_out_scale_factor", "1.0"},
        {"resnet_skip_time_act", "false"}, {"resnet_time_scale_shift", "\"default\""},
        {"time_cond_proj_dim", "null"}, {"time_embedding_act_fn", "null"},
        {"time_embedding_type", "\"positional\""}, {"timestep_post_act", "null"},
        {"attention_type", "\"default\""}, {"class_embeddings_concat", "false"},
        {"mid_block_only_cross_attention", "null"}, {"cross_attention_norm", "null"},
        {"downsample_padding", "1"}, {"time_embedding_dim", "null"},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        /* numbers may be written as 1 or 1.0 */
        json_t *v = json_object_get(d->root, defaults[i].key);
        if (v && json_is_number(v) && json_number_value(v) == atof(defaults[i].value))
            continue;
        SD_TRY(expect_default(d, defaults[i].key, defaults[i].value, err));
    }
    long long v;
    SD_TRY(sd_json_int(d, "in_channels", &v, err));
    c->in_channels = (int)v;
    SD_TRY(sd_json_int(d, "out_channels", &v, err));
    c->out_channels = (int)v;
    c->sample_size = (int)sd_json_int_or(d, "sample_size", 128);
    SD_TRY(sd_json_int_in(d, "layers_per_block", 1, 16, &v, err));
    c->layers_per_block = (int)v;
    SD_TRY(sd_json_int_in(d, "norm_num_groups", 1, 1024, &v, err)); /* divides below (fuzz_json_config found 0) */
    c->groups = (int)v;
    c->eps = (float)sd_json_double_or(d, "norm_eps", 1e-5);
    SD_TRY(sd_json_int_in(d, "cross_attention_dim", 1, 1 << 16, &v, err));
    c->cross_dim = (int)v;
    c->linear_proj = sd_json_bool_or(d, "use_linear_projection", 0);
    c->flip_sin_to_cos = sd_json_bool_or(d, "flip_sin_to_cos", 1);
    c->freq_shift = (float)sd_json_double_or(d, "freq_shift", 0);

    long long blocks[SD_UNET_MAX_LEVELS];
    SD_TRY(sd_json_int_list(d, "block_out_channels", blocks, SD_UNET_MAX_LEVELS, &c->levels, err));
    for (int i = 0; i < c->levels; i++) {
        if (blocks[i] < 1 || blocks[i] % c->groups)
            return sd_fail(err, SD_ERR_INVALID, "%s: block_out_channels[%d] = %lld is not a positive multiple of "
                           "norm_num_groups %d", d->path, i, blocks[i], c->groups);
        c->block_out[i] = (int)blocks[i];
    }
    const char *down[SD_UNET_MAX_LEVELS], *up[SD_UNET_MAX_LEVELS];
    int nd, nu;
    SD_TRY(sd_json_string_list(d, "down_block_types", down, SD_UNET_MAX_LEVELS, &nd, err));
    SD_TRY(sd_json_string_list(d, "up_block_types", up, SD_UNET_MAX_LEVELS, &nu, err));
    if (nd != c->levels || nu != c->levels)
        return sd_fail(err, SD_ERR_INVALID, "%s: %d down and %d up block types for %d block_out_channels", d->path,
                       nd, nu, c->levels);
    for (int i = 0; i < c->levels; i++) {
        if (!strcmp(down[i], "CrossAttnDownBlock2D"))
            c->down_cross[i] = 1;
        else if (strcmp(down[i], "DownBlock2D"))
            return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: down_block_types[%d] '%s' is not supported", d->path, i,
                           down[i]);
        if (!strcmp(up[i], "CrossAttnUpBlock2D"))
            c->up_cross[i] = 1;
        else if (strcmp(up[i], "UpBlock2D"))
            return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: up_block_types[%d] '%s' is not supported", d->path, i,
                           up[i]);
    }
    const char *mid = sd_json_string_or(d, "mid_block_type", "UNetMidBlock2DCrossAttn");
    if (strcmp(mid, "UNetMidBlock2DCrossAttn"))
        return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: mid_block_type '%s' is not supported", d->path, mid);

    /* heads: num_attention_heads if given, else attention_head_dim (the
     * historical naming diffusers keeps for SD/SDXL configs) */
    json_t *nah = json_object_get(d->root, "num_attention_heads");
    SD_TRY(per_level(d, nah && !json_is_null(nah) ? "num_attention_heads" : "attention_head_dim", c->levels,
                     c->heads, err));
    SD_TRY(per_level(d, "transformer_layers_per_block", c->levels, c->down_layers, err));
    /* diffusers mirrors the down depths for the up path unless told otherwise */
    SD_TRY(expect_default(d, "reverse_transformer_layers_per_block", "null", err));
    for (int i = 0; i < c->levels; i++)
        c->up_layers[i] = c->down_layers[i];
    c->mid_layers = c->down_layers[c->levels - 1];
    for (int i = 0; i < c->levels; i++)
        if (c->block_out[i] % c->heads[i])
            return sd_fail(err, SD_ERR_INVALID, "%s: block_out_channels[%d] = %d does not split into %d heads",
                           d->path, i, c->block_out[i], c->heads[i]);
    c->time_embed_dim = c->block_out[0] * 4;

    const char *add = sd_json_string_or(d, "addition_embed_type", NULL);
    if (add && strcmp(add, "text_time"))
        return sd_fail(err, SD_ERR_UNSUPPORTED, "%s: addition_embed_type '%s' is not supported (text_time)", d->path,
                       add);
    c->text_time = add != NULL;
    if (c->text_time) {
        SD_TRY(sd_json_int(d, "addition_time_embed_dim", &v, err));
        c->addition_time_embed_dim = (int)v;
        SD_TRY(sd_json_int(d, "projection_class_embeddings_input_dim", &v, err));
        c->add_embed_in = (int)v;
    }
    return SD_OK;
}

sd_status sd_unet_config_load(sd_unet_config *cfg, const sd_component *c, sd_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    sd_json_doc d;
    SD_TRY(sd_component_config(c, &d, err));
    sd_status st = sd_unet_config_parse(cfg, &d, err);
    sd_json_free(&d);
    return st;
}
