/* test_unet_golden.c - one UNet forward of sdxl-tiny (base) and
 * sdxl-tiny-refiner against diffusers' outputs. Tolerance: relative L2 < 1e-4,
 * the bar for fp32 (observed errors are ~1e-6: only the order of
 * float sums differs from torch). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/model_folder.h"
#include "tests/test_util.h"
#include "worker/engine/unet/unet.h"

#define TOL 1e-4

static double run_case(const char *model, const char *golden, const char *variant, double tol)
{
    sd_backend *be = tu_cpu();
    sd_unet *u = tu_load_unet(be, model, variant);
    sd_st_file *g = tu_golden(golden);
    sd_tensor sample, ctx, te, out = {0};
    tu_upload(be, &sample, g, "sample");
    tu_upload(be, &ctx, g, "encoder_hidden_states");
    tu_upload(be, &te, g, "text_embeds");
    const sd_st_tensor *ts = tu_tensor(g, "timestep", SD_DTYPE_F32);
    const sd_st_tensor *ids = tu_tensor(g, "time_ids", SD_DTYPE_F32);
    int B = (int)sample.shape[0];
    float t[64];
    for (int i = 0; i < B; i++)
        t[i] = ((const float *)ts->data)[0];
    cr_assert_eq(sd_unet_time_ids(u, (int)te.shape[1]), (int)ids->shape[1]);
    sd_error err = {0};
    cr_assert_eq(sd_unet_forward(u, &sample, t, &ctx, &te, ids->data, (int)ids->shape[1], &out, &err), SD_OK, "%s",
                 err.msg);
    double e = tu_expect_close(&out, g, "out", tol);
    sd_tensor_free(&out);
    sd_tensor_free(&sample);
    sd_tensor_free(&ctx);
    sd_tensor_free(&te);
    sd_st_close(g);
    sd_unet_free(u);
    sd_backend_free(be);
    return e;
}

Test(unet_golden, base_forward)
{
    run_case("sdxl-tiny", "unet_base.safetensors", NULL, TOL);
}

Test(unet_golden, refiner_forward)
{
    run_case("sdxl-tiny-refiner", "unet_refiner.safetensors", NULL, TOL);
}

Test(unet_golden, base_forward_fp16_weights)
{
    /* weights rounded to fp16 (11 significant bits) move the output by
     * ~1e-3 relative; 1e-2 bounds that with margin and still catches a
     * wrongly read tensor (which gives errors of order 1) */
    double e = run_case("sdxl-tiny", "unet_base.safetensors", "fp16", 1e-2);
    cr_assert(e > 0);
}

Test(unet_golden, wrong_text_embeds_width_is_an_error)
{
    sd_backend *be = tu_cpu();
    sd_unet *u = tu_load_unet(be, "sdxl-tiny", NULL);
    sd_st_file *g = tu_golden("unet_base.safetensors");
    sd_tensor sample, ctx, te, out = {0};
    tu_upload(be, &sample, g, "sample");
    tu_upload(be, &ctx, g, "encoder_hidden_states");
    int64_t shape[2] = {2, 7};
    sd_error err = {0};
    cr_assert_eq(sd_tensor_alloc(be, &te, 2, shape, &err), SD_OK);
    float t[2] = {500, 500}, ids[12] = {0};
    cr_assert_eq(sd_unet_forward(u, &sample, t, &ctx, &te, ids, 6, &out, &err), SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "projection_class_embeddings_input_dim"), "%s", err.msg);
    sd_tensor_free(&sample);
    sd_tensor_free(&ctx);
    sd_tensor_free(&te);
    sd_st_close(g);
    sd_unet_free(u);
    sd_backend_free(be);
}
