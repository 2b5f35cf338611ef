/* original_layout.c - see original_layout.h. */
#include "common/original_layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static sd_status unmapped(const char *key, const char *why, sd_error *err)
{
    return sd_fail(err, SD_ERR_FORMAT, "key '%s' maps to no diffusers parameter (%s)", key, why);
}

/* Renames between the layouts, one table for both directions: each row is
 * {original prefix, diffusers prefix}. */
static const char *const UNET_FIXED[][2] = {
    {"time_embed.0.", "time_embedding.linear_1."}, {"time_embed.2.", "time_embedding.linear_2."},
    {"label_emb.0.0.", "add_embedding.linear_1."}, {"label_emb.0.2.", "add_embedding.linear_2."},
    {"out.0.", "conv_norm_out."},                  {"out.2.", "conv_out."},
    {"input_blocks.0.0.", "conv_in."},
};
static const char *const UNET_RESNET[][2] = {
    {"in_layers.0.", "norm1."},       {"in_layers.2.", "conv1."}, {"emb_layers.1.", "time_emb_proj."},
    {"out_layers.0.", "norm2."},      {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."},
};
static const char *const VAE_MID_ATTN[][2] = {
    {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}};
static const char *const OPENCLIP_LAYER[][2] = {
    {"ln_1.", "layer_norm1."},      {"ln_2.", "layer_norm2."},    {"mlp.c_fc.", "mlp.fc1."},
    {"mlp.c_proj.", "mlp.fc2."},    {"attn.out_proj.", "self_attn.out_proj."},
};
#define RENAME_ROW(table, from, s) rename_row(table, sizeof table / sizeof table[0], from, s)

/* The row of map whose side `from` (0: original, 1: diffusers) prefixes s,
 * or -1. */
static int rename_row(const char *const map[][2], size_t rows, int from, const char *s)
{
    for (size_t i = 0; i < rows; i++)
        if (starts(s, map[i][from]))
            return (int)i;
    return -1;
}

static sd_status target(sd_orig_target *t, int *n, sd_orig_transform how, const char *key, sd_error *err,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static sd_status target(sd_orig_target *t, int *n, sd_orig_transform how, const char *key, sd_error *err,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof t->name)
        return sd_fail(err, SD_ERR_FORMAT, "key '%s': name too long", key);
    t->how = how;
    t->part = 0;
    *n = 1;
    return SD_OK;
}

/* ---- configs ---- */

static int list_len(const sd_json_doc *cfg, const char *key)
{
    json_t *v = json_object_get(cfg->root, key);
    return json_is_array(v) ? (int)json_array_size(v) : -1;
}

sd_status sd_unet_layout_from_config(const sd_json_doc *cfg, sd_unet_layout *out, sd_error *err)
{
    memset(out, 0, sizeof *out);
    out->levels = list_len(cfg, "block_out_channels");
    if (out->levels < 1 || out->levels > 16)
        return sd_fail(err, SD_ERR_FORMAT, "%s: 'block_out_channels' must be a list of 1 to 16 numbers", cfg->path);
    json_t *lpb = json_object_get(cfg->root, "layers_per_block");
    if (!json_is_integer(lpb) || json_integer_value(lpb) < 1 || json_integer_value(lpb) > 16)
        return sd_fail(err, SD_ERR_UNSUPPORTED,
                       "%s: 'layers_per_block' must be one number from 1 to 16 to read an original-layout checkpoint",
                       cfg->path);
    out->layers = (int)json_integer_value(lpb);
    const char *keys[2] = {"down_block_types", "up_block_types"};
    unsigned *masks[2] = {&out->down_attn, &out->up_attn};
    for (int k = 0; k < 2; k++) {
        json_t *types = json_object_get(cfg->root, keys[k]);
        if (!json_is_array(types) || (int)json_array_size(types) != out->levels)
            return sd_fail(err, SD_ERR_FORMAT, "%s: '%s' must list %d block types", cfg->path, keys[k], out->levels);
        for (int i = 0; i < out->levels; i++) {
            const char *ty = json_string_value(json_array_get(types, (size_t)i));
            if (ty && strstr(ty, "CrossAttn"))
                *masks[k] |= 1u << i;
        }
    }
    return SD_OK;
}

sd_status sd_vae_levels_from_config(const sd_json_doc *cfg, int *levels, sd_error *err)
{
    *levels = list_len(cfg, "block_out_channels");
    if (*levels < 1 || *levels > 16)
        return sd_fail(err, SD_ERR_FORMAT, "%s: 'block_out_channels' must be a list of 1 to 16 numbers", cfg->path);
    return SD_OK;
}

/* ---- components ---- */

const char *sd_orig_component(const char *key, int refiner, const char **rest)
{
    static const struct {
        const char *prefix, *component;
        int refiner; /* -1 either, 0 base only, 1 refiner only */
    } map[] = {
        {"model.diffusion_model.", "unet", -1},
        {"first_stage_model.", "vae", -1},
        {"conditioner.embedders.0.transformer.", "text_encoder", 0},
        {"conditioner.embedders.1.model.", "text_encoder_2", 0},
        {"conditioner.embedders.0.model.", "text_encoder_2", 1},
    };
    *rest = key;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (!starts(key, map[i].prefix) || (map[i].refiner >= 0 && map[i].refiner != refiner))
            continue;
        *rest = key + strlen(map[i].prefix);
        /* buffers and parameters diffusers' conversion drops: CLIP's
         * position_ids (an arange), OpenCLIP's logit_scale (for image-text
         * similarity, unused by a pipeline) */
        if (ends(key, ".position_ids") || (!strcmp(map[i].component, "text_encoder_2") && !strcmp(*rest, "logit_scale")))
            return "";
        return map[i].component;
    }
    /* the sgm denoiser's discretization buffers: the scheduler config gives them */
    if (starts(key, "denoiser."))
        return "";
    return NULL;
}

/* ---- UNet ---- */

static sd_status unet_resnet(char *out, size_t cap, const char *tail, const char *key, sd_error *err)
{
    int r = RENAME_ROW(UNET_RESNET, 0, tail);
    if (r < 0)
        return unmapped(key, "not a resnet parameter", err);
    snprintf(out, cap, "%s%s", UNET_RESNET[r][1], tail + strlen(UNET_RESNET[r][0]));
    return SD_OK;
}

/* "K.S.tail" -> K, S and tail */
static int block_index(const char *s, int *k, int *sub, const char **tail)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '.' || a < 0 || a > 1000)
        return -1;
    s = end + 1;
    long b = strtol(s, &end, 10);
    if (end == s || *end != '.' || b < 0 || b > 16)
        return -1;
    *k = (int)a;
    *sub = (int)b;
    *tail = end + 1;
    return 0;
}

sd_status sd_orig_unet_name(const char *rest, const sd_unet_layout *l, sd_orig_target *t, int *n, const char *key,
                            sd_error *err)
{
    int r = RENAME_ROW(UNET_FIXED, 0, rest);
    if (r >= 0)
        return target(t, n, SD_ORIG_AS_IS, key, err, "%s%s", UNET_FIXED[r][1], rest + strlen(UNET_FIXED[r][0]));
    int k, s, L = l->layers;
    const char *tail;
    char res[200];
    if (starts(rest, "input_blocks.")) {
        if (block_index(rest + strlen("input_blocks."), &k, &s, &tail) != 0 || k < 1)
            return unmapped(key, "bad input block index", err);
        int i = (k - 1) / (L + 1), j = (k - 1) % (L + 1);
        if (i >= l->levels)
            return unmapped(key, "input block beyond the config's levels", err);
        if (j < L && s == 0) {
            SD_TRY(unet_resnet(res, sizeof res, tail, key, err));
            return target(t, n, SD_ORIG_AS_IS, key, err, "down_blocks.%d.resnets.%d.%s", i, j, res);
        }
        if (j < L && s == 1 && (l->down_attn >> i & 1))
            return target(t, n, SD_ORIG_AS_IS, key, err, "down_blocks.%d.attentions.%d.%s", i, j, tail);
        if (j == L && s == 0 && i < l->levels - 1 && starts(tail, "op."))
            return target(t, n, SD_ORIG_AS_IS, key, err, "down_blocks.%d.downsamplers.0.conv.%s", i, tail + 3);
        return unmapped(key, "no such layer in the config's down blocks", err);
    }
    if (starts(rest, "middle_block.")) {
        const char *p = rest + strlen("middle_block.");
        if (p[0] < '0' || p[0] > '2' || p[1] != '.')
            return unmapped(key, "bad middle block index", err);
        tail = p + 2;
        if (p[0] == '1')
            return target(t, n, SD_ORIG_AS_IS, key, err, "mid_block.attentions.0.%s", tail);
        SD_TRY(unet_resnet(res, sizeof res, tail, key, err));
        return target(t, n, SD_ORIG_AS_IS, key, err, "mid_block.resnets.%d.%s", p[0] == '0' ? 0 : 1, res);
    }
    if (starts(rest, "output_blocks.")) {
        if (block_index(rest + strlen("output_blocks."), &k, &s, &tail) != 0)
            return unmapped(key, "bad output block index", err);
        int i = k / (L + 1), j = k % (L + 1), attn = l->up_attn >> i & 1;
        if (i >= l->levels)
            return unmapped(key, "output block beyond the config's levels", err);
        if (s == 0) {
            SD_TRY(unet_resnet(res, sizeof res, tail, key, err));
            return target(t, n, SD_ORIG_AS_IS, key, err, "up_blocks.%d.resnets.%d.%s", i, j, res);
        }
        if (s == 1 && attn)
            return target(t, n, SD_ORIG_AS_IS, key, err, "up_blocks.%d.attentions.%d.%s", i, j, tail);
        if (s == 1 + attn && j == L && i < l->levels - 1 && starts(tail, "conv."))
            return target(t, n, SD_ORIG_AS_IS, key, err, "up_blocks.%d.upsamplers.0.%s", i, tail);
        return unmapped(key, "no such layer in the config's up blocks", err);
    }
    return unmapped(key, "not a UNet layer", err);
}

/* ---- VAE ---- */

static sd_status vae_resnet(char *out, size_t cap, const char *tail)
{
    if (starts(tail, "nin_shortcut."))
        snprintf(out, cap, "conv_shortcut.%s", tail + strlen("nin_shortcut."));
    else
        snprintf(out, cap, "%s", tail);
    return SD_OK;
}

sd_status sd_orig_vae_name(const char *rest, int levels, sd_orig_target *t, int *n, const char *key, sd_error *err)
{
    if (starts(rest, "quant_conv.") || starts(rest, "post_quant_conv."))
        return target(t, n, SD_ORIG_AS_IS, key, err, "%s", rest);
    const char *half = starts(rest, "encoder.") ? "encoder" : starts(rest, "decoder.") ? "decoder" : NULL;
    if (!half)
        return unmapped(key, "not an autoencoder layer", err);
    const char *p = rest + strlen(half) + 1;
    char res[200];
    if (starts(p, "conv_in.") || starts(p, "conv_out."))
        return target(t, n, SD_ORIG_AS_IS, key, err, "%s.%s", half, p);
    if (starts(p, "norm_out."))
        return target(t, n, SD_ORIG_AS_IS, key, err, "%s.conv_norm_out.%s", half, p + strlen("norm_out."));
    if (starts(p, "mid.block_1.") || starts(p, "mid.block_2.")) {
        vae_resnet(res, sizeof res, p + strlen("mid.block_1."));
        return target(t, n, SD_ORIG_AS_IS, key, err, "%s.mid_block.resnets.%d.%s", half, p[10] - '1', res);
    }
    if (starts(p, "mid.attn_1.")) {
        const char *a = p + strlen("mid.attn_1.");
        int r = RENAME_ROW(VAE_MID_ATTN, 0, a);
        if (r < 0)
            return unmapped(key, "not a mid-block attention parameter", err);
        const char *leaf = a + strlen(VAE_MID_ATTN[r][0]);
        /* the original stores the projections (all but the norm) as 1x1 convs */
        sd_orig_transform how = r > 0 && !strcmp(leaf, "weight") ? SD_ORIG_SQUEEZE : SD_ORIG_AS_IS;
        return target(t, n, how, key, err, "%s.mid_block.attentions.0.%s%s", half, VAE_MID_ATTN[r][1], leaf);
    }
    int enc = half[0] == 'e';
    const char *lv = enc ? "down." : "up.";
    if (!starts(p, lv))
        return unmapped(key, "not an autoencoder layer", err);
    char *end;
    long b = strtol(p + strlen(lv), &end, 10);
    if (end == p + strlen(lv) || *end != '.' || b < 0 || b >= levels)
        return unmapped(key, "block beyond the config's levels", err);
    /* the decoder's blocks are numbered from the bottom in the original */
    int i = enc ? (int)b : levels - 1 - (int)b;
    const char *tail = end + 1;
    const char *blocks = enc ? "down_blocks" : "up_blocks";
    if (starts(tail, "block.")) {
        long j = strtol(tail + strlen("block."), &end, 10);
        if (*end != '.' || j < 0)
            return unmapped(key, "bad resnet index", err);
        vae_resnet(res, sizeof res, end + 1);
        return target(t, n, SD_ORIG_AS_IS, key, err, "%s.%s.%d.resnets.%ld.%s", half, blocks, i, j, res);
    }
    const char *sampler = enc ? "downsample." : "upsample.";
    if (starts(tail, sampler))
        return target(t, n, SD_ORIG_AS_IS, key, err, "%s.%s.%d.%ssamplers.0.%s", half, blocks, i, enc ? "down" : "up",
                      tail + strlen(sampler));
    return unmapped(key, "not an autoencoder layer", err);
}

int sd_orig_is_vae_original_key(const char *key)
{
    return strstr(key, "encoder.down.") || strstr(key, "decoder.up.") || strstr(key, ".mid.block_1.");
}

/* ---- OpenCLIP text encoder ---- */

sd_status sd_orig_openclip_name(const char *rest, sd_orig_target *t, int *n, const char *key, sd_error *err)
{
    if (!strcmp(rest, "token_embedding.weight"))
        return target(t, n, SD_ORIG_AS_IS, key, err, "text_model.embeddings.token_embedding.weight");
    if (!strcmp(rest, "positional_embedding"))
        return target(t, n, SD_ORIG_AS_IS, key, err, "text_model.embeddings.position_embedding.weight");
    if (starts(rest, "ln_final."))
        return target(t, n, SD_ORIG_AS_IS, key, err, "text_model.final_layer_norm.%s", rest + strlen("ln_final."));
    if (!strcmp(rest, "text_projection")) /* OpenCLIP applies x @ P; transformers' Linear holds P^T */
        return target(t, n, SD_ORIG_TRANSPOSE, key, err, "text_projection.weight");
    if (!starts(rest, "transformer.resblocks."))
        return unmapped(key, "not an OpenCLIP text layer", err);
    char *end;
    const char *p = rest + strlen("transformer.resblocks.");
    long layer = strtol(p, &end, 10);
    if (end == p || *end != '.' || layer < 0)
        return unmapped(key, "bad layer index", err);
    const char *tail = end + 1;
    int r = RENAME_ROW(OPENCLIP_LAYER, 0, tail);
    if (r >= 0)
        return target(t, n, SD_ORIG_AS_IS, key, err, "text_model.encoder.layers.%ld.%s%s", layer,
                      OPENCLIP_LAYER[r][1], tail + strlen(OPENCLIP_LAYER[r][0]));
    const char *leaf = !strcmp(tail, "attn.in_proj_weight") ? "weight" : !strcmp(tail, "attn.in_proj_bias") ? "bias" : NULL;
    if (!leaf)
        return unmapped(key, "not an OpenCLIP text layer", err);
    for (int part = 0; part < 3; part++) {
        int one;
        SD_TRY(target(&t[part], &one, SD_ORIG_THIRD, key, err, "text_model.encoder.layers.%ld.self_attn.%c_proj.%s",
                      layer, "qkv"[part], leaf));
        t[part].part = part;
    }
    *n = 3;
    return SD_OK;
}

/* ---- diffusers names back to the original layout (messages) ---- */

/* a resnet parameter's tail in the original's names (as is when unknown) */
static void resnet_back(const char *src, char *tail, size_t cap)
{
    int r = RENAME_ROW(UNET_RESNET, 1, src);
    if (r < 0)
        snprintf(tail, cap, "%s", src);
    else
        snprintf(tail, cap, "%s%s", UNET_RESNET[r][0], src + strlen(UNET_RESNET[r][1]));
}

static int unet_back(const char *n, const sd_unet_layout *l, char *out, size_t len)
{
    int r = RENAME_ROW(UNET_FIXED, 1, n);
    if (r >= 0)
        return snprintf(out, len, "%s%s", UNET_FIXED[r][0], n + strlen(UNET_FIXED[r][1])) > 0;
    int L = l->layers, i, j, used = 0;
    char kind[16];
    const char *rest;
    char tail[256];
    if (sscanf(n, "down_blocks.%d.%15[a-z].%d.%n", &i, kind, &j, &used) == 3 && used) {
        rest = n + used;
        if (!strcmp(kind, "resnets")) {
            resnet_back(rest, tail, sizeof tail);
            return snprintf(out, len, "input_blocks.%d.0.%s", 1 + i * (L + 1) + j, tail) > 0;
        }
        if (!strcmp(kind, "attentions"))
            return snprintf(out, len, "input_blocks.%d.1.%s", 1 + i * (L + 1) + j, rest) > 0;
        if (!strcmp(kind, "downsamplers") && starts(rest, "conv."))
            return snprintf(out, len, "input_blocks.%d.0.op.%s", (i + 1) * (L + 1), rest + 5) > 0;
        return 0;
    }
    if (sscanf(n, "mid_block.%15[a-z].%d.%n", kind, &j, &used) == 2 && used) {
        rest = n + used;
        if (!strcmp(kind, "attentions"))
            return snprintf(out, len, "middle_block.1.%s", rest) > 0;
        resnet_back(rest, tail, sizeof tail);
        return snprintf(out, len, "middle_block.%d.%s", 2 * j, tail) > 0;
    }
    if (sscanf(n, "up_blocks.%d.%15[a-z].%d.%n", &i, kind, &j, &used) == 3 && used) {
        rest = n + used;
        if (!strcmp(kind, "resnets")) {
            resnet_back(rest, tail, sizeof tail);
            return snprintf(out, len, "output_blocks.%d.0.%s", i * (L + 1) + j, tail) > 0;
        }
        if (!strcmp(kind, "attentions"))
            return snprintf(out, len, "output_blocks.%d.1.%s", i * (L + 1) + j, rest) > 0;
        if (!strcmp(kind, "upsamplers"))
            return snprintf(out, len, "output_blocks.%d.%d.%s", i * (L + 1) + L, (l->up_attn >> i & 1) ? 2 : 1, rest) > 0;
    }
    return 0;
}

static int vae_back(const char *n, int levels, char *out, size_t len)
{
    const char *half = starts(n, "encoder.") ? "encoder" : starts(n, "decoder.") ? "decoder" : NULL;
    if (!half)
        return snprintf(out, len, "%s", n) > 0; /* quant_conv, post_quant_conv */
    const char *p = n + strlen(half) + 1;
    int i, j, used = 0, enc = half[0] == 'e';
    char t[256];
    if (starts(p, "conv_norm_out."))
        return snprintf(out, len, "%s.norm_out.%s", half, p + strlen("conv_norm_out.")) > 0;
    if (sscanf(p, "mid_block.resnets.%d.%n", &j, &used) == 1 && used) {
        snprintf(t, sizeof t, "%s", p + used);
        if (starts(t, "conv_shortcut."))
            snprintf(t, sizeof t, "nin_shortcut.%s", p + used + strlen("conv_shortcut."));
        return snprintf(out, len, "%s.mid.block_%d.%s", half, j + 1, t) > 0;
    }
    if (starts(p, "mid_block.attentions.0.")) {
        const char *a = p + strlen("mid_block.attentions.0.");
        int r = RENAME_ROW(VAE_MID_ATTN, 1, a);
        return r >= 0 && snprintf(out, len, "%s.mid.attn_1.%s%s", half, VAE_MID_ATTN[r][0],
                                  a + strlen(VAE_MID_ATTN[r][1])) > 0;
    }
    const char *blocks = enc ? "down_blocks." : "up_blocks.";
    if (starts(p, blocks) && sscanf(p + strlen(blocks), "%d.%n", &i, &used) == 1 && used) {
        const char *rest = p + strlen(blocks) + used;
        int b = enc ? i : levels - 1 - i;
        const char *lv = enc ? "down" : "up";
        if (sscanf(rest, "resnets.%d.%n", &j, &used) == 1 && used) {
            snprintf(t, sizeof t, "%s", rest + used);
            if (starts(t, "conv_shortcut."))
                snprintf(t, sizeof t, "nin_shortcut.%s", rest + used + strlen("conv_shortcut."));
            return snprintf(out, len, "%s.%s.%d.block.%d.%s", half, lv, b, j, t) > 0;
        }
        if (starts(rest, enc ? "downsamplers.0." : "upsamplers.0."))
            return snprintf(out, len, "%s.%s.%d.%ssample.%s", half, lv, b, lv, rest + strlen(enc ? "downsamplers.0." : "upsamplers.0.")) > 0;
        return 0;
    }
    return snprintf(out, len, "%s", n) > 0; /* conv_in, conv_out */
}

int sd_orig_key_of(const char *component, const char *name, int refiner, int vae_file, const sd_unet_layout *ul,
                   int vae_levels, char *out, size_t len)
{
    char body[320];
    if (!strcmp(component, "unet")) {
        if (!ul || !unet_back(name, ul, body, sizeof body))
            return 0;
        return snprintf(out, len, "model.diffusion_model.%s", body) > 0;
    }
    if (!strcmp(component, "vae")) {
        if (!vae_back(name, vae_levels, body, sizeof body))
            return 0;
        return snprintf(out, len, "%s%s", vae_file ? "" : "first_stage_model.", body) > 0;
    }
    if (!strcmp(component, "text_encoder"))
        return snprintf(out, len, "conditioner.embedders.0.transformer.%s", name) > 0;
    /* OpenCLIP: the fused in_proj for q/k/v, the renamed layers */
    const char *pre = refiner ? "conditioner.embedders.0.model." : "conditioner.embedders.1.model.";
    int layer, used = 0;
    if (!strcmp(name, "text_projection.weight"))
        return snprintf(out, len, "%stext_projection", pre) > 0;
    if (!strcmp(name, "text_model.embeddings.token_embedding.weight"))
        return snprintf(out, len, "%stoken_embedding.weight", pre) > 0;
    if (!strcmp(name, "text_model.embeddings.position_embedding.weight"))
        return snprintf(out, len, "%spositional_embedding", pre) > 0;
    if (starts(name, "text_model.final_layer_norm."))
        return snprintf(out, len, "%sln_final.%s", pre, name + strlen("text_model.final_layer_norm.")) > 0;
    if (sscanf(name, "text_model.encoder.layers.%d.%n", &layer, &used) == 1 && used) {
        const char *t = name + used;
        int r = RENAME_ROW(OPENCLIP_LAYER, 1, t);
        if (r >= 0)
            return snprintf(out, len, "%stransformer.resblocks.%d.%s%s", pre, layer, OPENCLIP_LAYER[r][0],
                            t + strlen(OPENCLIP_LAYER[r][1])) > 0;
        if (starts(t, "self_attn.") && strstr(t, "_proj."))
            return snprintf(out, len, "%stransformer.resblocks.%d.attn.in_proj_%s", pre, layer,
                            ends(t, ".weight") ? "weight" : "bias") > 0;
    }
    return 0;
}
