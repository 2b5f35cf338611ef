/* torch_rng.h - PyTorch's CPU generator reproduced bit for bit, so a seed
 * gives the same initial latents as diffusers (which draws them with
 * torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))).
 *
 * mt19937 as at::mt19937 (seeded with the low 32 bits of the seed); float
 * uniforms as (draw & (2^24-1)) * 2^-24; torch.randn for float32:
 *  - 16 or more elements: all uniforms first, then Box-Muller on 16 at a time
 *    over the pairs (j, j+8), the last 16 redrawn when n % 16 != 0, with the
 *    Cephes-style log/sin/cos of PyTorch's AVX2 kernel (its results differ
 *    from libm's in the last bit for about a third of the values);
 *  - fewer: the scalar double-precision Box-Muller of at::normal_distribution,
 *    whose second value is cached in the generator for the next draw. */
#ifndef SDXL_COMMON_TORCH_RNG_H
#define SDXL_COMMON_TORCH_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[624];
    int next, left;
    int has_cached_normal;
    double cached_normal;
    /* one generator for a batch (diffusers' num_images_per_prompt): each
     * draw is the whole batch's, this item's slice kept (batch_n <= 1: none) */
    int batch_n, batch_i;
} sd_torch_gen;

/* torch.Generator("cpu").manual_seed(seed) */
void sd_torch_gen_seed(sd_torch_gen *g, uint64_t seed);
uint32_t sd_torch_gen_u32(sd_torch_gen *g);
/* torch.rand(n) (float32) */
void sd_torch_rand(sd_torch_gen *g, float *out, size_t n);
/* torch.randn(n) (float32, contiguous) */
void sd_torch_randn(sd_torch_gen *g, float *out, size_t n);

/* One item's n values of a draw of the batch's shape [batch_n, n] (as
 * torch.randn([N, ...], generator) gives item i its slice); without a
 * batch, sd_torch_randn. */
void sd_torch_randn_item(sd_torch_gen *g, float *out, size_t n);

/* The same using the scalar form of the 16-wide step whatever the CPU (for
 * tests: it must equal sd_torch_randn bit for bit). */
void sd_torch_randn_scalar(sd_torch_gen *g, float *out, size_t n);

/* The 16-wide Box-Muller step on data[0..16) (uniforms in, normals out);
 * exposed for tests that compare its vector and scalar forms. */
void sd_torch_normal16(float *data);
void sd_torch_normal16_scalar(float *data);
int sd_torch_normal16_has_avx2(void);

#endif
