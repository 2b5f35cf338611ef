/* torch_rng.c - see torch_rng.h. */
#include "torch_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MT_N 624
#define MT_M 397

void sd_torch_gen_seed(sd_torch_gen *g, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    g->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (int j = 1; j < MT_N; j++)
        g->state[j] = 1812433253u * (g->state[j - 1] ^ (g->state[j - 1] >> 30)) + (uint32_t)j;
    g->left = 1;
    g->next = 0;
}

static uint32_t twist(uint32_t u, uint32_t v)
{
    uint32_t mixed = (u & 0x80000000u) | (v & 0x7fffffffu);
    return (mixed >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void next_state(sd_torch_gen *g)
{
    uint32_t *p = g->state;
    g->left = MT_N;
    g->next = 0;
    for (int j = MT_N - MT_M + 1; --j; p++)
        *p = p[MT_M] ^ twist(p[0], p[1]);
    for (int j = MT_M; --j; p++)
        *p = p[MT_M - MT_N] ^ twist(p[0], p[1]);
    *p = p[MT_M - MT_N] ^ twist(p[0], g->state[0]);
}

uint32_t sd_torch_gen_u32(sd_torch_gen *g)
{
    if (--g->left == 0)
        next_state(g);
    uint32_t y = g->state[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

static float uniform_f32(sd_torch_gen *g)
{
    return (float)(sd_torch_gen_u32(g) & 0xffffffu) * (1.0f / 16777216.0f);
}

static double uniform_f64(sd_torch_gen *g)
{
    uint64_t hi = sd_torch_gen_u32(g), lo = sd_torch_gen_u32(g);
    uint64_t v = (hi << 32) | lo;
    return (double)(v & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

void sd_torch_rand(sd_torch_gen *g, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = uniform_f32(g);
}

/* at::normal_distribution<double>(0, 1), with its cached second value */
static double normal_f64(sd_torch_gen *g)
{
    if (g->has_cached_normal) {
        g->has_cached_normal = 0;
        return g->cached_normal;
    }
    double u1 = uniform_f64(g), u2 = uniform_f64(g);
    double r = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    g->cached_normal = r * sin(theta);
    g->has_cached_normal = 1;
    return r * cos(theta);
}

static void randn(sd_torch_gen *g, float *out, size_t n, void (*step16)(float *))
{
    if (n < 16) {
        for (size_t i = 0; i < n; i++)
            out[i] = (float)normal_f64(g);
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = uniform_f32(g);
    for (size_t i = 0; i + 16 <= n; i += 16)
        step16(out + i);
    if (n % 16) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++)
            tail[i] = uniform_f32(g);
        step16(tail);
    }
}

void sd_torch_randn(sd_torch_gen *g, float *out, size_t n)
{
    randn(g, out, n, sd_torch_normal16);
}

void sd_torch_randn_scalar(sd_torch_gen *g, float *out, size_t n)
{
    randn(g, out, n, sd_torch_normal16_scalar);
}

/* Advances the generator by k draws of sd_torch_gen_u32 without computing
 * them (the state is still regenerated every 624). */
static void skip_u32(sd_torch_gen *g, size_t k)
{
    while (k > 0) {
        size_t run = (size_t)g->left - 1; /* draws before the next regeneration */
        if (run == 0) {                   /* this draw regenerates, then takes state[0] */
            next_state(g);
            g->next = 1;
            k--;
            continue;
        }
        size_t t = k < run ? k : run;
        g->left -= (int)t;
        g->next += (int)t;
        k -= t;
    }
}

/* Item batch_i's slice of randn([batch_n * n]) without the rest: randn
 * draws all its uniforms first, turns each 16-block from the start into
 * normals, then (total % 16) redraws the last 16 positions; so the slice
 * needs only its own blocks' uniforms and the tail, the rest is skipped.
 * O(n) memory and Box-Muller work instead of the batch's. */
void sd_torch_randn_item(sd_torch_gen *g, float *out, size_t n)
{
    if (g->batch_n <= 1) {
        sd_torch_randn(g, out, n);
        return;
    }
    size_t total = (size_t)g->batch_n * n, a = (size_t)g->batch_i * n, b = a + n;
    if (total < 16) { /* the scalar path, with its cached second value */
        float all[16];
        sd_torch_randn(g, all, total);
        memcpy(out, all + a, n * sizeof *out);
        return;
    }
    size_t rem = total % 16, lim = rem ? total - 16 : total; /* first-pass values kept below lim */
    size_t hi = b < lim ? b : lim, drawn = 0;
    if (a < hi) {
        size_t b0 = a / 16 * 16, b1 = (hi + 15) / 16 * 16; /* whole blocks, within the first pass */
        skip_u32(g, b0);
        for (size_t j = b0; j < b1; j += 16) {
            float blk[16];
            for (int k = 0; k < 16; k++)
                blk[k] = uniform_f32(g);
            sd_torch_normal16(blk);
            for (size_t p = j > a ? j : a; p < j + 16 && p < hi; p++)
                out[p - a] = blk[p - j];
        }
        drawn = b1;
    }
    skip_u32(g, total - drawn);
    if (rem) {
        float tail[16];
        for (int k = 0; k < 16; k++)
            tail[k] = uniform_f32(g);
        sd_torch_normal16(tail);
        for (size_t p = a > total - 16 ? a : total - 16; p < b; p++)
            out[p - a] = tail[p - (total - 16)];
    }
}
