/* image_meta.c - see image_meta.h. */
#include "worker/image_meta.h"

#include <stdio.h>
#include <string.h>

void sd_image_meta_fill(sd_image_meta *m, const sd_gen_params *g, int width, int height, const char *identity)
{
    snprintf(m->seed, sizeof m->seed, "%llu", (unsigned long long)g->seed);
    snprintf(m->steps, sizeof m->steps, "%d", g->steps);
    snprintf(m->guidance, sizeof m->guidance, "%g", (double)g->guidance);
    snprintf(m->size, sizeof m->size, "%dx%d", width, height);
    sd_image_text t[SD_IMAGE_META_N] = {
        {"prompt", g->prompt},
        {"negative_prompt", g->negative_prompt ? g->negative_prompt : ""},
        {"seed", m->seed},
        {"steps", m->steps},
        {"guidance", m->guidance},
        {"size", m->size},
        {"scheduler", g->scheduler >= 0 ? sd_sched_name((sd_sched_kind)g->scheduler) : "model default"},
        {"model", identity},
        {"software", "sdxl"},
    };
    memcpy(m->text, t, sizeof t);
}

const char *sd_image_meta_value(const sd_image_meta *m, const char *key)
{
    for (int i = 0; i < SD_IMAGE_META_N; i++)
        if (!strcmp(m->text[i].key, key))
            return m->text[i].value;
    return NULL;
}

sd_status sd_image_meta_encode(const sd_image_meta *m, const char *ext, const uint8_t *rgb, int width, int height,
                               uint8_t **out, size_t *len, sd_error *err)
{
    char name[16];
    snprintf(name, sizeof name, "x.%s", ext);
    int fmt = sd_image_format_of(name);
    if (fmt < 0)
        return sd_fail(err, SD_ERR_INVALID, "unknown image format '%s'", ext);
    return sd_image_encode((sd_image_format)fmt, rgb, width, height, m->text, SD_IMAGE_META_N, 95, out, len, err);
}
