/* pipeline_denoise.c - the unet stage (base denoising) and the final stage
 * (refiner steps and the VAE decode) of pipeline.h, following diffusers'
 * StableDiffusionXL(Img2Img)Pipeline.__call__ step by step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/pipeline/watermark.h"
#include "worker/engine/unet/unet_step.h"

void sd_latent_result_free(sd_latent_result *l)
{
    free(l->latents);
    memset(l, 0, sizeof *l);
}

void sd_image_result_free(sd_image_result *r)
{
    free(r->image);
    free(r->rgb);
    memset(r, 0, sizeof *r);
}

void sd_image_to_rgb8(const float *chw, int width, int height, uint8_t *rgb)
{
    size_t plane = (size_t)width * height;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) {
            float v = chw[c * plane + i] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            float r = rintf(v * 255.0f); /* numpy's round: half to even */
            rgb[i * 3 + c] = (uint8_t)r;
        }
}

static void emit(const sd_gen_hooks *h, const char *name, const float *data, const int64_t shape[4])
{
    if (h && h->on_latents)
        h->on_latents(h->user, name, data, shape);
}

/* diffusers' rescale_noise_cfg for one item (std over all its elements,
 * unbiased, accumulated in double) */
static void rescale_cfg(float *guided, const float *text, size_t n, float r)
{
    double mt = 0, mg = 0, vt = 0, vg = 0;
    for (size_t i = 0; i < n; i++) {
        mt += text[i];
        mg += guided[i];
    }
    mt /= (double)n;
    mg /= (double)n;
    for (size_t i = 0; i < n; i++) {
        vt += (text[i] - mt) * (text[i] - mt);
        vg += (guided[i] - mg) * (guided[i] - mg);
    }
    float st = (float)sqrt(vt / (double)(n - 1)), sg = (float)sqrt(vg / (double)(n - 1));
    float ratio = st / sg, a = r, b = (float)(1.0 - (double)r);
    for (size_t i = 0; i < n; i++) {
        float rescaled = guided[i] * ratio;
        guided[i] = a * rescaled + b * guided[i];
    }
}

typedef struct {
    sd_unet *unet;
    sd_scheduler *sched;
    const float *timesteps;
    int nsteps;
    const float *embeds, *pooled; /* [B, S, D], [B, P] */
    int B, S, D, P;
    const float *time_ids; /* [B, nids] */
    int nids;
    float guidance, rescale;
    const char *stage; /* "base" / "refiner": names of hooks */
    const sd_cfg_split *split; /* NULL: both halves here, as one batch */
} denoise_job;

/* The denoising loop: latents [1, 4, h, w] in place. */
static sd_status denoise(sd_pipeline *p, const denoise_job *j, float *latents, const int64_t shape[4],
                         sd_torch_gen *gen, const sd_gen_hooks *hooks, sd_error *err)
{
    size_t n = (size_t)(shape[1] * shape[2] * shape[3]);
    int B = j->B;
    /* a CFG pair runs one row of the batch (rank 0 the unconditional, rank 1
     * the text half) and gathers the other row's prediction every step */
    int split = j->split && B == 2, row = split ? j->split->rank : 0, Bl = split ? 1 : B;
    float *in = malloc((size_t)B * n * sizeof *in), *pred = malloc((size_t)B * n * sizeof *pred),
          *mine = split ? malloc(n * sizeof *mine) : pred;
    const float *time_ids = j->time_ids + (size_t)row * j->nids;
    float ts[2];
    sd_status st = (!in || !pred || !mine) ? sd_fail(err, SD_ERR_NOMEM, "out of memory") : SD_OK;
    /* the step of this UNet at these shapes, kept from the image before if it fits */
    sd_unet_step **step = &p->unet_steps[j->unet == p->unet ? 0 : 1];
    if (st == SD_OK && !sd_unet_step_fits(*step, j->unet, Bl, shape[2], shape[3], j->S, j->P, j->nids, p->unet_graph)) {
        sd_unet_step_free(*step);
        *step = NULL;
        st = sd_unet_step_create(step, j->unet, Bl, shape[2], shape[3], j->S, j->P, j->nids, p->unet_graph, err);
    }
    if (st == SD_OK)
        st = sd_unet_step_condition(*step, j->embeds + (size_t)row * j->S * j->D, j->pooled + (size_t)row * j->P,
                                    time_ids, err);
    for (int i = 0; i < j->nsteps && st == SD_OK; i++) {
        float t = j->timesteps[i], div;
        st = sd_scheduler_input_divisor(j->sched, t, &div, err);
        if (st != SD_OK)
            break;
        for (int b = 0; b < Bl; b++)
            for (size_t k = 0; k < n; k++)
                in[b * n + k] = latents[k] / div;
        ts[0] = ts[1] = t;
        st = sd_unet_step_run(*step, in, ts, mine, err);
        if (st == SD_OK && split)
            st = j->split->exchange(j->split->user, mine, pred, n, err);
        if (st != SD_OK)
            break;
        float *guided = pred;
        if (B == 2) {
            const float *unc = pred, *txt = pred + n;
            guided = in; /* reuse */
            for (size_t k = 0; k < n; k++)
                guided[k] = unc[k] + j->guidance * (txt[k] - unc[k]);
            if (j->rescale > 0.0f)
                rescale_cfg(guided, txt, n, j->rescale);
        }
        st = sd_scheduler_step(j->sched, guided, t, latents, n, gen, NULL, err);
        if (st != SD_OK)
            break;
        char name[64];
        snprintf(name, sizeof name, "%s%03d", strcmp(j->stage, "base") ? "refiner_step_" : "step_", i);
        emit(hooks, name, latents, shape);
        if (hooks && hooks->on_step)
            hooks->on_step(hooks->user, j->stage, i + 1, j->nsteps);
    }
    /* Kept for the next image only where that saves work (a captured graph):
     * held, the arena would sit beside the VAE's memory; on the CPU, where
     * the UNet and the VAE share one allocator, that would raise the peak. */
    if (!sd_backend_can_capture(p->be)) {
        sd_unet_step_free(*step);
        *step = NULL;
    }
    if (mine != pred)
        free(mine);
    free(in);
    free(pred);
    return st;
}

/* diffusers' _get_add_time_ids into ids ([negative;] positive rows), the
 * number per row returned: (original h, w), (crop top, left) and either
 * (target h, w) or, for an img2img pipeline with requires_aesthetics_score
 * (the refiner), the aesthetic score. The negative row, as each pipeline
 * builds it: text-to-image takes negative_original_size, its crop (0, 0 by
 * default) and negative_target_size only when both sizes are given, else
 * the positive row; image-to-image takes the negative sizes (the positive
 * ones by default) with the positive crop, or with aesthetics the negative
 * size, its crop (0, 0) and negative_aesthetic_score. */
static int time_ids(const sd_gen_params *g, int W, int H, int aesthetics, int img2img, int cfg, float *ids)
{
    float oh = (float)(g->original_h ? g->original_h : H), ow = (float)(g->original_w ? g->original_w : W);
    float th = (float)(g->target_h ? g->target_h : H), tw = (float)(g->target_w ? g->target_w : W);
    float noh = g->neg_original_h ? (float)g->neg_original_h : oh, now = g->neg_original_w ? (float)g->neg_original_w : ow;
    float nth = g->neg_target_h ? (float)g->neg_target_h : th, ntw = g->neg_target_w ? (float)g->neg_target_w : tw;
    float ct = (float)g->crop_top, cl = (float)g->crop_left, nct = (float)g->neg_crop_top, ncl = (float)g->neg_crop_left;
    /* diffusers' num_images_per_prompt in the text-to-image pipeline: the
     * ids are cat([negative, positive]) repeated N times, rows alternating,
     * while the UNet's batch is all N unconditional rows then all N
     * conditional ones; so item i's unconditional pass takes row i's ids
     * and its conditional pass row N + i's: the negative ids on even rows,
     * the positive on odd (a mismatch in diffusers, followed here so the
     * batch gives its images). The image-to-image pipeline (img2img, the
     * refiner) repeats each row before joining them: no mismatch there. */
    int swap_uncond = 0, swap_cond = 0;
    if (cfg && g->batch_n > 1 && !img2img) {
        swap_uncond = g->batch_i % 2 == 1;
        swap_cond = (g->batch_n + g->batch_i) % 2 == 0;
    }
    if (aesthetics) {
        float pos[5] = {oh, ow, ct, cl, g->aesthetic_score};
        float neg[5] = {noh, now, nct, ncl, g->negative_aesthetic_score};
        if (cfg)
            memcpy(ids, swap_uncond ? pos : neg, sizeof neg);
        memcpy(ids + 5 * cfg, swap_cond ? neg : pos, sizeof pos);
        return 5;
    }
    float pos[6] = {oh, ow, ct, cl, th, tw}, neg[6];
    if (img2img) {
        float n6[6] = {noh, now, ct, cl, nth, ntw};
        memcpy(neg, n6, sizeof neg);
    } else if (g->neg_original_w && g->neg_target_w) {
        float n6[6] = {noh, now, nct, ncl, nth, ntw};
        memcpy(neg, n6, sizeof neg);
    } else {
        memcpy(neg, pos, sizeof neg);
    }
    if (cfg)
        memcpy(ids, swap_uncond ? pos : neg, sizeof neg);
    memcpy(ids + 6 * cfg, swap_cond ? neg : pos, sizeof pos);
    return 6;
}

/* diffusers' discrete_timestep_cutoff for denoising_end / denoising_start */
static int cutoff_of(const sd_scheduler *s, float frac)
{
    return (int)nearbyint((double)s->num_train - (double)frac * (double)s->num_train);
}

static sd_status make_scheduler(const sd_json_doc *cfg, const sd_gen_params *g, sd_scheduler *s, sd_error *err)
{
    SD_TRY(sd_scheduler_init(s, cfg, g->scheduler, g->eta, err));
    sd_scheduler_set_noise_seed(s, g->seed); /* DPM++ SDE's Brownian tree */
    sd_status st = sd_scheduler_set_timesteps(s, g->steps, err);
    if (st != SD_OK)
        sd_scheduler_free(s);
    return st;
}

sd_status sd_pipeline_sampler(const sd_pipeline *p, const sd_gen_params *g, char *label, size_t label_len, char *desc,
                              size_t desc_len, sd_error *err)
{
    sd_scheduler s;
    SD_TRY(sd_scheduler_init(&s, &p->sched_cfg, g->scheduler, g->eta, err));
    sd_scheduler_label(&s, label, label_len);
    snprintf(desc, desc_len, "%s", s.description);
    sd_scheduler_free(&s);
    return SD_OK;
}

/* img2img start: encode the image, sample the latent distribution with the
 * item's generator, scale, and noise it to the first timestep */
static sd_status encode_init_image(sd_pipeline *p, const sd_gen_params *g, const sd_scheduler *s, float t0,
                                   sd_torch_gen *gen, float *latents, const int64_t shape[4], int add_noise,
                                   sd_error *err)
{
    int64_t ishape[4] = {1, 3, g->init_h, g->init_w};
    sd_tensor img = {0}, mom = {0};
    size_t n = (size_t)(shape[1] * shape[2] * shape[3]);
    if (!p->vae_enc)
        return sd_fail(err, SD_ERR_INVALID, "--init-image: the VAE's encoder is not loaded");
    SD_TRY(sd_tensor_from_host(sd_vae_backend(p->vae_enc), &img, g->init_image, SD_DTYPE_F32, 4, ishape, 0, err));
    sd_status st = sd_vae_encode(p->vae_enc, &img, &mom, err);
    sd_tensor_free(&img);
    float *m = malloc(2 * n * sizeof *m), *mean = malloc(n * sizeof *m), *std = malloc(n * sizeof *m),
          *noise = malloc(n * sizeof *m);
    if (st == SD_OK && (!m || !mean || !std || !noise))
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (st == SD_OK && (size_t)sd_tensor_numel(&mom) != 2 * n)
        st = sd_fail(err, SD_ERR_INVALID, "--init-image: encoded to an unexpected latent size");
    if (st == SD_OK)
        st = sd_tensor_to_host_f32(&mom, m, err);
    if (st == SD_OK) {
        sd_vae_moments_split(m, 1, shape[1], shape[2] * shape[3], mean, std, NULL);
        /* the image is encoded once for a whole batch (diffusers repeats the
         * sampled latents): one draw, not the batch's */
        sd_torch_randn(gen, noise, n);
        for (size_t k = 0; k < n; k++)
            latents[k] = mean[k] + std[k] * noise[k];
        sd_vae_latents_from_encoder(sd_vae_get_config(p->vae_enc), latents, 1, shape[2] * shape[3]);
        if (add_noise) {
            sd_torch_randn_item(gen, noise, n);
            st = sd_scheduler_add_noise(s, latents, noise, t0, latents, n, err);
        }
    }
    sd_tensor_free(&mom);
    free(m);
    free(mean);
    free(std);
    free(noise);
    return st;
}

sd_status sd_stage_unet(sd_pipeline *p, const sd_gen_params *g, const sd_text_result *text,
                        const sd_gen_hooks *hooks, sd_latent_result *out, sd_error *err)
{
    memset(out, 0, sizeof *out);
    if (!p->unet || !sd_pipeline_base_vae(p))
        return sd_fail(err, SD_ERR_INVALID, "unet stage: the base UNet is not loaded");
    SD_TRY(sd_pipeline_check_params(p, g, err));
    int W, H, f = sd_vae_scale_factor(sd_pipeline_base_vae(p));
    sd_pipeline_size(p, g, &W, &H);
    int64_t shape[4] = {1, sd_unet_get_config(p->unet)->in_channels, H / f, W / f};
    size_t n = (size_t)(shape[1] * shape[2] * shape[3]);
    sd_scheduler s;
    SD_TRY(make_scheduler(&p->sched_cfg, g, &s, err));
    /* timesteps: img2img strength, then the ensemble's denoising_end */
    int first = 0, count = s.n;
    if (g->init_image) { /* get_timesteps: the last strength * steps, begin index set */
        int init_t = (int)(g->steps * g->strength) < g->steps ? (int)(g->steps * g->strength) : g->steps;
        first = (g->steps - init_t > 0 ? g->steps - init_t : 0) * sd_scheduler_order(&s);
        count = s.n - first;
        sd_scheduler_set_begin_index(&s, first);
    }
    if (p->has_refiner) {
        int cutoff = cutoff_of(&s, g->high_noise_frac), keep = 0;
        for (int i = first; i < first + count; i++)
            keep += s.timesteps[i] >= (float)cutoff;
        count = keep;
        out->refiner_pending = 1;
    }
    sd_status st = SD_OK;
    if (count < 1)
        st = sd_fail(err, SD_ERR_INVALID, "--steps/--strength/--high-noise-frac leave no denoising step");
    sd_torch_gen gen;
    sd_torch_gen_seed(&gen, g->seed);
    gen.batch_n = g->batch_n;
    gen.batch_i = g->batch_i;
    float *lat = malloc(n * sizeof *lat);
    if (st == SD_OK && !lat)
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (st == SD_OK && !g->init_image) {
        sd_torch_randn_item(&gen, lat, n);
        emit(hooks, "noise", lat, shape);
        for (size_t k = 0; k < n; k++)
            lat[k] = lat[k] * s.init_noise_sigma;
    } else if (st == SD_OK) {
        st = encode_init_image(p, g, &s, s.timesteps[first], &gen, lat, shape, 1, err);
    }
    if (st == SD_OK)
        emit(hooks, "initial", lat, shape);
    float ids[12];
    int nids = time_ids(g, W, H, p->base_aesthetics, g->init_image != NULL, text->cfg, ids);
    if (st == SD_OK) {
        denoise_job j = {p->unet, &s, s.timesteps + first, count, text->embeds, text->pooled, 1 + text->cfg,
                         text->S, text->D, text->P, ids, nids, g->guidance, g->guidance_rescale, "base",
                         hooks ? hooks->cfg_split : NULL};
        st = denoise(p, &j, lat, shape, &gen, hooks, err);
    }
    sd_scheduler_free(&s);
    if (st != SD_OK) {
        free(lat);
        return st;
    }
    if (!out->refiner_pending)
        emit(hooks, "final", lat, shape);
    memcpy(out->shape, shape, sizeof shape);
    out->latents = lat;
    return SD_OK;
}

static sd_status refine(sd_pipeline *p, const sd_gen_params *g, const sd_text_result *text, float *lat,
                        const int64_t shape[4], const sd_gen_hooks *hooks, sd_error *err)
{
    if (!p->runet || !text->r_embeds)
        return sd_fail(err, SD_ERR_INVALID, "final stage: the refiner or its conditioning is missing");
    sd_scheduler s;
    SD_TRY(make_scheduler(&p->rsched_cfg, g, &s, err));
    /* denoising_start: the timesteps below the cutoff, counted from the end */
    int cutoff = cutoff_of(&s, g->high_noise_frac), count = 0;
    for (int i = 0; i < s.n; i++)
        count += s.timesteps[i] < (float)cutoff;
    /* a second-order scheduler starts on a first-order half */
    if (sd_scheduler_order(&s) == 2 && count % 2 == 0 && count < s.n)
        count++;
    /* the refiner pipeline's size: the latents times its VAE's factor */
    int f = sd_vae_scale_factor(p->rvae ? p->rvae : sd_pipeline_base_vae(p));
    int H = (int)shape[2] * f, W = (int)shape[3] * f;
    float all[12];
    int nids = time_ids(g, W, H, p->r_aesthetics, 1, text->cfg, all);
    /* the img2img pipeline's denoising_start: the timesteps from the cutoff on, begin index set */
    sd_scheduler_set_begin_index(&s, s.n - count);
    sd_torch_gen gen;
    sd_torch_gen_seed(&gen, g->seed);
    gen.batch_n = g->batch_n;
    gen.batch_i = g->batch_i;
    denoise_job j = {p->runet, &s, s.timesteps + s.n - count, count, text->r_embeds, text->r_pooled, 1 + text->cfg,
                     text->rS, text->rD, text->rP, all, nids, g->guidance, g->guidance_rescale, "refiner", NULL};
    sd_status st = count > 0 ? denoise(p, &j, lat, shape, &gen, hooks, err) : SD_OK;
    sd_scheduler_free(&s);
    return st;
}

sd_status sd_stage_final(sd_pipeline *p, const sd_gen_params *g, const sd_text_result *text,
                         const sd_latent_result *latres, const sd_gen_hooks *hooks, sd_image_result *out,
                         sd_error *err)
{
    memset(out, 0, sizeof *out);
    if (!p->vae)
        return sd_fail(err, SD_ERR_INVALID, "final stage: the VAE is not loaded");
    size_t n = (size_t)(latres->shape[1] * latres->shape[2] * latres->shape[3]);
    float *lat = malloc(n * sizeof *lat);
    if (!lat)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    memcpy(lat, latres->latents, n * sizeof *lat);
    sd_status st = SD_OK;
    if (latres->refiner_pending) {
        st = refine(p, g, text, lat, latres->shape, hooks, err);
        if (st == SD_OK)
            emit(hooks, "final", lat, latres->shape);
    }
    /* the refiner's VAE decodes what the refiner made (diffusers' ensemble) */
    sd_vae *decoder = latres->refiner_pending && p->rvae ? p->rvae : p->vae;
    if (st == SD_OK)
        sd_vae_latents_for_decoder(sd_vae_get_config(decoder), lat, latres->shape[0],
                                   latres->shape[2] * latres->shape[3]);
    sd_tensor z = {0}, img = {0};
    if (st == SD_OK)
        st = sd_tensor_from_host(sd_vae_backend(decoder), &z, lat, SD_DTYPE_F32, 4, latres->shape, 0, err);
    if (st == SD_OK)
        st = sd_vae_decode(decoder, &z, &img, err);
    sd_tensor_free(&z);
    free(lat);
    if (st == SD_OK) {
        out->height = (int)img.shape[2];
        out->width = (int)img.shape[3];
        size_t m = (size_t)sd_tensor_numel(&img);
        out->image = malloc(m * sizeof(float));
        out->rgb = malloc((size_t)out->width * out->height * 3);
        if (!out->image || !out->rgb)
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
        if (st == SD_OK)
            st = sd_tensor_to_host_f32(&img, out->image, err);
        /* diffusers watermarks the decoded image before it becomes 8-bit */
        if (st == SD_OK && g->watermark && sd_watermark_apply(out->image, out->width, out->height) < 0)
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
        if (st == SD_OK)
            sd_image_to_rgb8(out->image, out->width, out->height, out->rgb);
    }
    sd_tensor_free(&img);
    if (st != SD_OK)
        sd_image_result_free(out);
    return st;
}
