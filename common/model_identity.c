/* model_identity.c - see model_identity.h. */
#include "common/model_identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/builtin_models.h"
#include "common/fsutil.h"
#include "common/hashmap.h"
#include "common/model_folder.h"

static uint64_t mix(uint64_t h, const void *data, size_t len)
{
    return (h ^ sd_hash_bytes(data, len)) * 0x100000001b3ull + len;
}

static uint64_t mix_json(uint64_t h, json_t *v)
{
    char *text = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);
    if (text) {
        h = mix(h, text, strlen(text));
        free(text);
    }
    return h;
}

static sd_status mix_component(uint64_t *h, const sd_component *c, const char *variant, sd_error *err)
{
    *h = mix(*h, c->name, strlen(c->name));
    if (!c->present || c->kind == SD_COMPONENT_KIND_TOKENIZER)
        return SD_OK;
    sd_json_doc cfg;
    SD_TRY(sd_component_config(c, &cfg, err));
    *h = mix_json(*h, cfg.root);
    sd_json_free(&cfg);
    if (c->kind != SD_COMPONENT_KIND_WEIGHTS)
        return SD_OK;
    sd_weights w;
    SD_TRY(sd_weights_open(&w, c, variant, err));
    for (int f = 0; f < w.nfiles; f++)
        *h = mix(*h, (const char *)w.files[f]->map + 8, w.files[f]->header_len);
    sd_weights_close(&w);
    return SD_OK;
}

sd_status sd_model_identity_of(const sd_model_folder *m, const char *variant, char *out, size_t len, sd_error *err)
{
    uint64_t h = 0xcbf29ce484222325ull;
    char flags[160];
    snprintf(flags, sizeof flags, "%s/%d/%d", m->pipeline_class, m->force_zeros_for_empty_prompt,
             m->requires_aesthetics_score);
    h = mix(h, flags, strlen(flags));
    for (int i = 0; i < m->n; i++)
        SD_TRY(mix_component(&h, &m->comps[i], variant, err));
    snprintf(out, len, "sdxl-%016llx", (unsigned long long)h);
    return SD_OK;
}

sd_status sd_identity_mix_component(char *id, size_t len, const sd_component *c, const char *variant, sd_error *err)
{
    uint64_t h = strtoull(id + strlen("sdxl-"), NULL, 16);
    SD_TRY(mix_component(&h, c, variant, err));
    snprintf(id, len, "sdxl-%016llx", (unsigned long long)h);
    return SD_OK;
}

sd_status sd_identity_mix_text(char *id, size_t len, const char *text)
{
    uint64_t h = strtoull(id + strlen("sdxl-"), NULL, 16);
    h = mix(h, text, strlen(text));
    snprintf(id, len, "sdxl-%016llx", (unsigned long long)h);
    return SD_OK;
}

sd_status sd_model_identity(const char *path, const char *config_dir, const char *variant, char *out, size_t len,
                            sd_error *err)
{
    sd_model_folder m;
    SD_TRY(sd_model_open_path(&m, path, config_dir, err));
    sd_status st = sd_model_identity_of(&m, variant, out, len, err);
    sd_model_close(&m);
    return st;
}
