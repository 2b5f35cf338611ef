/* image_meta.c - see image_meta.h. */
#include "worker/engine/pipeline/image_meta.h"

#include "worker/engine/pipeline/watermark.h"

#include <stdio.h>
#include <string.h>

static void add(sd_image_meta *m, const char *key, const char *value)
{
    if (m->n < SD_IMAGE_META_MAX)
        m->text[m->n++] = (sd_image_text){key, value};
}

/* Whether a parameter changed this image: the ones that only matter with a
 * refiner, an init image or when given are left out otherwise. */
static int relevant(const sd_gen_params_spec *s, const sd_gen_params *g, const sd_pipeline *p)
{
    if (!s->in_metadata)
        return 0;
    const char *k = s->key;
    if (!strcmp(k, "prompt_2") || !strcmp(k, "negative_prompt_2"))
        return *(const char *const *)((const char *)g + s->offset) != NULL;
    if (!strcmp(k, "high_noise_frac"))
        return p->has_refiner;
    if (!strcmp(k, "aesthetic_score") || !strcmp(k, "negative_aesthetic_score"))
        return p->has_refiner || p->base_aesthetics;
    if (!strcmp(k, "strength"))
        return g->init_image != NULL;
    if (!strcmp(k, "original_size"))
        return g->original_w != 0;
    if (!strcmp(k, "target_size"))
        return g->target_w != 0;
    if (!strcmp(k, "crop_top_left"))
        return g->crop_top != 0 || g->crop_left != 0;
    if (!strcmp(k, "negative_original_size"))
        return g->neg_original_w != 0;
    if (!strcmp(k, "negative_target_size"))
        return g->neg_target_w != 0;
    if (!strcmp(k, "negative_crop_top_left"))
        return g->neg_crop_top != 0 || g->neg_crop_left != 0;
    if (!strcmp(k, "eta"))
        return g->eta != 0.0f;
    if (!strcmp(k, "clip_skip"))
        return g->clip_skip != 0;
    if (!strcmp(k, "long_prompts"))
        return g->long_prompts != 0;
    return 1;
}

static const char *watermark_note(const sd_gen_params *g, int width, int height)
{
    if (!g->watermark)
        return "none (--no-watermark)";
    return sd_watermark_applies(width, height) ? "invisible-watermark dwtDct, diffusers' 48 bits"
                                               : "none (under 256 px wide or 256x256 pixels)";
}

/* A1111's "parameters" text, which A1111, ComfyUI importers and Civitai
 * read: the prompt, "Negative prompt: ...", then "Key: value" pairs */
static void a1111(char *out, size_t len, const sd_gen_params *g, int width, int height, const sd_pipeline *p,
                  const char *sampler)
{
    size_t n = 0;
#define PUT(...) n += (size_t)snprintf(out + n, n < len ? len - n : 0, __VA_ARGS__)
    PUT("%s\n", g->prompt ? g->prompt : "");
    if (g->negative_prompt && g->negative_prompt[0])
        PUT("Negative prompt: %s\n", g->negative_prompt);
    PUT("Steps: %d, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %dx%d, Model hash: %s", g->steps, sampler,
        (double)g->guidance, (unsigned long long)g->seed, width, height, p->identity);
    if (g->guidance_rescale != 0.0f)
        PUT(", CFG Rescale phi: %g", (double)g->guidance_rescale);
    if (g->eta != 0.0f)
        PUT(", Eta DDIM: %g", (double)g->eta);
    if (g->clip_skip)
        PUT(", Clip skip: %d", g->clip_skip + 1);
    if (g->init_image)
        PUT(", Denoising strength: %g", (double)g->strength);
    if (p->has_refiner)
        PUT(", Refiner switch at: %g", (double)g->high_noise_frac);
    if (p->vae_note[0])
        PUT(", VAE hash: %s", p->vae_note);
    if (p->lora_note[0])
        PUT(", Lora hashes: \"%s\"", p->lora_note);
    if (g->batch_n > 1)
        PUT(", Batch size: %d, Batch pos: %d", g->batch_n, g->batch_i);
    PUT(", Version: sdxl");
#undef PUT
    if (n >= len && len > 4)
        memcpy(out + len - 4, "...", 4);
}

void sd_image_meta_fill(sd_image_meta *m, const sd_gen_params *g, int width, int height, const sd_pipeline *p)
{
    m->n = 0;
    sd_error err;
    char label[64] = "?";
    m->sched_ran = sd_pipeline_sampler(p, g, label, sizeof label, m->sched, sizeof m->sched, &err) == SD_OK;
    if (!m->sched_ran)
        snprintf(m->sched, sizeof m->sched, "%s", sd_sched_kind_name((sd_sched_kind)g->scheduler));
    for (int i = 0; i < sd_gen_params_count && m->n < SD_IMAGE_META_MAX - 8; i++) {
        const sd_gen_params_spec *s = &sd_gen_params_table[i];
        if (!relevant(s, g, p))
            continue;
        if (s->type == SD_GEN_PARAMS_TYPE_SCHEDULER) { /* what ran, not what was asked */
            add(m, s->key, m->sched);
        } else if (s->type == SD_GEN_PARAMS_TYPE_TEXT) {
            const char *t = *(const char *const *)((const char *)g + s->offset);
            add(m, s->key, t ? t : "");
        } else {
            sd_gen_params_to_text(g, s, m->buf[m->n], sizeof m->buf[m->n]);
            add(m, s->key, m->buf[m->n]);
        }
    }
    if (sd_pipeline_truncation(p, g, m->truncated, sizeof m->truncated, &err) != SD_OK)
        m->truncated[0] = '\0';
    if (m->truncated[0])
        add(m, "prompt_truncated", m->truncated);
    snprintf(m->buf[m->n], sizeof m->buf[m->n], "%dx%d", width, height);
    add(m, "size", m->buf[m->n]);
    add(m, "model", p->identity);
    if (p->variant[0])
        add(m, "variant", p->variant);
    if (p->vae_note[0])
        add(m, "vae", p->vae_note);
    if (p->lora_note[0])
        add(m, "loras", p->lora_note);
    add(m, "watermark", watermark_note(g, width, height));
    if (g->batch_n > 1) {
        snprintf(m->batch, sizeof m->batch, "%d of %d, one generator (num_images_per_prompt)", g->batch_i, g->batch_n);
        add(m, "batch", m->batch);
    }
    a1111(m->params, sizeof m->params, g, width, height, p, label);
    add(m, "parameters", m->params);
    add(m, "software", "sdxl");
}

void sd_image_meta_json(json_t *info, const sd_image_meta *m, const sd_gen_params *g, int width, int height,
                        const sd_pipeline *p)
{
    for (int i = 0; i < sd_gen_params_count; i++) {
        const sd_gen_params_spec *s = &sd_gen_params_table[i];
        if (!relevant(s, g, p))
            continue;
        if (s->type == SD_GEN_PARAMS_TYPE_SCHEDULER && m->sched_ran)
            json_object_set_new(info, s->key, json_string(m->sched));
        else
            json_object_set_new(info, s->key, sd_gen_params_to_json(g, s));
    }
    if (m->truncated[0])
        json_object_set_new(info, "prompt_truncated", json_string(m->truncated));
    json_object_set_new(info, "width", json_integer(width));
    json_object_set_new(info, "height", json_integer(height));
    json_object_set_new(info, "model", json_string(p->identity));
    if (p->variant[0])
        json_object_set_new(info, "variant", json_string(p->variant));
    if (p->vae_note[0])
        json_object_set_new(info, "vae", json_string(p->vae_note));
    if (p->lora_note[0])
        json_object_set_new(info, "loras", json_string(p->lora_note));
    json_object_set_new(info, "watermark", json_string(watermark_note(g, width, height)));
}

sd_status sd_image_meta_encode(const sd_image_meta *m, sd_image_format fmt, const uint8_t *rgb, int width, int height,
                               uint8_t **out, size_t *len, sd_error *err)
{
    return sd_image_encode(fmt, rgb, width, height, m->text, m->n, 95, out, len, err);
}
