/* test_watermark_golden.c - diffusers' invisible watermark against diffusers
 * itself (tests/golden/data/watermark.safetensors, make_watermark_golden.py:
 * StableDiffusionXLWatermarker with invisible-watermark 0.2.0, OpenCV and
 * PyWavelets). Tolerance: 1 level of 255 per value, as the other 8-bit
 * goldens: the colour conversions and the DWT round in float32 in a
 * different order than OpenCV's and PyWavelets' kernels, which moves a value
 * across a rounding boundary now and then. The watermark itself moves
 * values by several levels (checked), so 1 level cannot hide it. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"
#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/pipeline/watermark.h"

static void check(const char *name)
{
    sd_st_file *g;
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&g, "tests/golden/data/watermark.safetensors", &err), SD_OK, "%s", err.msg);
    char key[64];
    snprintf(key, sizeof key, "%s_decoded", name);
    const sd_st_tensor *in = tu_tensor(g, key, SD_DTYPE_F16);
    int H = (int)in->shape[2], W = (int)in->shape[3];
    size_t n = (size_t)3 * H * W;
    float *img = malloc(n * sizeof *img);
    sd_convert_to_f32(img, in->data, in->dtype, n);
    uint8_t *plain = malloc(n), *ours = malloc(n);
    sd_image_to_rgb8(img, W, H, plain);
    cr_assert(sd_watermark_applies(W, H));
    cr_assert_eq(sd_watermark_apply(img, W, H), 1);
    sd_image_to_rgb8(img, W, H, ours);
    snprintf(key, sizeof key, "%s_watermarked_uint8", name);
    const uint8_t *ref = tu_tensor(g, key, SD_DTYPE_U8)->data;
    int worst = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)ours[i] - (int)ref[i]);
        worst = d > worst ? d : worst;
        int m = abs((int)ref[i] - (int)plain[i]);
        moved = m > moved ? m : moved;
    }
    cr_assert_leq(worst, 1, "%s: %d levels from diffusers' watermarked image", name, worst);
    cr_assert_geq(moved, 4, "%s: the watermark moved values by only %d levels", name, moved);
    free(img), free(plain), free(ours);
    sd_st_close(g);
}

Test(watermark_golden, square_256) { check("a"); }
Test(watermark_golden, wider_than_a_multiple_of_8_blocks) { check("b"); }

Test(watermark_golden, small_images_are_left_as_they_are)
{
    /* diffusers skips under 256 wide; the encoder refuses under 256*256 pixels */
    cr_assert(!sd_watermark_applies(255, 512));
    cr_assert(!sd_watermark_applies(512, 64));
    cr_assert(sd_watermark_applies(256, 256));
    float px[3 * 8 * 8] = {0};
    cr_assert_eq(sd_watermark_apply(px, 8, 8), 0);
}
