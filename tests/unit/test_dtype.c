/* test_dtype.c - half and bfloat16 conversions against IEEE bit patterns
 * worked out by hand (not by the code under test). */
#include <criterion/criterion.h>
#include <math.h>

#include "common/dtype.h"

Test(dtype, f16_known_bit_patterns)
{
    cr_assert_eq(sd_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(sd_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(sd_f32_to_f16(65504.0f), 0x7bff);      /* largest half */
    cr_assert_eq(sd_f32_to_f16(65520.0f), 0x7c00);      /* rounds up to inf */
    cr_assert_eq(sd_f32_to_f16(65519.0f), 0x7bff);      /* rounds down */
    cr_assert_eq(sd_f32_to_f16(0x1p-24f), 0x0001);      /* smallest subnormal */
    cr_assert_eq(sd_f32_to_f16(0x1p-25f), 0x0000);      /* tie to even: 0 */
    cr_assert_eq(sd_f32_to_f16(0x1.8p-24f), 0x0002);    /* 1.5 ulp: tie to even 2 */
    cr_assert_eq(sd_f32_to_f16(0x1p-14f), 0x0400);      /* smallest normal */
    cr_assert_eq(sd_f32_to_f16(0.1f), 0x2e66);
    cr_assert_eq(sd_f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie to even: down */
    cr_assert_eq(sd_f32_to_f16(1.0f + 0x3p-11f), 0x3c02); /* tie to even: up */
    cr_assert_eq(sd_f32_to_f16(INFINITY), 0x7c00);
    cr_assert((sd_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (sd_f32_to_f16(NAN) & 0x3ff) != 0);
}

Test(dtype, f16_roundtrip_every_half)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = sd_f16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        cr_assert_eq(sd_f32_to_f16(f), h, "half 0x%04x -> %g -> 0x%04x", h, f, sd_f32_to_f16(f));
    }
    cr_assert_float_eq(sd_f16_to_f32(0x0001), 0x1p-24f, 0);
    cr_assert_float_eq(sd_f16_to_f32(0x3555), 0.333251953125f, 0);
}

Test(dtype, bf16_rounding)
{
    cr_assert_eq(sd_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(sd_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);  /* tie to even: down */
    cr_assert_eq(sd_f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);  /* tie to even: up */
    cr_assert_eq(sd_bf16_to_f32(0xc040), -3.0f);
    cr_assert(isnan(sd_bf16_to_f32(sd_f32_to_bf16(NAN))));
}

Test(dtype, names_parse)
{
    sd_dtype d;
    cr_assert_eq(sd_dtype_parse("BF16", &d), 0);
    cr_assert_eq(d, SD_DTYPE_BF16);
    cr_assert_eq(sd_dtype_parse("F8_E4M3", &d), -1);
    cr_assert_eq(sd_dtype_size(SD_DTYPE_I64), 8u);
    cr_assert_eq(sd_dtype_parse_user("fp16", &d), 0);
    cr_assert_eq(d, SD_DTYPE_F16);
}
