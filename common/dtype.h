/* dtype.h - element types of safetensors files and tensors, and the
 * half-precision conversions (fp16 <-> fp32, bf16 <-> fp32) used to widen
 * weights at load and to narrow them for the GPU. */
#ifndef SDXL_COMMON_DTYPE_H
#define SDXL_COMMON_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SD_DTYPE_F64,
    SD_DTYPE_F32,
    SD_DTYPE_F16,
    SD_DTYPE_BF16,
    SD_DTYPE_I64,
    SD_DTYPE_I32,
    SD_DTYPE_I16,
    SD_DTYPE_I8,
    SD_DTYPE_U8,
    SD_DTYPE_BOOL,
    SD_DTYPE_COUNT
} sd_dtype;

/* Size of one element in bytes. */
size_t sd_dtype_size(sd_dtype dt);
/* safetensors spelling ("F32", "BF16", ...). */
const char *sd_dtype_name(sd_dtype dt);
/* Parses a safetensors dtype name; returns 0 and sets *out, or -1 if unknown. */
int sd_dtype_parse(const char *name, sd_dtype *out);
/* Parses a user-facing name: f32 f16 bf16 (also the safetensors spellings). */
int sd_dtype_parse_user(const char *name, sd_dtype *out);
/* The user-facing spelling --dtype takes (f32 f16 bf16; others as safetensors). */
const char *sd_dtype_user_name(sd_dtype dt);
int sd_dtype_is_float(sd_dtype dt);

/* the IEEE bits of a float and back (memcpy: no aliasing questions) */
static inline uint32_t sd_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float sd_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float sd_f16_to_f32(uint16_t h);
uint16_t sd_f32_to_f16(float f);   /* round to nearest even, as torch does */
float sd_bf16_to_f32(uint16_t h);
uint16_t sd_f32_to_bf16(float f);  /* round to nearest even, NaN kept NaN */

/* Converts n floating-point elements of type src_dt to fp32. Returns -1 if
 * src_dt is not F64/F32/F16/BF16. */
int sd_convert_to_f32(float *dst, const void *src, sd_dtype src_dt, size_t n);
/* Converts n fp32 values to dst_dt (F32/F16/BF16/F64). */
int sd_convert_from_f32(void *dst, sd_dtype dst_dt, const float *src, size_t n);

#ifdef __cplusplus
}
#endif

#endif
