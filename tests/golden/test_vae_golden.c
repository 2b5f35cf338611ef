/* test_vae_golden.c - sdxl-tiny's AutoencoderKL against diffusers: decode of
 * latents / scaling_factor, and the encoder's mean, std and logvar.
 * Tolerance: relative L2 < 1e-4 (fp32; the bar). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/model_folder.h"
#include "tests/test_util.h"
#include "worker/engine/vae/vae.h"

#define TOL 1e-4

static sd_vae *load_vae(sd_backend *be)
{
    char *dir = tu_data_path("sdxl-tiny");
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    const sd_component *c;
    cr_assert_eq(sd_model_require(&m, "vae", &c, &err), SD_OK, "%s", err.msg);
    sd_vae *v;
    cr_assert_eq(sd_vae_load(&v, be, c, NULL, &err), SD_OK, "%s", err.msg);
    sd_model_close(&m);
    free(dir);
    return v;
}

Test(vae_golden, decode)
{
    sd_backend *be = tu_cpu();
    sd_vae *v = load_vae(be);
    sd_st_file *g = tu_golden("vae.safetensors");
    sd_tensor z, img = {0};
    tu_upload(be, &z, g, "latents");
    sd_error err = {0};
    cr_assert_eq(sd_op_scale(&z, &z, 1.0f / sd_vae_get_config(v)->scaling_factor, &err), SD_OK);
    cr_assert_eq(sd_vae_decode(v, &z, &img, &err), SD_OK, "%s", err.msg);
    tu_expect_close(&img, g, "decoded", TOL);
    sd_tensor_free(&img);
    sd_tensor_free(&z);
    sd_st_close(g);
    sd_vae_free(v);
    sd_backend_free(be);
}

Test(vae_golden, encode)
{
    sd_backend *be = tu_cpu();
    sd_vae *v = load_vae(be);
    sd_st_file *g = tu_golden("vae.safetensors");
    sd_tensor img, mom = {0};
    tu_upload(be, &img, g, "image");
    sd_error err = {0};
    cr_assert_eq(sd_vae_encode(v, &img, &mom, &err), SD_OK, "%s", err.msg);
    int64_t B = mom.shape[0], L = mom.shape[1] / 2, hw = mom.shape[2] * mom.shape[3];
    float *host = malloc((size_t)(B * 2 * L * hw) * sizeof *host);
    float *mean = malloc((size_t)(B * L * hw) * sizeof *mean), *std = malloc((size_t)(B * L * hw) * sizeof *std),
          *lv = malloc((size_t)(B * L * hw) * sizeof *lv);
    cr_assert_eq(sd_tensor_to_host_f32(&mom, host, &err), SD_OK);
    sd_vae_moments_split(host, B, L, hw, mean, std, lv);
    tu_expect_close_host(mean, (size_t)(B * L * hw), g, "latent_mean", TOL);
    tu_expect_close_host(std, (size_t)(B * L * hw), g, "latent_std", TOL);
    tu_expect_close_host(lv, (size_t)(B * L * hw), g, "latent_logvar", TOL);
    free(host);
    free(mean);
    free(std);
    free(lv);
    sd_tensor_free(&mom);
    sd_tensor_free(&img);
    sd_st_close(g);
    sd_vae_free(v);
    sd_backend_free(be);
}

/* sdxl-tiny's VAE config with `extra` keys merged in, in a folder of its own */
static sd_status vae_config_with(const char *extra, sd_vae_config *cfg, sd_error *err)
{
    char *src = tu_data_path("sdxl-tiny/vae/config.json"), *dst = tu_tmpdir(), path[4096];
    json_error_t jerr;
    json_t *c = json_load_file(src, 0, &jerr), *e = json_loads(extra, 0, &jerr);
    cr_assert(c && e, "%s", jerr.text);
    json_object_update(c, e);
    snprintf(path, sizeof path, "%s/model_index.json", dst);
    const char *index = "{\"_class_name\": \"StableDiffusionXLPipeline\", \"vae\": [\"diffusers\", \"AutoencoderKL\"]}";
    tu_write(path, index, strlen(index));
    snprintf(path, sizeof path, "%s/vae", dst);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/vae/config.json", dst);
    cr_assert_eq(json_dump_file(c, path, 0), 0);
    json_decref(c);
    json_decref(e);
    sd_model_folder m;
    const sd_component *comp;
    cr_assert_eq(sd_model_open(&m, dst, err), SD_OK, "%s", err->msg);
    cr_assert_eq(sd_model_require(&m, "vae", &comp, err), SD_OK, "%s", err->msg);
    sd_status st = sd_vae_config_load(cfg, comp, err);
    sd_model_close(&m);
    tu_rmrf(dst);
    free(dst);
    free(src);
    return st;
}

/* latents_mean / latents_std (a VAE with per-channel latent statistics):
 * the pipeline's latents map to the decoder's input as diffusers' SDXL
 * pipelines compute it, x * std / scaling_factor + mean per channel, and the
 * encoder's back as (x - mean) * scaling_factor / std. Numerics against
 * diffusers: tests/crosscheck (img2img and txt2img cases with statistics). */
Test(vae_golden, latent_statistics)
{
    sd_vae_config c;
    sd_error err = {0};
    cr_assert_eq(vae_config_with("{\"latents_mean\": [0.5, -1, 0, 2], \"latents_std\": [2, 0.5, 1, 4]}", &c, &err),
                 SD_OK, "%s", err.msg);
    cr_assert(c.has_latents_stats);
    float x[8] = {1, 2, 1, 2, 1, 2, 1, 2}; /* batch 1, 4 channels, 2 values each */
    float sf = c.scaling_factor;
    sd_vae_latents_for_decoder(&c, x, 1, 2);
    cr_assert_eq(x[0], 1 * 2.0f / sf + 0.5f);
    cr_assert_eq(x[3], 2 * 0.5f / sf - 1.0f);
    cr_assert_eq(x[7], 2 * 4.0f / sf + 2.0f);
    sd_vae_latents_from_encoder(&c, x, 1, 2);
    for (int i = 0; i < 8; i++) /* back where it started, to rounding */
        cr_assert_float_eq(x[i], (float)(1 + i % 2), 1e-5f, "element %d: %g", i, (double)x[i]);
    /* one of the two alone is ignored, as diffusers ignores it */
    cr_assert_eq(vae_config_with("{\"latents_mean\": [0, 0, 0, 0], \"latents_std\": null}", &c, &err), SD_OK);
    cr_assert(!c.has_latents_stats);
    cr_assert_eq(vae_config_with("{\"latents_mean\": [0, 0, 0], \"latents_std\": [1, 1, 1, 1]}", &c, &err),
                 SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "latents_mean") && strstr(err.msg, "config.json"), "%s", err.msg);
    cr_assert_eq(vae_config_with("{\"latents_mean\": [0, 0, 0, 0], \"latents_std\": [1, 0, 1, 1]}", &c, &err),
                 SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "latents_std[1]"), "%s", err.msg);
}
