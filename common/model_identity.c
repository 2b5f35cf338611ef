/* model_identity.c - see model_identity.h. */
#include "common/model_identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/hashmap.h"
#include "common/model_folder.h"

static uint64_t mix(uint64_t h, const void *data, size_t len)
{
    return (h ^ sd_hash_bytes(data, len)) * 0x100000001b3ull + len;
}

static sd_status hash_file(uint64_t *h, const char *path, sd_error *err)
{
    char *text;
    size_t len;
    SD_TRY(sd_read_file(path, &text, &len, err));
    *h = mix(*h, text, len);
    free(text);
    return SD_OK;
}

sd_status sd_model_identity(const char *dir, const char *variant, char *out, size_t len, sd_error *err)
{
    sd_model_folder m;
    SD_TRY(sd_model_open(&m, dir, err));
    uint64_t h = 0xcbf29ce484222325ull;
    char *idx = sd_path_join(dir, "model_index.json");
    sd_status st = idx ? hash_file(&h, idx, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    free(idx);
    for (int i = 0; i < m.n && st == SD_OK; i++) {
        const sd_component *c = &m.comps[i];
        if (!c->present || c->kind == SD_COMPONENT_KIND_TOKENIZER)
            continue;
        const char *cfg = c->kind == SD_COMPONENT_KIND_SCHEDULER ? "scheduler_config.json" : "config.json";
        char *p = sd_path_join(c->dir, cfg);
        st = p ? hash_file(&h, p, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
        free(p);
        if (st != SD_OK || c->kind != SD_COMPONENT_KIND_WEIGHTS)
            continue;
        sd_weights w;
        st = sd_weights_open(&w, c, variant, err);
        if (st != SD_OK)
            break;
        for (int f = 0; f < w.nfiles; f++)
            h = mix(h, (const char *)w.files[f]->map + 8, w.files[f]->header_len);
        sd_weights_close(&w);
    }
    sd_model_close(&m);
    if (st == SD_OK)
        snprintf(out, len, "sdxl-%016llx", (unsigned long long)h);
    return st;
}
