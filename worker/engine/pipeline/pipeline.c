/* pipeline.c - model loading and the text stage; the denoising stages live in
 * pipeline_denoise.c. See pipeline.h. */
#include "worker/engine/pipeline/pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/builtin_models.h"
#include "common/fsutil.h"
#include "common/lora.h"
#include "common/model_identity.h"
#include "worker/engine/text/clip_vocab.h"
#include "worker/engine/unet/unet_step.h"

void sd_pipeline_free(sd_pipeline *p)
{
    sd_clip_tokenizer_free(p->tok1);
    sd_clip_tokenizer_free(p->tok2);
    sd_clip_tokenizer_free(p->rtok2);
    sd_clip_text_free(p->te1);
    sd_clip_text_free(p->te2);
    sd_clip_text_free(p->rte2);
    sd_unet_step_free(p->unet_steps[0]);
    sd_unet_step_free(p->unet_steps[1]);
    sd_unet_free(p->unet);
    sd_unet_free(p->runet);
    sd_vae_free(p->vae);
    sd_vae_free(p->rvae);
    sd_vae_swap_free(&p->vae_swap);
    sd_json_free(&p->sched_cfg);
    sd_json_free(&p->rsched_cfg);
    if (p->base.root)
        sd_model_close(&p->base);
    if (p->refiner.root)
        sd_model_close(&p->refiner);
    memset(p, 0, sizeof *p);
}

/* A single file without --config has no tokenizer folders: SDXL's own
 * tokenizers are the embedded CLIP vocabulary, the second padding with "!".
 * They are written to a private folder, read, and removed. */
static sd_status load_builtin_tokenizer(const char *name, sd_clip_tokenizer **out, sd_error *err)
{
    char tmpl[] = "/tmp/sdxl-tokenizer-XXXXXX";
    if (!mkdtemp(tmpl))
        return sd_fail(err, SD_ERR_IO, "cannot create a folder in /tmp for the builtin tokenizer: %s",
                       strerror(errno));
    sd_status st = sd_clip_write_tokenizer(tmpl, !strcmp(name, "tokenizer_2"), err);
    if (st == SD_OK)
        st = sd_clip_tokenizer_load(out, tmpl, err);
    static const char *const files[] = {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *f = sd_path_join(tmpl, files[i]);
        if (f)
            unlink(f);
        free(f);
    }
    rmdir(tmpl);
    return st;
}

static sd_status load_tokenizer(const sd_model_folder *m, const char *name, sd_clip_tokenizer **out, sd_error *err)
{
    const sd_component *c;
    SD_TRY(sd_model_require(m, name, &c, err));
    return c->dir ? sd_clip_tokenizer_load(out, c->dir, err) : load_builtin_tokenizer(name, out, err);
}

static sd_status load_encoder(sd_backend *be, const sd_model_folder *m, const char *name, const char *variant,
                              sd_clip_text **out, sd_error *err)
{
    const sd_component *c;
    SD_TRY(sd_model_require(m, name, &c, err));
    return sd_clip_text_load(out, be, c, variant, err);
}

static sd_status load_scheduler_cfg(const sd_model_folder *m, sd_json_doc *doc, sd_error *err)
{
    const sd_component *c;
    SD_TRY(sd_model_require(m, "scheduler", &c, err));
    return sd_component_config(c, doc, err);
}

/* The VAE a model decodes with: --vae when given, else its own. */
static sd_status vae_component(const sd_pipeline *p, const sd_model_folder *m, const sd_component **c, sd_error *err)
{
    if (p->has_vae_swap) {
        *c = &p->vae_swap;
        return SD_OK;
    }
    return sd_model_require(m, "vae", c, err);
}

/* diffusers upcasts the VAE to float32 only where its config says
 * force_upcast (SDXL's own VAE overflows in fp16); a VAE saying
 * force_upcast: false (the fp16-fix VAE) decodes in the compute dtype. On
 * CUDA the upcast backend is bf16 (stage_backends.h): the CUDA kernels have
 * no fp32 path yet. */
static sd_status load_vae(sd_pipeline *p, const sd_component *c, const char *variant, sd_vae **out, sd_error *err)
{
    sd_vae_config cfg;
    memset(&cfg, 0, sizeof cfg);
    SD_TRY(sd_vae_config_load(&cfg, c, err));
    if (!cfg.force_upcast)
        p->vae_be = p->be;
    return sd_vae_load(out, p->vae_be, c, variant, err);
}

static sd_status load_all(sd_pipeline *p, const char *variant, int stages, sd_error *err)
{
    const sd_component *c;
    int has_te1 = sd_model_find(&p->base, "text_encoder") && sd_model_find(&p->base, "text_encoder")->present;
    /* the tokenizers also serve the final stage: its metadata says what a
     * too long prompt lost */
    if (stages & (SD_STAGE_TEXT | SD_STAGE_FINAL)) {
        if (has_te1)
            SD_TRY(load_tokenizer(&p->base, "tokenizer", &p->tok1, err));
        SD_TRY(load_tokenizer(&p->base, "tokenizer_2", &p->tok2, err));
    }
    if (stages & SD_STAGE_TEXT) {
        if (has_te1)
            SD_TRY(load_encoder(p->be, &p->base, "text_encoder", variant, &p->te1, err));
        SD_TRY(load_encoder(p->be, &p->base, "text_encoder_2", variant, &p->te2, err));
        if (p->has_refiner) {
            SD_TRY(load_tokenizer(&p->refiner, "tokenizer_2", &p->rtok2, err));
            SD_TRY(load_encoder(p->be, &p->refiner, "text_encoder_2", variant, &p->rte2, err));
        }
    }
    if (stages & (SD_STAGE_UNET | SD_STAGE_FINAL)) {
        SD_TRY(load_scheduler_cfg(&p->base, &p->sched_cfg, err));
        if (p->has_refiner)
            SD_TRY(load_scheduler_cfg(&p->refiner, &p->rsched_cfg, err));
    }
    /* the UNet's config sets the default size, so both denoising stages and
     * the final stage need at least its config; the weights only where used */
    SD_TRY(sd_model_require(&p->base, "unet", &c, err));
    if (stages & SD_STAGE_UNET)
        SD_TRY(sd_unet_load(&p->unet, p->be, c, variant, err));
    /* the VAE is loaded by every stage that needs its scale factor or decoder
     * (unet: latent size and img2img encoding; final: decoding) */
    if (stages & (SD_STAGE_UNET | SD_STAGE_FINAL)) {
        SD_TRY(vae_component(p, &p->base, &c, err));
        SD_TRY(load_vae(p, c, variant, &p->vae, err));
    }
    if ((stages & SD_STAGE_FINAL) && p->has_refiner) {
        SD_TRY(sd_model_require(&p->refiner, "unet", &c, err));
        SD_TRY(sd_unet_load(&p->runet, p->be, c, variant, err));
        const sd_component *rv = sd_model_find(&p->refiner, "vae");
        if (p->has_vae_swap || (rv && rv->present)) {
            SD_TRY(vae_component(p, &p->refiner, &c, err));
            SD_TRY(load_vae(p, c, variant, &p->rvae, err));
        }
    }
    return SD_OK;
}

sd_status sd_pipeline_load(sd_pipeline *p, sd_backend *be, sd_backend *vae_be, const sd_model_spec *spec, int stages,
                           sd_error *err)
{
    memset(p, 0, sizeof *p);
    p->be = be;
    p->vae_be = vae_be ? vae_be : be;
    const char *graph = getenv("SDXL_CUDA_GRAPH");
    p->unet_graph = graph && !strcmp(graph, "1");
    sd_status st = sd_model_open_path(&p->base, spec->model, spec->model_config, err);
    if (st == SD_OK && spec->refiner) {
        st = sd_model_open_path(&p->refiner, spec->refiner, spec->refiner_config, err);
        if (st != SD_OK)
            sd_error_prefix(err, st, "--refiner: ");
        p->has_refiner = st == SD_OK;
    }
    if (st == SD_OK) {
        /* diffusers' defaults when model_index.json is silent: the base
         * pipeline zeroes empty negatives, the img2img (refiner) one does not */
        int img2img = !strcmp(p->base.pipeline_class, "StableDiffusionXLImg2ImgPipeline");
        p->force_zeros = img2img ? p->base.force_zeros_for_empty_prompt == 1 : p->base.force_zeros_for_empty_prompt != 0;
        p->base_aesthetics = img2img && p->base.requires_aesthetics_score == 1;
        p->base_img2img = img2img;
        if (p->has_refiner) {
            p->r_force_zeros = p->refiner.force_zeros_for_empty_prompt == 1;
            p->r_aesthetics = p->refiner.requires_aesthetics_score == 1;
        }
    }
    snprintf(p->variant, sizeof p->variant, "%s", spec->variant ? spec->variant : "");
    if (st == SD_OK && spec->vae) {
        st = sd_vae_swap_component(&p->vae_swap, &p->base, spec->vae, err);
        p->has_vae_swap = st == SD_OK;
    }
    sd_lora loras[SD_MAX_LORAS];
    sd_lora_deltas deltas[3];
    memset(deltas, 0, sizeof deltas);
    int nl = 0;
    sd_lora_index *lora_index = NULL;
    if (st == SD_OK && spec->nloras && (st = sd_lora_index_open(&lora_index, &p->base, spec->variant, err)) != SD_OK)
        sd_error_prefix(err, st, "--lora: ");
    for (; st == SD_OK && nl < spec->nloras; nl++) {
        st = sd_lora_open(&loras[nl], spec->loras[nl].path, spec->loras[nl].scale, lora_index, err);
        if (st != SD_OK) {
            sd_error_prefix(err, st, "--lora: ");
            break;
        }
    }
    sd_lora_index_free(lora_index);
    /* the LoRAs apply to the base model (diffusers' load_lora_weights on
     * its pipeline); the loader merges them as it reads each weight */
    static const char *const lora_comps[3] = {"unet", "text_encoder", "text_encoder_2"};
    for (int i = 0; i < 3 && st == SD_OK && nl; i++) {
        st = sd_lora_deltas_for(loras, nl, lora_comps[i], &deltas[i], err);
        for (int k = 0; k < p->base.n && st == SD_OK; k++)
            if (!strcmp(p->base.comps[k].name, lora_comps[i]))
                p->base.comps[k].lora = &deltas[i];
    }
    if (st == SD_OK)
        st = load_all(p, spec->variant, stages, err);
    for (int k = 0; k < p->base.n; k++)
        p->base.comps[k].lora = NULL;
    for (int i = 0; i < 3; i++)
        sd_lora_deltas_free(&deltas[i]);
    for (int i = 0; i < nl; i++)
        sd_lora_close(&loras[i]);
    if (st == SD_OK)
        st = sd_model_spec_describe(spec, p->identity, sizeof p->identity, p->vae_note, sizeof p->vae_note,
                                    p->lora_note, sizeof p->lora_note, err);
    if (st != SD_OK)
        sd_pipeline_free(p);
    return st;
}

/* The UNet config is read once more here (it is small) so that every stage
 * can answer, whatever it loaded. */
static void unet_sample_size(const sd_pipeline *p, int *ss)
{
    *ss = 128;
    if (p->unet) {
        *ss = sd_unet_get_config(p->unet)->sample_size;
        return;
    }
    const sd_component *c = sd_model_find(&p->base, "unet");
    sd_unet_config cfg;
    if (c && c->present && sd_unet_config_load(&cfg, c, NULL) == SD_OK)
        *ss = cfg.sample_size;
}

void sd_pipeline_size(const sd_pipeline *p, const sd_gen_params *g, int *width, int *height)
{
    int ss, f = p->vae ? sd_vae_scale_factor(p->vae) : 8;
    unet_sample_size(p, &ss);
    if (g->init_image) {
        *width = g->width ? g->width : g->init_w;
        *height = g->height ? g->height : g->init_h;
        return;
    }
    *width = g->width ? g->width : ss * f;
    *height = g->height ? g->height : ss * f;
}

sd_status sd_pipeline_check_params(const sd_pipeline *p, const sd_gen_params *g, sd_error *err)
{
    int W, H, f = p->vae ? sd_vae_scale_factor(p->vae) : 8;
    sd_pipeline_size(p, g, &W, &H);
    if (W < f || H < f || W % f || H % f || W > 8192 || H > 8192)
        return sd_fail(err, SD_ERR_INVALID, "--width/--height: %dx%d must be multiples of %d between %d and 8192", W, H,
                       f, f);
    if (g->steps < 1 || g->steps > 1000)
        return sd_fail(err, SD_ERR_INVALID, "--steps: %d is not between 1 and 1000", g->steps);
    if (!isfinite(g->guidance) || g->guidance < 0 || g->guidance > 100)
        return sd_fail(err, SD_ERR_INVALID, "--guidance: must be a finite number between 0 and 100");
    if (!isfinite(g->guidance_rescale) || g->guidance_rescale < 0 || g->guidance_rescale > 1)
        return sd_fail(err, SD_ERR_INVALID, "--guidance-rescale: must be between 0 and 1");
    if (p->has_refiner && (!isfinite(g->high_noise_frac) || g->high_noise_frac <= 0 || g->high_noise_frac >= 1))
        return sd_fail(err, SD_ERR_INVALID, "--high-noise-frac: must be strictly between 0 and 1");
    if (!isfinite(g->aesthetic_score) || !isfinite(g->negative_aesthetic_score))
        return sd_fail(err, SD_ERR_INVALID, "--aesthetic-score / --negative-aesthetic-score: must be finite");
    if (g->init_image && (!isfinite(g->strength) || g->strength <= 0 || g->strength > 1))
        return sd_fail(err, SD_ERR_INVALID, "--strength: must be in (0, 1]");
    if (g->init_image && (g->init_w != W || g->init_h != H))
        return sd_fail(err, SD_ERR_INVALID, "--init-image: %dx%d differs from the output size %dx%d", g->init_w,
                       g->init_h, W, H);
    if (!g->prompt)
        return sd_fail(err, SD_ERR_INVALID, "--prompt: a prompt is required");
    if (p->base_img2img && !g->init_image)
        return sd_fail(err, SD_ERR_INVALID,
                       "--model %s is an image-to-image model (%s, e.g. the SDXL refiner on its own): give --init-image",
                       p->base.single_file ? p->base.single_file : p->base.root, p->base.pipeline_class);
    return SD_OK;
}

/* ---- text stage ---- */

void sd_text_result_free(sd_text_result *t)
{
    free(t->embeds);
    free(t->pooled);
    free(t->r_embeds);
    free(t->r_pooled);
    memset(t, 0, sizeof *t);
}

/* penultimate hidden states (and the pooled projection for encoder 2) of one
 * text, on the host */
static sd_status encode_one(sd_clip_tokenizer *tok, sd_clip_text *te, const char *text, int want_pooled, int skip,
                            float **hidden, int *S, int *D, float **pooled, int *P, sd_error *err)
{
    int64_t ids[77];
    int L = sd_clip_tokenizer_max_length(tok);
    if (L > 77)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "tokenizer max length %d (77 supported)", L);
    SD_TRY(sd_clip_tokenize(tok, text, ids, NULL, err));
    sd_tensor pen = {0}, emb = {0};
    sd_clip_outputs o = {.penultimate = &pen, .text_embeds = want_pooled ? &emb : NULL, .skip = skip};
    sd_status st = sd_clip_text_forward(te, ids, 1, L, &o, err);
    if (st == SD_OK) {
        *S = (int)pen.shape[1];
        *D = (int)pen.shape[2];
        *hidden = malloc((size_t)sd_tensor_numel(&pen) * sizeof(float));
        st = *hidden ? sd_tensor_to_host_f32(&pen, *hidden, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    if (st == SD_OK && want_pooled) {
        *P = (int)emb.shape[1];
        *pooled = malloc((size_t)*P * sizeof(float));
        st = *pooled ? sd_tensor_to_host_f32(&emb, *pooled, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    sd_tensor_free(&pen);
    sd_tensor_free(&emb);
    return st;
}

/* encode_prompt of diffusers for one (prompt, prompt_2) pair: [S, D1 + D2]
 * (or D2 alone without encoder 1) and pooled [P] */
static sd_status encode_pair(sd_clip_tokenizer *t1, sd_clip_text *e1, sd_clip_tokenizer *t2, sd_clip_text *e2,
                             const char *text1, const char *text2, int skip, float **embeds, int *S, int *D,
                             float **pooled, int *P, sd_error *err)
{
    float *h1 = NULL, *h2 = NULL;
    int S1 = 0, D1 = 0, S2 = 0, D2 = 0;
    sd_status st = SD_OK;
    if (e1)
        st = encode_one(t1, e1, text1, 0, skip, &h1, &S1, &D1, NULL, NULL, err);
    /* without encoder 1 (the refiner) diffusers zips [prompt, prompt_2] with
     * [tokenizer_2]: encoder 2 then reads the first prompt, never prompt_2 */
    if (st == SD_OK)
        st = encode_one(t2, e2, e1 ? text2 : text1, 1, skip, &h2, &S2, &D2, pooled, P, err);
    if (st == SD_OK && e1 && S1 != S2)
        st = sd_fail(err, SD_ERR_INVALID, "the two tokenizers give %d and %d tokens", S1, S2);
    if (st == SD_OK) {
        *S = S2;
        *D = D1 + D2;
        *embeds = malloc((size_t)S2 * (size_t)(D1 + D2) * sizeof(float));
        if (!*embeds)
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
        for (int s = 0; st == SD_OK && s < S2; s++) {
            if (D1)
                memcpy(*embeds + (size_t)s * (D1 + D2), h1 + (size_t)s * D1, (size_t)D1 * sizeof(float));
            memcpy(*embeds + (size_t)s * (D1 + D2) + D1, h2 + (size_t)s * D2, (size_t)D2 * sizeof(float));
        }
    }
    free(h1);
    free(h2);
    return st;
}

/* Stacks [negative; positive] (or positive alone) into out buffers. */
static sd_status stack(int cfg, const float *neg, const float *pos, size_t n, float **out, sd_error *err)
{
    *out = malloc((size_t)(1 + cfg) * n * sizeof(float));
    if (!*out)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (cfg) {
        if (neg)
            memcpy(*out, neg, n * sizeof(float));
        else
            memset(*out, 0, n * sizeof(float));
    }
    memcpy(*out + (size_t)cfg * n, pos, n * sizeof(float));
    return SD_OK;
}

static sd_status text_conditioning(sd_clip_tokenizer *t1, sd_clip_text *e1, sd_clip_tokenizer *t2, sd_clip_text *e2,
                                   const sd_gen_params *g, int cfg, int force_zeros, float **embeds, float **pooled,
                                   int *S, int *D, int *P, sd_error *err)
{
    const char *p2 = g->prompt_2 ? g->prompt_2 : g->prompt;
    float *pe = NULL, *pp = NULL, *ne = NULL, *np = NULL;
    int nS, nD, nP;
    sd_status st = encode_pair(t1, e1, t2, e2, g->prompt, p2, g->clip_skip, &pe, S, D, &pp, P, err);
    int zero = g->negative_prompt == NULL && force_zeros;
    if (st == SD_OK && cfg && !zero) {
        const char *n1 = g->negative_prompt ? g->negative_prompt : "";
        const char *n2 = g->negative_prompt_2 ? g->negative_prompt_2 : n1;
        /* diffusers applies clip_skip to the prompt only: the negative
         * prompt always takes hidden_states[-2] */
        st = encode_pair(t1, e1, t2, e2, n1, n2, 0, &ne, &nS, &nD, &np, &nP, err);
    }
    if (st == SD_OK)
        st = stack(cfg, ne, pe, (size_t)*S * (size_t)*D, embeds, err);
    if (st == SD_OK)
        st = stack(cfg, np, pp, (size_t)*P, pooled, err);
    free(pe);
    free(pp);
    free(ne);
    free(np);
    return st;
}

sd_status sd_stage_text(sd_pipeline *p, const sd_gen_params *g, sd_text_result *out, sd_error *err)
{
    memset(out, 0, sizeof *out);
    if (!p->te2)
        return sd_fail(err, SD_ERR_INVALID, "text stage: the text encoders are not loaded");
    if (!g->prompt)
        return sd_fail(err, SD_ERR_INVALID, "--prompt: a prompt is required");
    out->cfg = g->guidance > 1.0f;
    sd_status st = text_conditioning(p->tok1, p->te1, p->tok2, p->te2, g, out->cfg, p->force_zeros, &out->embeds,
                                     &out->pooled, &out->S, &out->D, &out->P, err);
    if (st == SD_OK && p->has_refiner) {
        int S;
        st = text_conditioning(NULL, NULL, p->rtok2, p->rte2, g, out->cfg, p->r_force_zeros, &out->r_embeds,
                               &out->r_pooled, &S, &out->rD, &out->rP, err);
    }
    if (st != SD_OK)
        sd_text_result_free(out);
    return st;
}

sd_status sd_pipeline_truncation(const sd_pipeline *p, const sd_gen_params *g, char *out, size_t len, sd_error *err)
{
    out[0] = 0;
    if (!g->prompt || (!p->tok1 && !p->tok2))
        return SD_OK;
    /* diffusers checks each encoder's prompt: prompt with tokenizer, prompt_2 with tokenizer_2 */
    const char *texts[2] = {g->prompt, g->prompt_2 ? g->prompt_2 : g->prompt};
    sd_clip_tokenizer *toks[2] = {p->tok1 ? p->tok1 : p->tok2, p->tok2};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && (!g->prompt_2 || !strcmp(g->prompt_2, g->prompt)))
            break;
        char part[1024];
        int dropped;
        SD_TRY(sd_clip_dropped_text(toks[i], texts[i], part, sizeof part, &dropped, err));
        if (dropped) {
            size_t at = strlen(out);
            snprintf(out + at, len - at, "%s%s%s", at ? "; " : "", i ? "prompt_2: " : "", part);
        }
    }
    return SD_OK;
}
