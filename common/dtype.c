/* dtype.c - dtype table and IEEE half / bfloat16 conversions. */
#include "dtype.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[SD_DTYPE_COUNT] = {
    [SD_DTYPE_F64] = {"F64", 8},  [SD_DTYPE_F32] = {"F32", 4},
    [SD_DTYPE_F16] = {"F16", 2},  [SD_DTYPE_BF16] = {"BF16", 2},
    [SD_DTYPE_I64] = {"I64", 8},  [SD_DTYPE_I32] = {"I32", 4},
    [SD_DTYPE_I16] = {"I16", 2},  [SD_DTYPE_I8] = {"I8", 1},
    [SD_DTYPE_U8] = {"U8", 1},    [SD_DTYPE_BOOL] = {"BOOL", 1},
};

size_t sd_dtype_size(sd_dtype dt)
{
    return (unsigned)dt < SD_DTYPE_COUNT ? dtype_table[dt].size : 0;
}

const char *sd_dtype_name(sd_dtype dt)
{
    return (unsigned)dt < SD_DTYPE_COUNT ? dtype_table[dt].name : "?";
}

int sd_dtype_parse(const char *name, sd_dtype *out)
{
    for (int i = 0; i < SD_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (sd_dtype)i;
            return 0;
        }
    }
    return -1;
}

int sd_dtype_parse_user(const char *name, sd_dtype *out)
{
    if (!strcasecmp(name, "f32") || !strcasecmp(name, "fp32") || !strcasecmp(name, "float32"))
        return *out = SD_DTYPE_F32, 0;
    if (!strcasecmp(name, "f16") || !strcasecmp(name, "fp16") || !strcasecmp(name, "float16"))
        return *out = SD_DTYPE_F16, 0;
    if (!strcasecmp(name, "bf16") || !strcasecmp(name, "bfloat16"))
        return *out = SD_DTYPE_BF16, 0;
    return -1;
}

const char *sd_dtype_user_name(sd_dtype dt)
{
    return dt == SD_DTYPE_F32 ? "f32" : dt == SD_DTYPE_F16 ? "f16" : dt == SD_DTYPE_BF16 ? "bf16" : sd_dtype_name(dt);
}

int sd_dtype_is_float(sd_dtype dt)
{
    return dt == SD_DTYPE_F64 || dt == SD_DTYPE_F32 || dt == SD_DTYPE_F16 || dt == SD_DTYPE_BF16;
}

float sd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f)
        return sd_bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return sd_bits_f32(sign);
        /* subnormal: value = mant * 2^-24 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return sd_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t sd_f32_to_f16(float f)
{
    uint32_t x = sd_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below 2^-14: subnormal half or zero */
        /* scale so that the half subnormal unit 2^-24 becomes 1.0, then
         * round to nearest even via the float adder */
        float a = sd_bits_f32(absx) * 16777216.0f;
        /* a in [0, 1024): nearbyint with ties to even */
        uint32_t m = (uint32_t)a;
        float frac = a - (float)m;
        if (frac > 0.5f || (frac == 0.5f && (m & 1)))
            m++;
        return (uint16_t)(sign | m);
    }
    uint32_t mant = absx & 0x7fffff;
    uint32_t exp = (absx >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float sd_bf16_to_f32(uint16_t h)
{
    return sd_bits_f32((uint32_t)h << 16);
}

uint16_t sd_f32_to_bf16(float f)
{
    uint32_t x = sd_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (uint16_t)(x >> 16);
}

int sd_convert_to_f32(float *dst, const void *src, sd_dtype src_dt, size_t n)
{
    switch (src_dt) {
    /* safetensors does not promise aligned data: elements are read with
     * memcpy (a plain load where the compiler can see it is allowed) */
    case SD_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return 0;
    case SD_DTYPE_F16: {
        const unsigned char *s = src;
#pragma omp parallel for schedule(static) if (n > (1u << 16))
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = sd_f16_to_f32(h);
        }
        return 0;
    }
    case SD_DTYPE_BF16: {
        const unsigned char *s = src;
#pragma omp parallel for schedule(static) if (n > (1u << 16))
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = sd_bf16_to_f32(h);
        }
        return 0;
    }
    case SD_DTYPE_F64: {
        const unsigned char *s = src;
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    }
    default:
        return -1;
    }
}

int sd_convert_from_f32(void *dst, sd_dtype dst_dt, const float *src, size_t n)
{
    switch (dst_dt) {
    case SD_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return 0;
    case SD_DTYPE_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = sd_f32_to_f16(src[i]);
        return 0;
    }
    case SD_DTYPE_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = sd_f32_to_bf16(src[i]);
        return 0;
    }
    case SD_DTYPE_F64: {
        double *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = src[i];
        return 0;
    }
    default:
        return -1;
    }
}
