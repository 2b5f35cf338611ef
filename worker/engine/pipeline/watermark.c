/* watermark.c - see watermark.h. The steps of diffusers'
 * StableDiffusionXLWatermarker and invisible-watermark 0.2.0's dwtDct
 * encoder (imwatermark/maxDct.py EmbedMaxDct), in float32:
 *   1. pixels to 0..255 (no clamp), BGR to YUV as OpenCV converts float
 *      images (delta 0.5);
 *   2. for each channel with a positive scale ([0, 36, 36], channels 0 and 1
 *      only: the loop is range(2), so U alone): a one-level Haar DWT of the
 *      top-left (H/4*4, W/4*4) pixels; in every 4x4 block of the
 *      approximation, the largest coefficient but the first moved to the
 *      middle of its quantization bin's lower (bit 0) or upper (bit 1) half,
 *      bits cycling through the 48 of WATERMARK_MESSAGE in block order;
 *      the inverse DWT is given the horizontal and vertical details swapped
 *      (maxDct.py passes (ca1, (v1, h1, d1))), which transposes every 2x2
 *      pixel block of the channel: done here as such;
 *   3. YUV to BGR with OpenCV's coefficients, back to -1..1, clamped.
 * No library of Debian's does these three small transforms the way OpenCV
 * and PyWavelets do them, and their exact constants are what matters, so
 * they are written out here. */
#include "worker/engine/pipeline/watermark.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* diffusers' WATERMARK_MESSAGE, most significant bit first */
static const uint64_t MESSAGE = 0xB3EC907BB19Eull; /* 0b101100111110110010010000011110111011000110011110 */
#define MESSAGE_BITS 48

static int message_bit(int k)
{
    return (int)((MESSAGE >> (MESSAGE_BITS - 1 - k)) & 1);
}

int sd_watermark_applies(int width, int height)
{
    /* diffusers skips images under 256 wide; the encoder refuses under
     * 256*256 pixels (diffusers then fails; we leave the image as is) */
    return width >= 256 && (long)width * height >= 256L * 256;
}

/* numpy's float32 floor division by a positive scale */
static float floor_div(float a, float b)
{
    float mod = fmodf(a, b);
    float div = (a - mod) / b;
    if (mod != 0.0f && (b < 0.0f) != (mod < 0.0f))
        div -= 1.0f;
    float f = floorf(div);
    if (div - f > 0.5f)
        f += 1.0f;
    return f;
}

static void embed_channel(float *u, int W, int H, float scale)
{
    int rows = H / 4 * 4, cols = W / 4 * 4;
    int ar = rows / 2, ac = cols / 2; /* the approximation's size */
    float *ca = malloc((size_t)ar * ac * sizeof *ca);
    if (!ca)
        return;
    for (int i = 0; i < ar; i++)
        for (int j = 0; j < ac; j++) {
            const float *p = u + (size_t)(2 * i) * W + 2 * j;
            ca[(size_t)i * ac + j] = ((p[0] + p[1]) + (p[W] + p[W + 1])) * 0.5f;
        }
    int num = 0;
    for (int bi = 0; bi < ar / 4; bi++)
        for (int bj = 0; bj < ac / 4; bj++) {
            /* argmax of |coefficient| over the block's flattened positions 1..15 (the first on ties) */
            int best = 1;
            float bestv = -1.0f;
            for (int k = 1; k < 16; k++) {
                float v = fabsf(ca[(size_t)(bi * 4 + k / 4) * ac + bj * 4 + k % 4]);
                if (v > bestv) {
                    bestv = v;
                    best = k;
                }
            }
            float *c = &ca[(size_t)(bi * 4 + best / 4) * ac + bj * 4 + best % 4];
            float val = *c, bit = (float)message_bit(num % MESSAGE_BITS);
            float q = (floor_div(fabsf(val), scale) + 0.25f + 0.5f * bit) * scale;
            float nv = val >= 0.0f ? q : -1.0f * q;
            *c = nv;
            num++;
        }
    /* inverse with the details swapped: each 2x2 block transposed, plus
     * half the approximation's change */
    for (int i = 0; i < ar; i++)
        for (int j = 0; j < ac; j++) {
            float *p = u + (size_t)(2 * i) * W + 2 * j;
            float a = p[0], b = p[1], c = p[W], d = p[W + 1];
            float old = ((a + b) + (c + d)) * 0.5f;
            float delta = (ca[(size_t)i * ac + j] - old) * 0.5f;
            p[0] = a + delta;
            p[1] = c + delta;
            p[W] = b + delta;
            p[W + 1] = d + delta;
        }
    free(ca);
}

int sd_watermark_apply(float *chw, int width, int height)
{
    if (!sd_watermark_applies(width, height))
        return 0;
    size_t n = (size_t)width * height;
    float *r = chw, *g = chw + n, *b = chw + 2 * n;
    float *y = malloc(n * sizeof *y), *u = malloc(n * sizeof *u), *v = malloc(n * sizeof *v);
    if (!y || !u || !v) {
        free(y), free(u), free(v);
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        float R = 255.0f * (r[k] / 2.0f + 0.5f), G = 255.0f * (g[k] / 2.0f + 0.5f), B = 255.0f * (b[k] / 2.0f + 0.5f);
        float Y = B * 0.114f + G * 0.587f + R * 0.299f;
        y[k] = Y;
        u[k] = (B - Y) * 0.492f + 0.5f;
        v[k] = (R - Y) * 0.877f + 0.5f;
    }
    embed_channel(u, width, height, 36.0f);
    for (size_t k = 0; k < n; k++) {
        float Y = y[k], U = u[k] - 0.5f, V = v[k] - 0.5f;
        float B = Y + U * 2.032f, G = Y + U * -0.395f + V * -0.581f, R = Y + V * 1.140f;
        float rgb[3] = {R, G, B};
        float *dst[3] = {&r[k], &g[k], &b[k]};
        for (int c = 0; c < 3; c++) {
            float x = 2.0f * (rgb[c] / 255.0f - 0.5f);
            *dst[c] = x < -1.0f ? -1.0f : x > 1.0f ? 1.0f : x;
        }
    }
    free(y), free(u), free(v);
    return 1;
}
