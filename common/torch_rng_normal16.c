/* torch_rng_normal16.c - the 16-wide Box-Muller step of torch.randn on CPUs
 * with AVX2, reproduced to the bit: u1 = 1 - data[j], u2 = data[j+8],
 * r = sqrt(-2 log u1), theta = 2 pi u2 (2 pi rounded to float),
 * data[j] = r cos theta, data[j+8] = r sin theta, where log, sin and cos are
 * the Cephes single-precision polynomials (as in Pommier's sse_mathfun, which
 * PyTorch's kernel uses), with a fused multiply-add wherever PyTorch's build
 * (GCC contracting a multiply whose only use is an add) has one: both forms
 * here write those FMAs out explicitly (intrinsics, fmaf), so neither depends
 * on this compiler's contraction choices, and they agree bit for bit (a test
 * checks it, and both match the goldens). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/dtype.h"
#include "torch_rng.h"

/* Cephes single-precision coefficients */
#define LOG_P0 7.0376836292E-2f
#define LOG_P1 -1.1514610310E-1f
#define LOG_P2 1.1676998740E-1f
#define LOG_P3 -1.2420140846E-1f
#define LOG_P4 1.4249322787E-1f
#define LOG_P5 -1.6668057665E-1f
#define LOG_P6 2.0000714765E-1f
#define LOG_P7 -2.4999993993E-1f
#define LOG_P8 3.3333331174E-1f
#define LOG_Q1 -2.12194440e-4f
#define LOG_Q2 0.693359375f
#define SQRTHF 0.707106781186547524f
#define DP1 -0.78515625f
#define DP2 -2.4187564849853515625e-4f
#define DP3 -3.77489497744594108e-8f
#define SIN_P0 -1.9515295891E-4f
#define SIN_P1 8.3321608736E-3f
#define SIN_P2 -1.6666654611E-1f
#define COS_P0 2.443315711809948E-005f
#define COS_P1 -1.388731625493765E-003f
#define COS_P2 4.166664568298827E-002f
#define FOPI 1.27323954473516f
#define TWO_PI_F ((float)(2.0 * 3.14159265358979323846))

/* ---- scalar form, one lane ---- */

static float cephes_logf(float x)
{
    /* the inputs here are in (0, 1]: no NaN or denormal handling needed
     * beyond the clamp the vector code does */
    if (x < sd_bits_f32(0x00800000u))
        x = sd_bits_f32(0x00800000u);
    uint32_t bits = sd_f32_bits(x);
    float e = (float)((int32_t)(bits >> 23) - 0x7f);
    x = sd_bits_f32((bits & ~0x7f800000u) | sd_f32_bits(0.5f));
    e = e + 1.0f;
    int below = x < SQRTHF; /* then log(x) = log(2x) - log 2: x <- 2x - 1 */
    float tmp = below ? x : 0.0f;
    x = x - 1.0f;
    if (below)
        e = e - 1.0f;
    x = x + tmp;
    float z = x * x;
    float y = fmaf(LOG_P0, x, LOG_P1);
    y = fmaf(y, x, LOG_P2);
    y = fmaf(y, x, LOG_P3);
    y = fmaf(y, x, LOG_P4);
    y = fmaf(y, x, LOG_P5);
    y = fmaf(y, x, LOG_P6);
    y = fmaf(y, x, LOG_P7);
    y = fmaf(y, x, LOG_P8);
    y = y * x;
    y = fmaf(y, z, e * LOG_Q1);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    x = fmaf(e, LOG_Q2, x);
    return x;
}

static void cephes_sincosf(float xin, float *s, float *c)
{
    float sign_sin = xin < 0.0f ? -1.0f : 1.0f;
    float x = fabsf(xin);
    int32_t j = (int32_t)(x * FOPI);
    j = (j + 1) & ~1;
    float y = (float)j;
    int swap_sin = (j & 4) != 0;
    int poly = (j & 2) == 0; /* 1: the sine polynomial gives sin */
    x = fmaf(y, DP1, x);
    x = fmaf(y, DP2, x);
    x = fmaf(y, DP3, x);
    int cos_sign_neg = ((~(j - 2)) & 4) != 0;
    float z = x * x;
    float yc = fmaf(COS_P0, z, COS_P1);
    yc = fmaf(yc, z, COS_P2);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f)); /* the second product feeds the subtraction */
    yc = yc + 1.0f;
    float ys = fmaf(SIN_P0, z, SIN_P1);
    ys = fmaf(ys, z, SIN_P2);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    float vs = poly ? ys : yc, vc = poly ? yc : ys;
    if (swap_sin)
        sign_sin = -sign_sin;
    *s = vs * sign_sin;
    *c = cos_sign_neg ? -vc : vc;
}

void sd_torch_normal16_scalar(float *data)
{
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - data[j], u2 = data[j + 8];
        float radius = sqrtf(-2.0f * cephes_logf(u1));
        float theta = TWO_PI_F * u2;
        float s, c;
        cephes_sincosf(theta, &s, &c);
        data[j] = radius * c;
        data[j + 8] = radius * s;
    }
}

/* ---- AVX2 form ---- */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx2,fma")))

AVX2_FN static __m256 log8(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    x = _mm256_max_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x00800000)));
    __m256i ex = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
    x = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(~0x7f800000)));
    x = _mm256_or_ps(x, _mm256_set1_ps(0.5f));
    ex = _mm256_sub_epi32(ex, _mm256_set1_epi32(0x7f));
    __m256 e = _mm256_add_ps(_mm256_cvtepi32_ps(ex), one);
    __m256 mask = _mm256_cmp_ps(x, _mm256_set1_ps(SQRTHF), _CMP_LT_OS);
    __m256 tmp = _mm256_and_ps(x, mask);
    x = _mm256_sub_ps(x, one);
    e = _mm256_sub_ps(e, _mm256_and_ps(one, mask));
    x = _mm256_add_ps(x, tmp);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(LOG_P0), x, _mm256_set1_ps(LOG_P1));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(LOG_P2));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(LOG_P3));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(LOG_P4));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(LOG_P5));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(LOG_P6));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(LOG_P7));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(LOG_P8));
    y = _mm256_mul_ps(y, x);
    y = _mm256_fmadd_ps(y, z, _mm256_mul_ps(e, _mm256_set1_ps(LOG_Q1)));
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
    x = _mm256_add_ps(x, y);
    return _mm256_fmadd_ps(e, _mm256_set1_ps(LOG_Q2), x);
}

AVX2_FN static void sincos8(__m256 x, __m256 *s, __m256 *c)
{
    const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    __m256 sign_sin = _mm256_and_ps(x, sign_mask);
    x = _mm256_andnot_ps(sign_mask, x);
    __m256i j = _mm256_cvttps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(FOPI)));
    j = _mm256_add_epi32(j, _mm256_set1_epi32(1));
    j = _mm256_and_si256(j, _mm256_set1_epi32(~1));
    __m256 y = _mm256_cvtepi32_ps(j);
    __m256 swap_sin = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(j, _mm256_set1_epi32(4)), 29));
    __m256 poly = _mm256_castsi256_ps(
        _mm256_cmpeq_epi32(_mm256_and_si256(j, _mm256_set1_epi32(2)), _mm256_setzero_si256()));
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(DP1), x);
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(DP2), x);
    x = _mm256_fmadd_ps(y, _mm256_set1_ps(DP3), x);
    __m256i jc = _mm256_sub_epi32(j, _mm256_set1_epi32(2));
    __m256 sign_cos = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_andnot_si256(jc, _mm256_set1_epi32(4)), 29));
    sign_sin = _mm256_xor_ps(sign_sin, swap_sin);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 yc = _mm256_fmadd_ps(_mm256_set1_ps(COS_P0), z, _mm256_set1_ps(COS_P1));
    yc = _mm256_fmadd_ps(yc, z, _mm256_set1_ps(COS_P2));
    yc = _mm256_mul_ps(yc, z);
    yc = _mm256_fmsub_ps(yc, z, _mm256_mul_ps(z, _mm256_set1_ps(0.5f)));
    yc = _mm256_add_ps(yc, _mm256_set1_ps(1.0f));
    __m256 ys = _mm256_fmadd_ps(_mm256_set1_ps(SIN_P0), z, _mm256_set1_ps(SIN_P1));
    ys = _mm256_fmadd_ps(ys, z, _mm256_set1_ps(SIN_P2));
    ys = _mm256_mul_ps(ys, z);
    ys = _mm256_fmadd_ps(ys, x, x);
    __m256 sin_from_s = _mm256_and_ps(poly, ys), sin_from_c = _mm256_andnot_ps(poly, yc);
    __m256 cos_from_s = _mm256_sub_ps(ys, sin_from_s), cos_from_c = _mm256_sub_ps(yc, sin_from_c);
    *s = _mm256_xor_ps(_mm256_add_ps(sin_from_c, sin_from_s), sign_sin);
    *c = _mm256_xor_ps(_mm256_add_ps(cos_from_c, cos_from_s), sign_cos);
}

AVX2_FN static void normal16_avx2(float *data)
{
    __m256 u1 = _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_loadu_ps(data));
    __m256 u2 = _mm256_loadu_ps(data + 8);
    __m256 radius = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), log8(u1)));
    __m256 theta = _mm256_mul_ps(_mm256_set1_ps(TWO_PI_F), u2);
    __m256 s, c;
    sincos8(theta, &s, &c);
    _mm256_storeu_ps(data, _mm256_mul_ps(radius, c));
    _mm256_storeu_ps(data + 8, _mm256_mul_ps(radius, s));
}

int sd_torch_normal16_has_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

void sd_torch_normal16(float *data)
{
    static int avx2 = -1;
    if (avx2 < 0)
        avx2 = sd_torch_normal16_has_avx2();
    if (avx2)
        normal16_avx2(data);
    else
        sd_torch_normal16_scalar(data);
}
#else
int sd_torch_normal16_has_avx2(void)
{
    return 0;
}

void sd_torch_normal16(float *data)
{
    sd_torch_normal16_scalar(data);
}
#endif
