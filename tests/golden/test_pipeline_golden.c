/* test_pipeline_golden.c - whole generations against diffusers' pipelines
 * (the e2e_* cases): prompt embeddings, initial noise (bit for bit: same
 * generator), latents after every step (relative L2 < 1e-4: fp32 on both
 * sides, only summation order differs), final latents, and the 8-bit image
 * (within 1 level of 255 at every pixel: a last-bit difference in the
 * decoder can move a value across a rounding boundary). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/model_folder.h"
#include "tests/test_util.h"
#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/vae/vae.h"

typedef struct {
    const sd_st_file *g;
    int steps_seen;
    double worst_step_err;
} capture;

static void on_latents(void *user, const char *name, const float *data, const int64_t shape[4])
{
    capture *c = user;
    char gname[64];
    size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
    int k;
    if (!strcmp(name, "noise")) {
        const sd_st_tensor *ref = tu_tensor(c->g, "initial_noise", SD_DTYPE_F32);
        cr_assert_eq(memcmp(data, ref->data, n * sizeof(float)), 0, "initial noise differs from torch.randn");
    } else if (!strcmp(name, "initial")) {
        tu_expect_close_host(data, n, c->g, "initial_latents", 1e-6);
    } else if (sscanf(name, "step_%d", &k) == 1 || sscanf(name, "refiner_step_%d", &k) == 1) {
        snprintf(gname, sizeof gname, "step%d_latents", k);
        double e = tu_expect_close_host(data, n, c->g, gname, 1e-4);
        c->worst_step_err = e > c->worst_step_err ? e : c->worst_step_err;
        c->steps_seen++;
    }
}

static const char *str_or_null(json_t *params, const char *key)
{
    json_t *v = json_object_get(params, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void params_from_case(json_t *c, sd_gen_params *g)
{
    json_t *p = json_object_get(c, "parameters");
    sd_gen_params_init(g);
    g->prompt = str_or_null(p, "prompt");
    g->prompt_2 = str_or_null(p, "prompt_2");
    g->negative_prompt = str_or_null(p, "negative_prompt");
    g->negative_prompt_2 = str_or_null(p, "negative_prompt_2");
    g->steps = (int)json_integer_value(json_object_get(p, "num_inference_steps"));
    g->guidance = (float)json_number_value(json_object_get(p, "guidance_scale"));
    json_t *r = json_object_get(p, "guidance_rescale");
    g->guidance_rescale = r ? (float)json_number_value(r) : 0.0f;
    json_t *seed = json_object_get(p, "seed");
    g->seed = seed ? (uint64_t)json_integer_value(seed) : 0;
    json_t *w = json_object_get(p, "width"), *h = json_object_get(p, "height");
    g->width = w ? (int)json_integer_value(w) : 0;
    g->height = h ? (int)json_integer_value(h) : 0;
    json_t *os = json_object_get(p, "original_size"), *cr = json_object_get(p, "crops_coords_top_left"),
           *ts = json_object_get(p, "target_size");
    if (json_is_array(os)) {
        g->original_h = (int)json_integer_value(json_array_get(os, 0));
        g->original_w = (int)json_integer_value(json_array_get(os, 1));
    }
    if (json_is_array(cr)) {
        g->crop_top = (int)json_integer_value(json_array_get(cr, 0));
        g->crop_left = (int)json_integer_value(json_array_get(cr, 1));
    }
    if (json_is_array(ts)) {
        g->target_h = (int)json_integer_value(json_array_get(ts, 0));
        g->target_w = (int)json_integer_value(json_array_get(ts, 1));
    }
    json_t *de = json_object_get(p, "denoising_end"), *ds = json_object_get(p, "denoising_start");
    if (json_is_number(de))
        g->high_noise_frac = (float)json_number_value(de);
    if (json_is_number(ds))
        g->high_noise_frac = (float)json_number_value(ds);
    json_t *as = json_object_get(p, "aesthetic_score"), *nas = json_object_get(p, "negative_aesthetic_score");
    if (json_is_number(as))
        g->aesthetic_score = (float)json_number_value(as);
    if (json_is_number(nas))
        g->negative_aesthetic_score = (float)json_number_value(nas);
}

static void load(sd_pipeline *p, sd_backend *be, int with_refiner)
{
    char *base = tu_data_path("sdxl-tiny"), *ref = tu_data_path("sdxl-tiny-refiner");
    sd_error err = {0};
    sd_model_spec ms = {.model = base, .refiner = with_refiner ? ref : NULL};
    cr_assert_eq(sd_pipeline_load(p, be, NULL, &ms, SD_STAGE_ALL, &err), SD_OK, "%s", err.msg);
    free(base);
    free(ref);
}

static void check_text(const sd_text_result *t, const sd_st_file *g, int refiner)
{
    size_t ne = (size_t)(refiner ? t->rS : t->S) * (size_t)(refiner ? t->rD : t->D), np = (size_t)(refiner ? t->rP : t->P);
    const float *e = refiner ? t->r_embeds : t->embeds, *pl = refiner ? t->r_pooled : t->pooled;
    cr_assert_eq(t->cfg, 1);
    tu_expect_close_host(e, ne, g, "negative_prompt_embeds", 1e-4);
    tu_expect_close_host(e + ne, ne, g, "prompt_embeds", 1e-4);
    tu_expect_close_host(pl, np, g, "negative_pooled_prompt_embeds", 1e-4);
    tu_expect_close_host(pl + np, np, g, "pooled_prompt_embeds", 1e-4);
}

static void check_image(const sd_image_result *img, const sd_st_file *g)
{
    const sd_st_tensor *ref = tu_tensor(g, "image_uint8_nhwc", SD_DTYPE_U8);
    size_t n = (size_t)img->width * img->height * 3;
    cr_assert_eq(sd_st_numel(ref), n);
    const uint8_t *r = ref->data;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)img->rgb[i] - (int)r[i]);
        worst = d > worst ? d : worst;
    }
    cr_assert_leq(worst, 1, "image differs by %d levels", worst);
    tu_expect_close_host(img->image, n, g, "vae_decoded", 1e-4);
}

static void run_base_case(const char *name)
{
    json_t *c = tu_manifest_case(name);
    sd_st_file *g = tu_golden(json_string_value(json_object_get(c, "file")));
    sd_gen_params gp;
    params_from_case(c, &gp);
    sd_backend *be = tu_cpu();
    sd_pipeline p;
    load(&p, be, 0);
    sd_error err = {0};
    sd_text_result t;
    cr_assert_eq(sd_stage_text(&p, &gp, &t, &err), SD_OK, "%s", err.msg);
    check_text(&t, g, 0);
    capture cap = {g, 0, 0};
    sd_gen_hooks hooks = {NULL, on_latents, &cap, NULL};
    sd_latent_result lat;
    cr_assert_eq(sd_stage_unet(&p, &gp, &t, &hooks, &lat, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(cap.steps_seen, gp.steps);
    tu_expect_close_host(lat.latents, 256, g, "final_latents", 1e-4);
    sd_image_result img;
    cr_assert_eq(sd_stage_final(&p, &gp, &t, &lat, NULL, &img, &err), SD_OK, "%s", err.msg);
    check_image(&img, g);
    sd_image_result_free(&img);
    sd_latent_result_free(&lat);
    sd_text_result_free(&t);
    sd_pipeline_free(&p);
    sd_backend_free(be);
    sd_st_close(g);
    json_decref(c);
}

Test(pipeline_golden, base_cfg5_4steps)
{
    run_base_case("e2e_base_cfg5_4steps");
}

Test(pipeline_golden, base_negative_prompt2)
{
    run_base_case("e2e_base_negative_prompt2");
}

Test(pipeline_golden, base_rescale_timeids)
{
    run_base_case("e2e_base_rescale_timeids");
}

Test(pipeline_golden, ensemble_of_experts)
{
    /* part 1: the base stops at denoising_end 0.8 (8 of 10 steps) */
    json_t *c1 = tu_manifest_case("e2e_ensemble_base_part"), *c2 = tu_manifest_case("e2e_ensemble_refiner_part");
    sd_st_file *g1 = tu_golden("e2e_ensemble_base_part.safetensors"), *g2 = tu_golden("e2e_ensemble_refiner_part.safetensors");
    sd_gen_params gp;
    params_from_case(c1, &gp);
    sd_backend *be = tu_cpu();
    sd_pipeline p;
    load(&p, be, 1);
    sd_error err = {0};
    sd_text_result t;
    cr_assert_eq(sd_stage_text(&p, &gp, &t, &err), SD_OK, "%s", err.msg);
    check_text(&t, g1, 0);
    check_text(&t, g2, 1);
    capture cap = {g1, 0, 0};
    sd_gen_hooks hooks = {NULL, on_latents, &cap, NULL};
    sd_latent_result lat;
    cr_assert_eq(sd_stage_unet(&p, &gp, &t, &hooks, &lat, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(cap.steps_seen, 8);
    cr_assert(lat.refiner_pending);
    tu_expect_close_host(lat.latents, 256, g1, "final_latents", 1e-4);
    /* part 2: the refiner takes the last 2 timesteps from the golden latents */
    memcpy(lat.latents, tu_tensor(g2, "initial_latents", SD_DTYPE_F32)->data, 256 * sizeof(float));
    capture cap2 = {g2, 0, 0};
    sd_gen_hooks hooks2 = {NULL, on_latents, &cap2, NULL};
    sd_image_result img;
    cr_assert_eq(sd_stage_final(&p, &gp, &t, &lat, &hooks2, &img, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(cap2.steps_seen, 2);
    check_image(&img, g2);
    sd_image_result_free(&img);
    sd_latent_result_free(&lat);
    sd_text_result_free(&t);
    sd_pipeline_free(&p);
    sd_backend_free(be);
    sd_st_close(g1);
    sd_st_close(g2);
    json_decref(c1);
    json_decref(c2);
}

/* The hook that keeps the refined latents ("final") for the test below. */
static void keep_final(void *user, const char *name, const float *data, const int64_t shape[4])
{
    if (!strcmp(name, "final"))
        memcpy(user, data, (size_t)(shape[0] * shape[1] * shape[2] * shape[3]) * sizeof(float));
}

/* sdxl-tiny-refiner with a VAE of its own: the base's weights with the
 * decoder's output convolution negated (sdxl-tiny's two VAEs are the same
 * file, so the goldens cannot tell which one decodes) */
static char *refiner_with_own_vae(void)
{
    char *src = tu_data_path("sdxl-tiny-refiner"), *dst = tu_tmpdir(), a[4096], b[4096];
    const char *linked[5] = {"model_index.json", "scheduler", "text_encoder_2", "tokenizer_2", "unet"};
    for (int i = 0; i < 5; i++) {
        char *abs_src = realpath(src, NULL);
        snprintf(a, sizeof a, "%s/%s", abs_src, linked[i]);
        snprintf(b, sizeof b, "%s/%s", dst, linked[i]);
        cr_assert_eq(symlink(a, b), 0, "%s", b);
        free(abs_src);
    }
    snprintf(b, sizeof b, "%s/vae", dst);
    cr_assert_eq(mkdir(b, 0755), 0);
    sd_error err;
    tu_copy(src, dst, "vae/config.json");
    sd_st_file *f;
    snprintf(a, sizeof a, "%s/vae/diffusion_pytorch_model.safetensors", src);
    cr_assert_eq(sd_st_open(&f, a, &err), SD_OK, "%s", err.msg);
    sd_st_writer *w = sd_st_writer_new();
    for (size_t i = 0; i < f->n; i++) {
        const sd_st_tensor *x = &f->tensors[i];
        cr_assert_eq(x->dtype, SD_DTYPE_F32);
        size_t n = (size_t)sd_st_numel(x);
        float *v = malloc(n * sizeof *v + 4);
        memcpy(v, x->data, n * sizeof *v);
        if (!strncmp(x->name, "decoder.conv_out.", 17))
            for (size_t k = 0; k < n; k++)
                v[k] = -v[k];
        cr_assert_eq(sd_st_writer_add_copy(w, x->name, x->dtype, x->ndim, x->shape, v, &err), SD_OK, "%s", err.msg);
        free(v);
    }
    snprintf(b, sizeof b, "%s/vae/diffusion_pytorch_model.safetensors", dst);
    cr_assert_eq(sd_st_writer_save(w, b, &err), SD_OK, "%s", err.msg);
    sd_st_writer_free(w);
    sd_st_close(f);
    free(src);
    return dst;
}

/* In diffusers' ensemble of experts the refiner pipeline outputs the image,
 * so the refiner's VAE decodes it. Exact equality with a direct decode by
 * that VAE: the same operations on the same latents. */
Test(pipeline_golden, the_refiner_vae_decodes_the_ensemble)
{
    char *rdir = refiner_with_own_vae(), *base = tu_data_path("sdxl-tiny");
    json_t *c1 = tu_manifest_case("e2e_ensemble_base_part");
    sd_gen_params gp;
    params_from_case(c1, &gp);
    sd_backend *be = tu_cpu();
    sd_pipeline p;
    sd_error err = {0};
    sd_model_spec ms = {.model = base, .refiner = rdir};
    cr_assert_eq(sd_pipeline_load(&p, be, NULL, &ms, SD_STAGE_ALL, &err), SD_OK, "%s", err.msg);
    sd_text_result t;
    sd_latent_result lat;
    sd_image_result img;
    float final[256];
    sd_gen_hooks hooks = {NULL, keep_final, final, NULL};
    cr_assert_eq(sd_stage_text(&p, &gp, &t, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_stage_unet(&p, &gp, &t, NULL, &lat, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(lat.shape[1] * lat.shape[2] * lat.shape[3], 256);
    cr_assert_eq(sd_stage_final(&p, &gp, &t, &lat, &hooks, &img, &err), SD_OK, "%s", err.msg);
    /* decode the refined latents with each VAE directly */
    float *direct[2];
    size_t m = (size_t)img.width * img.height * 3;
    for (int k = 0; k < 2; k++) {
        sd_model_folder mf;
        const sd_component *c;
        cr_assert_eq(sd_model_open(&mf, k ? base : rdir, &err), SD_OK, "%s", err.msg);
        cr_assert_eq(sd_model_require(&mf, "vae", &c, &err), SD_OK, "%s", err.msg);
        sd_vae *v;
        cr_assert_eq(sd_vae_load(&v, be, c, NULL, &err), SD_OK, "%s", err.msg);
        float z[256], sf = sd_vae_get_config(v)->scaling_factor;
        for (int i = 0; i < 256; i++)
            z[i] = final[i] / sf;
        sd_tensor zt, it = {0};
        cr_assert_eq(sd_tensor_from_host(be, &zt, z, SD_DTYPE_F32, 4, lat.shape, 0, &err), SD_OK);
        cr_assert_eq(sd_vae_decode(v, &zt, &it, &err), SD_OK, "%s", err.msg);
        direct[k] = malloc(m * sizeof(float));
        cr_assert_eq(sd_tensor_to_host_f32(&it, direct[k], &err), SD_OK);
        sd_tensor_free(&zt);
        sd_tensor_free(&it);
        sd_vae_free(v);
        sd_model_close(&mf);
    }
    cr_assert_eq(memcmp(img.image, direct[0], m * sizeof(float)), 0, "the image is not the refiner VAE's decode");
    cr_assert_neq(memcmp(img.image, direct[1], m * sizeof(float)), 0, "the two VAEs decode alike: no test");
    free(direct[0]);
    free(direct[1]);
    sd_image_result_free(&img);
    sd_latent_result_free(&lat);
    sd_text_result_free(&t);
    sd_pipeline_free(&p);
    sd_backend_free(be);
    json_decref(c1);
    tu_rmrf(rdir);
    free(rdir);
    free(base);
}
