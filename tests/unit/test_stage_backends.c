/* test_stage_backends.c - which backend and which half of the VAE each stage
 * gets. The upcast rule is diffusers' own (pipeline_stable_diffusion_xl.py
 * and _img2img.py, v0.42): decoding upcasts a float16 VAE with force_upcast,
 * img2img's encoding upcasts any VAE with force_upcast. The CPU computes in
 * f32 throughout, so the f32 backend the rule picks exists only on CUDA; the
 * GPU script runs the upcast VAE (tests/gpu). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"
#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/pipeline/stage_backends.h"

Test(stage_backends, vae_upcast_follows_diffusers)
{
    /* decode: only an fp16 pipeline upcasts, and only where force_upcast */
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_F16, 1, 0), 1);
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_F16, 0, 0), 0);
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_BF16, 1, 0), 0);
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_BF16, 0, 0), 0);
    /* img2img encode: any 16-bit pipeline upcasts where force_upcast */
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_F16, 1, 1), 1);
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_BF16, 1, 1), 1);
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_F16, 0, 1), 0);
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_BF16, 0, 1), 0);
    /* already f32: nothing to upcast */
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_F32, 1, 0), 0);
    cr_assert_eq(sd_vae_upcasts(SD_DTYPE_F32, 1, 1), 0);
}

Test(stage_backends, the_f32_backend_is_picked_only_where_the_rule_says)
{
    sd_backend *be = tu_cpu(), *f32 = tu_cpu();
    /* on the CPU be is f32 already: the VAE stays on it */
    cr_assert_eq(sd_stage_vae_backend(be, f32, 1, 0), be);
    cr_assert_eq(sd_stage_vae_backend(be, f32, 1, 1), be);
    /* no f32 backend given: be whatever the rule says */
    cr_assert_eq(sd_stage_vae_backend(be, NULL, 1, 1), be);
    sd_backend_free(f32);
    sd_backend_free(be);
}

Test(stage_backends, cpu_opens_no_second_backend_and_refuses_16_bits)
{
    sd_stage_backends sb;
    sd_error err = {0};
    cr_assert_eq(sd_stage_backends_open(&sb, "cpu", SD_DTYPE_COUNT, SD_STAGE_ALL, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sb.dtype, SD_DTYPE_F32);
    cr_assert_null(sb.f32_be);
    sd_stage_backends_close(&sb);
    cr_assert_eq(sd_stage_backends_open(&sb, "cpu", SD_DTYPE_F16, SD_STAGE_ALL, &err), SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "--dtype f16"), "%s", err.msg);
}

/* Each stage loads the half of the VAE it runs: the UNet stage the encoder
 * (img2img), the final stage the decoder; one process running both shares
 * one load when one backend serves both. */
static void load_stages(int stages, sd_pipeline *p)
{
    char *dir = tu_data_path("sdxl-tiny");
    sd_model_spec ms;
    memset(&ms, 0, sizeof ms);
    ms.model = dir;
    sd_error err = {0};
    cr_assert_eq(sd_pipeline_load(p, tu_cpu(), NULL, &ms, stages, &err), SD_OK, "%s", err.msg);
    free(dir);
}

static void unload(sd_pipeline *p)
{
    sd_backend *be = p->be;
    sd_pipeline_free(p);
    sd_backend_free(be);
}

Test(stage_backends, each_stage_loads_its_half_of_the_vae)
{
    sd_pipeline p;
    load_stages(SD_STAGE_UNET, &p);
    cr_assert_null(p.vae);
    cr_assert_not_null(p.vae_enc);
    cr_assert_eq(sd_pipeline_base_vae(&p), p.vae_enc);
    unload(&p);
    load_stages(SD_STAGE_FINAL, &p);
    cr_assert_not_null(p.vae);
    cr_assert_null(p.vae_enc);
    unload(&p);
    load_stages(SD_STAGE_ALL, &p);
    cr_assert_not_null(p.vae);
    cr_assert_eq(p.vae_enc, p.vae);
    unload(&p);
    load_stages(SD_STAGE_TEXT, &p);
    cr_assert_null(sd_pipeline_base_vae(&p));
    unload(&p);
}
