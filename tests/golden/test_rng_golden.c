/* test_rng_golden.c - torch.randn / torch.rand on torch's CPU generator,
 * against tensors PyTorch drew (golden/rng.safetensors): bit for bit, for
 * every seed and shape (scalar path under 16 elements, 16-wide path above,
 * the redrawn tail when n % 16 != 0), successive draws from one generator,
 * and the scalar form of the 16-wide step against its AVX2 form. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/torch_rng.h"
#include "tests/test_util.h"

static void expect_bits(const float *got, const sd_st_tensor *ref, const char *what)
{
    size_t n = (size_t)sd_st_numel(ref);
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], (const float *)ref->data + i, 4)) {
            if (!bad)
                first = i;
            bad++;
        }
    cr_assert_eq(bad, 0u, "%s: %zu of %zu values differ (first at %zu: %a vs %a)", what, bad, n, first,
                 first < n ? got[first] : 0.0f, first < n ? ((const float *)ref->data)[first] : 0.0f);
}

Test(rng_golden, randn_every_seed_and_shape)
{
    sd_st_file *g = tu_golden("rng.safetensors");
    int checked = 0;
    for (size_t i = 0; i < g->n; i++) {
        const sd_st_tensor *t = &g->tensors[i];
        unsigned long long seed;
        if (strncmp(t->name, "seed", 4) || sscanf(t->name, "seed%llu_", &seed) != 1)
            continue;
        size_t n = (size_t)sd_st_numel(t);
        float *out = malloc(n * sizeof *out);
        sd_torch_gen gen;
        sd_torch_gen_seed(&gen, seed);
        sd_torch_randn(&gen, out, n);
        expect_bits(out, t, t->name);
        free(out);
        checked++;
    }
    cr_assert_geq(checked, 40, "only %d cases found", checked);
    sd_st_close(g);
}

Test(rng_golden, successive_draws_share_one_generator)
{
    sd_st_file *g = tu_golden("rng.safetensors");
    sd_torch_gen gen;
    sd_torch_gen_seed(&gen, 42);
    const char *names[4] = {"seq_seed42_first_1x4x8x8", "seq_seed42_second_1x4x8x8", "seq_seed42_third_5",
                            "seq_seed42_fourth_1x4x8x8"};
    for (int k = 0; k < 4; k++) {
        const sd_st_tensor *t = tu_tensor(g, names[k], SD_DTYPE_F32);
        float out[256];
        sd_torch_randn(&gen, out, (size_t)sd_st_numel(t));
        expect_bits(out, t, names[k]);
    }
    sd_st_close(g);
}

Test(rng_golden, rand_uniform)
{
    sd_st_file *g = tu_golden("rng.safetensors");
    const sd_st_tensor *t = tu_tensor(g, "rand_seed0_20", SD_DTYPE_F32);
    sd_torch_gen gen;
    sd_torch_gen_seed(&gen, 0);
    float out[20];
    sd_torch_rand(&gen, out, 20);
    expect_bits(out, t, "rand_seed0_20");
    sd_st_close(g);
}

Test(rng_golden, scalar_form_matches_goldens)
{
    /* the form machines without AVX2 use, checked on every machine */
    sd_st_file *g = tu_golden("rng.safetensors");
    const char *names[2] = {"seed0_shape1x4x128x128", "seed42_shape1x4x128x128"};
    unsigned long long seeds[2] = {0, 42};
    for (int k = 0; k < 2; k++) {
        const sd_st_tensor *t = tu_tensor(g, names[k], SD_DTYPE_F32);
        size_t n = (size_t)sd_st_numel(t);
        float *out = malloc(n * sizeof *out);
        sd_torch_gen gen;
        sd_torch_gen_seed(&gen, seeds[k]);
        sd_torch_randn_scalar(&gen, out, n);
        expect_bits(out, t, names[k]);
        free(out);
    }
    sd_st_close(g);
}

Test(rng_golden, scalar_step_equals_dispatched_step)
{
    /* 1.6 million values through both forms (the dispatched one is AVX2
     * where the CPU has it), including the ends of the uniform range */
    sd_torch_gen gen;
    sd_torch_gen_seed(&gen, 7);
    for (int block = 0; block < 100000; block++) {
        float a[16], b[16];
        sd_torch_rand(&gen, a, 16);
        if (block == 0)
            a[0] = 0.0f, a[8] = 0.999999940395f;
        memcpy(b, a, sizeof a);
        sd_torch_normal16(a);
        sd_torch_normal16_scalar(b);
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "block %d differs", block);
    }
}

/* One item's slice of a batch draw (sd_torch_randn_item, the --one-generator
 * batches) is the slice of the whole draw (the definition: torch.randn of
 * [N, ...] with one generator), bit for bit, and leaves the generator where
 * the whole draw leaves it: every batch size, item, size around the 16-wide
 * blocks and the redrawn tail, from generators part-way through their
 * 624-word state (the skip crosses regenerations). */
Test(rng_golden, batch_item_slice_equals_the_whole_draw)
{
    const int ns[] = {1, 3, 5, 7, 8, 15, 16, 17, 31, 33, 100, 624, 1000, 1301};
    const int batches[] = {2, 3, 4, 7};
    const int pre[] = {0, 1, 623, 700};
    float *all = malloc(7 * 1301 * sizeof *all), *got = malloc(1301 * sizeof *got);
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++)
            for (size_t pi = 0; pi < sizeof pre / sizeof *pre; pi++) {
                int n = ns[a], N = batches[bi];
                for (int i = 0; i < N; i++) {
                    sd_torch_gen ref, g;
                    sd_torch_gen_seed(&ref, 1000u + (unsigned)a * 7 + (unsigned)pi);
                    for (int k = 0; k < pre[pi]; k++)
                        sd_torch_gen_u32(&ref);
                    g = ref;
                    g.batch_n = N;
                    g.batch_i = i;
                    sd_torch_randn(&ref, all, (size_t)N * n);
                    sd_torch_randn_item(&g, got, (size_t)n);
                    cr_assert_eq(memcmp(got, all + (size_t)i * n, (size_t)n * sizeof *got), 0,
                                 "n %d, batch %d, item %d, %d words drawn before: the slice differs", n, N, i,
                                 pre[pi]);
                    /* the same place in the stream after: the next draws agree */
                    cr_assert_eq(sd_torch_gen_u32(&g), sd_torch_gen_u32(&ref), "n %d, batch %d, item %d: stream", n,
                                 N, i);
                    cr_assert_eq(g.has_cached_normal, ref.has_cached_normal);
                }
            }
    free(all);
    free(got);
}
