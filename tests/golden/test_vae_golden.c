/* test_vae_golden.c - sdxl-tiny's AutoencoderKL against diffusers: decode of
 * latents / scaling_factor, and the encoder's mean, std and logvar.
 * Tolerance: relative L2 < 1e-4 (fp32; the bar). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "common/model_folder.h"
#include "tests/test_util.h"
#include "worker/vae.h"

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
