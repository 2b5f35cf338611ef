/* clip_config.c - a CLIP text encoder's config.json (CLIPTextModel,
 * CLIPTextModelWithProjection; see clip_text.h). */
#include <stdio.h>
#include <string.h>

#include "worker/engine/text/clip_text.h"

sd_status sd_clip_config_parse(sd_clip_config *cfg, const sd_json_doc *d, const char *class_name, sd_error *err)
{
    long long v[6];
    const char *keys[6] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                           "max_position_embeddings", "vocab_size"};
    sd_status st = SD_OK;
    for (int i = 0; i < 6 && st == SD_OK; i++) {
        st = sd_json_int_in(d, keys[i], 1, 1 << 20, &v[i], err);
    }
    if (st == SD_OK) {
        cfg->hidden = (int)v[0];
        cfg->intermediate = (int)v[1];
        cfg->layers = (int)v[2];
        cfg->heads = (int)v[3];
        cfg->max_positions = (int)v[4];
        cfg->vocab = (int)v[5];
        if (cfg->hidden % cfg->heads)
            st = sd_fail(err, SD_ERR_INVALID, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                         d->path, cfg->hidden, cfg->heads);
    }
    if (st == SD_OK) {
        const char *act = sd_json_string_or(d, "hidden_act", "quick_gelu");
        if (!strcmp(act, "quick_gelu"))
            cfg->act = SD_ACT_QUICK_GELU;
        else if (!strcmp(act, "gelu"))
            cfg->act = SD_ACT_GELU;
        else
            st = sd_fail(err, SD_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (quick_gelu, gelu)", d->path,
                         act);
    }
    if (st == SD_OK) {
        cfg->eps = (float)sd_json_double_or(d, "layer_norm_eps", 1e-5);
        cfg->eos_token_id = sd_json_int_or(d, "eos_token_id", 2);
        cfg->with_projection = !strcmp(class_name, "CLIPTextModelWithProjection");
        cfg->projection_dim = (int)sd_json_int_or(d, "projection_dim", cfg->hidden);
    }
    return st;
}

sd_status sd_clip_config_load(sd_clip_config *cfg, const sd_component *c, sd_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    sd_json_doc d;
    SD_TRY(sd_component_config(c, &d, err));
    sd_status st = sd_clip_config_parse(cfg, &d, c->class_name, err);
    sd_json_free(&d);
    return st;
}

