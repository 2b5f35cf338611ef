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

static sd_vae *load_vae_parts(sd_backend *be, int parts)
{
    char *dir = tu_data_path("sdxl-tiny");
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    const sd_component *c;
    cr_assert_eq(sd_model_require(&m, "vae", &c, &err), SD_OK, "%s", err.msg);
    sd_vae *v;
    cr_assert_eq(sd_vae_load_parts(&v, be, c, NULL, parts, &err), SD_OK, "%s", err.msg);
    sd_model_close(&m);
    free(dir);
    return v;
}


/* decode with a VAE loaded whole or as its decoder alone (the final stage
 * of a worker): the same numbers */
static void check_decode(int parts)
{
    sd_backend *be = tu_cpu();
    sd_vae *v = load_vae_parts(be, parts);
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

Test(vae_golden, decode)
{
    check_decode(SD_VAE_BOTH);
}

Test(vae_golden, decode_with_the_decoder_alone)
{
    check_decode(SD_VAE_DECODER);
}

/* the encoder's moments against diffusers, from a VAE loaded whole or as its
 * encoder alone (a UNet worker's img2img) */
static void check_encode(int parts)
{
    sd_backend *be = tu_cpu();
    sd_vae *v = load_vae_parts(be, parts);
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

Test(vae_golden, encode)
{
    check_encode(SD_VAE_BOTH);
}

Test(vae_golden, encode_with_the_encoder_alone)
{
    check_encode(SD_VAE_ENCODER);
}

/* A half not loaded is an error naming it, never a crash on absent weights;
 * and no part at all is refused at load. */
Test(vae_golden, a_half_not_loaded_is_an_error)
{
    sd_backend *be = tu_cpu();
    sd_error err = {0};
    sd_st_file *g = tu_golden("vae.safetensors");
    sd_tensor z, img, out = {0};
    tu_upload(be, &z, g, "latents");
    tu_upload(be, &img, g, "image");
    sd_vae *enc = load_vae_parts(be, SD_VAE_ENCODER), *dec = load_vae_parts(be, SD_VAE_DECODER);
    cr_assert_eq(sd_vae_decode(enc, &z, &out, &err), SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "without its decoder"), "%s", err.msg);
    cr_assert_eq(sd_vae_encode(dec, &img, &out, &err), SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "without its encoder"), "%s", err.msg);
    char *dir = tu_data_path("sdxl-tiny");
    sd_model_folder m;
    const sd_component *c;
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_model_require(&m, "vae", &c, &err), SD_OK, "%s", err.msg);
    sd_vae *none = NULL;
    cr_assert_eq(sd_vae_load_parts(&none, be, c, NULL, 0, &err), SD_ERR_INVALID);
    cr_assert_null(none);
    sd_model_close(&m);
    free(dir);
    sd_vae_free(enc);
    sd_vae_free(dec);
    sd_tensor_free(&z);
    sd_tensor_free(&img);
    sd_st_close(g);
    sd_backend_free(be);
}

/* A tensor of neither half is still an error when one half is loaded: the
 * half left out is only counted, by its own prefixes. */
Test(vae_golden, a_stray_tensor_fails_a_half_load)
{
    char *src = tu_data_path("sdxl-tiny/vae"), *dst = tu_tmpdir(), path[4096];
    snprintf(path, sizeof path, "%s/model_index.json", dst);
    const char *index = "{\"_class_name\": \"StableDiffusionXLPipeline\", \"vae\": [\"diffusers\", \"AutoencoderKL\"]}";
    tu_write(path, index, strlen(index));
    snprintf(path, sizeof path, "%s/vae", dst);
    cr_assert_eq(mkdir(path, 0755), 0);
    tu_copy(src, path, "config.json");
    sd_error err = {0};
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", src);
    sd_st_file *f = NULL;
    cr_assert_eq(sd_st_open(&f, path, &err), SD_OK, "%s", err.msg);
    sd_st_writer *w = sd_st_writer_new();
    for (size_t i = 0; i < f->n; i++) {
        const sd_st_tensor *t = &f->tensors[i];
        cr_assert_eq(sd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err), SD_OK, "%s", err.msg);
    }
    float extra[2] = {1, 2};
    cr_assert_eq(sd_st_writer_add(w, "decoder_extra.weight", SD_DTYPE_F32, 1, (int64_t[]){2}, extra, &err), SD_OK);
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dst);
    cr_assert_eq(sd_st_writer_save(w, path, &err), SD_OK, "%s", err.msg);
    sd_st_writer_free(w);
    sd_st_close(f);
    sd_model_folder m;
    const sd_component *c;
    cr_assert_eq(sd_model_open(&m, dst, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_model_require(&m, "vae", &c, &err), SD_OK, "%s", err.msg);
    sd_backend *be = tu_cpu();
    sd_vae *v = NULL;
    cr_assert_eq(sd_vae_load_parts(&v, be, c, NULL, SD_VAE_ENCODER, &err), SD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "decoder_extra.weight"), "%s", err.msg);
    cr_assert_null(v);
    sd_model_close(&m);
    sd_backend_free(be);
    tu_rmrf(dst);
    free(dst);
    free(src);
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
