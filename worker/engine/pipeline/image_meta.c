/* image_meta.c - see image_meta.h. */
#include "worker/engine/pipeline/image_meta.h"

#include <stdio.h>

static void add(sd_image_meta *m, const char *key, const char *value)
{
    if (m->n < SD_IMAGE_META_MAX)
        m->text[m->n++] = (sd_image_text){key, value};
}

void sd_image_meta_fill(sd_image_meta *m, const sd_gen_params *g, int width, int height, const sd_pipeline *p)
{
    m->n = 0;
    for (int i = 0; i < sd_gen_params_count && m->n < SD_IMAGE_META_MAX - 5; i++) {
        const sd_gen_params_spec *s = &sd_gen_params_table[i];
        if (!s->in_metadata)
            continue;
        if (s->type == SD_GEN_PARAMS_TYPE_TEXT) {
            const char *t = *(const char *const *)((const char *)g + s->offset);
            add(m, s->key, t ? t : "");
        } else {
            sd_gen_params_to_text(g, s, m->buf[m->n], sizeof m->buf[m->n]);
            add(m, s->key, m->buf[m->n]);
        }
    }
    snprintf(m->buf[m->n], sizeof m->buf[m->n], "%dx%d", width, height);
    add(m, "size", m->buf[m->n]);
    add(m, "model", p->identity);
    if (p->vae_note[0])
        add(m, "vae", p->vae_note);
    if (p->lora_note[0])
        add(m, "loras", p->lora_note);
    add(m, "software", "sdxl");
}

void sd_image_meta_json(json_t *info, const sd_gen_params *g, int width, int height, const sd_pipeline *p)
{
    for (int i = 0; i < sd_gen_params_count; i++)
        if (sd_gen_params_table[i].in_metadata)
            json_object_set_new(info, sd_gen_params_table[i].key, sd_gen_params_to_json(g, &sd_gen_params_table[i]));
    json_object_set_new(info, "width", json_integer(width));
    json_object_set_new(info, "height", json_integer(height));
    json_object_set_new(info, "model", json_string(p->identity));
    if (p->vae_note[0])
        json_object_set_new(info, "vae", json_string(p->vae_note));
    if (p->lora_note[0])
        json_object_set_new(info, "loras", json_string(p->lora_note));
}

sd_status sd_image_meta_encode(const sd_image_meta *m, sd_image_format fmt, const uint8_t *rgb, int width, int height,
                               uint8_t **out, size_t *len, sd_error *err)
{
    return sd_image_encode(fmt, rgb, width, height, m->text, m->n, 95, out, len, err);
}
