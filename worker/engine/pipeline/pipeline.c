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
#include "worker/engine/pipeline/stage_backends.h"
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
    if (p->vae_enc != p->vae)
        sd_vae_free(p->vae_enc);
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

/* A VAE on the backends diffusers would run it on (stage_backends.h,
 * sd_vae_upcasts): the decoder for the final stage, the encoder for the
 * UNet stage (img2img), each in f32 or the compute dtype by the VAE's
 * force_upcast. One load serves both where both run on the same backend;
 * else *enc is a second load of the encoder alone. */
static sd_status load_vae(sd_pipeline *p, const sd_component *c, const char *variant, int stages, sd_vae **dec,
                          sd_vae **enc, sd_error *err)
{
    sd_vae_config cfg;
    memset(&cfg, 0, sizeof cfg);
    SD_TRY(sd_vae_config_load(&cfg, c, err));
    int want_dec = (stages & SD_STAGE_FINAL) != 0, want_enc = enc && (stages & SD_STAGE_UNET);
    sd_backend *dec_be = sd_stage_vae_backend(p->be, p->f32_be, cfg.force_upcast, 0);
    sd_backend *enc_be = sd_stage_vae_backend(p->be, p->f32_be, cfg.force_upcast, 1);
    if (want_dec && want_enc && dec_be == enc_be) {
        SD_TRY(sd_vae_load_parts(dec, dec_be, c, variant, SD_VAE_BOTH, err));
        *enc = *dec;
        return SD_OK;
    }
    if (want_dec)
        SD_TRY(sd_vae_load_parts(dec, dec_be, c, variant, SD_VAE_DECODER, err));
    if (want_enc)
        SD_TRY(sd_vae_load_parts(enc, enc_be, c, variant, SD_VAE_ENCODER, err));
    return SD_OK;
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
    /* the VAE is loaded by every stage that needs its scale factor or one of
     * its halves (unet: latent size and img2img encoding; final: decoding) */
    if (stages & (SD_STAGE_UNET | SD_STAGE_FINAL)) {
        SD_TRY(vae_component(p, &p->base, &c, err));
        SD_TRY(load_vae(p, c, variant, stages, &p->vae, &p->vae_enc, err));
    }
    if ((stages & SD_STAGE_FINAL) && p->has_refiner) {
        SD_TRY(sd_model_require(&p->refiner, "unet", &c, err));
        SD_TRY(sd_unet_load(&p->runet, p->be, c, variant, err));
        const sd_component *rv = sd_model_find(&p->refiner, "vae");
        if (p->has_vae_swap || (rv && rv->present)) {
            SD_TRY(vae_component(p, &p->refiner, &c, err));
            SD_TRY(load_vae(p, c, variant, SD_STAGE_FINAL, &p->rvae, NULL, err));
        }
    }
    return SD_OK;
}

sd_status sd_pipeline_load(sd_pipeline *p, sd_backend *be, sd_backend *f32_be, const sd_model_spec *spec, int stages,
                           sd_error *err)
{
    memset(p, 0, sizeof *p);
    p->be = be;
    p->f32_be = f32_be;
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

const sd_vae *sd_pipeline_base_vae(const sd_pipeline *p)
{
    return p->vae ? p->vae : p->vae_enc;
}

void sd_pipeline_size(const sd_pipeline *p, const sd_gen_params *g, int *width, int *height)
{
    const sd_vae *v = sd_pipeline_base_vae(p);
    int ss, f = v ? sd_vae_scale_factor(v) : 8;
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
    const sd_vae *v = sd_pipeline_base_vae(p);
    int W, H, f = v ? sd_vae_scale_factor(v) : 8;
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
