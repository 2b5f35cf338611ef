/* worker_models.c - the models a worker holds: the one it was started with
 * and the variants job items asked for (their own LoRAs or VAE on top),
 * kept up to --model-cache in all, the least recently used dropped first.
 * A variant is loaded the way the worker loaded its own model: the LoRAs
 * merged into the weights in fp32 as they are read (seconds at full size,
 * bench-lora_merge), never merged into and out of weights in place, which
 * in fp16 would drift from diffusers' image a little more with each switch. */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "worker/daemon/worker_internal.h"

static void swap_current(worker *w, int i)
{
    sd_pipeline tp = w->p;
    w->p = w->spare[i].p;
    w->spare[i].p = tp;
    char tk[sizeof w->cur_key];
    memcpy(tk, w->cur_key, sizeof tk);
    memcpy(w->cur_key, w->spare[i].key, sizeof tk);
    memcpy(w->spare[i].key, tk, sizeof tk);
    w->spare[i].used = sd_now_s();
}

static void drop_spare(worker *w, int i)
{
    sd_pipeline_free(&w->spare[i].p);
    w->spare[i] = w->spare[--w->nspare];
}

static int least_recently_used(const worker *w)
{
    int lru = 0;
    for (int i = 1; i < w->nspare; i++)
        if (w->spare[i].used < w->spare[lru].used)
            lru = i;
    return lru;
}

sd_status worker_select_model(worker *w, const sd_gen_params *g, sd_error *err)
{
    sd_model_spec spec;
    SD_TRY(sd_model_spec_for_item(&w->o->spec, g->loras, g->vae, &spec, err));
    char key[sizeof w->cur_key];
    sd_model_spec_key(&spec, key, sizeof key);
    if (w->cur_key[0] && !strcmp(key, w->cur_key))
        return SD_OK;
    for (int i = 0; i < w->nspare; i++)
        if (!strcmp(w->spare[i].key, key)) {
            swap_current(w, i);
            return SD_OK;
        }
    int cache = w->o->model_cache > 0 ? w->o->model_cache : 1;
    /* room for the new one: the current model becomes a spare when the
     * cache holds two or more, else it goes first */
    while (w->nspare > 0 && 1 + w->nspare >= cache)
        drop_spare(w, least_recently_used(w));
    if (cache == 1 && w->cur_key[0]) {
        sd_pipeline_free(&w->p);
        w->cur_key[0] = 0;
    }
    wlog(w, "loading the model an item asks for (%s)", key);
    double t0 = sd_now_s();
    sd_pipeline np;
    sd_status st = sd_pipeline_load(&np, w->sb.be, w->sb.f32_be, &spec, w->stages, err);
    if (st != SD_OK)
        return sd_error_prefix(err, st, "the item's model: ");
    w->m.load_s += sd_now_s() - t0;
    if (w->cur_key[0] && w->nspare < WORKER_MODEL_CACHE_MAX) {
        w->spare[w->nspare].p = w->p;
        memcpy(w->spare[w->nspare].key, w->cur_key, sizeof w->cur_key);
        w->spare[w->nspare].used = sd_now_s();
        w->nspare++;
    } else if (w->cur_key[0]) {
        sd_pipeline_free(&w->p);
    }
    w->p = np;
    memcpy(w->cur_key, key, sizeof key);
    return SD_OK;
}

void worker_free_models(worker *w)
{
    while (w->nspare > 0)
        drop_spare(w, w->nspare - 1);
    sd_pipeline_free(&w->p);
    w->cur_key[0] = 0;
}
