/* test_unet_step.c - the replayed UNet step (worker/engine/unet/unet_step.h) gives
 * sd_unet_forward's output bit for bit at every step, on fresh inputs each
 * step, with its activations in one arena planned from the first step.
 * Exact equality is the right bar: the same ops run on the same values; only
 * where the activations live differs. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/model_folder.h"
#include "kernels/backend_impl.h"
#include "tests/test_util.h"
#include "worker/engine/unet/unet_step.h"

static void fill(float *x, size_t n, unsigned *seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rand_r(seed) / (float)RAND_MAX * 2.0f - 1.0f;
}

static void steps_equal_forward(const char *model, int nids, int64_t B, int64_t h, int64_t w)
{
    sd_backend *be = tu_cpu();
    sd_unet *u = tu_load_unet(be, model, NULL);
    const sd_unet_config *c = sd_unet_get_config(u);
    unsigned seed = 11;
    /* SDXL's conditioning: text_embeds of width P and nids time ids fill the
     * config's projection input (6 ids for the base, 5 for the refiner) */
    int64_t S = 7, P = c->text_time ? c->add_embed_in - (int64_t)nids * c->addition_time_embed_dim : 0;
    if (!c->text_time)
        nids = 0;
    cr_assert(P > 0 || !c->text_time, "%d time ids leave no text_embeds width in %s's config", nids, model);
    size_t nx = (size_t)(B * c->in_channels * h * w), ny = (size_t)(B * c->out_channels * h * w);
    float *ctx_h = malloc((size_t)(B * S * c->cross_dim) * sizeof(float)), *te_h = malloc((size_t)(B * P + 1) * 4),
          *ids = malloc((size_t)(B * nids + 1) * 4), *x = malloc(nx * 4), *got = malloc(ny * 4), *want = malloc(ny * 4);
    fill(ctx_h, (size_t)(B * S * c->cross_dim), &seed);
    fill(te_h, (size_t)(B * P), &seed);
    for (int i = 0; i < B * nids; i++)
        ids[i] = (float)(64 * (i % 4) + i);
    sd_tensor ctx, te = {0}, xt, out = {0};
    sd_error err = {0};
    int64_t cs[3] = {B, S, c->cross_dim}, ts_[2] = {B, P}, xs[4] = {B, c->in_channels, h, w};
    cr_assert_eq(sd_tensor_from_host(be, &ctx, ctx_h, SD_DTYPE_F32, 3, cs, 0, &err), SD_OK);
    if (c->text_time)
        cr_assert_eq(sd_tensor_from_host(be, &te, te_h, SD_DTYPE_F32, 2, ts_, 0, &err), SD_OK);
    sd_unet_step *step;
    cr_assert_eq(sd_unet_step_create(&step, u, B, h, w, S, P, nids, 1, &err), SD_OK, "%s", err.msg);
    cr_assert(sd_unet_step_fits(step, u, B, h, w, S, P, nids, 1));
    cr_assert(!sd_unet_step_fits(step, u, B, h + 1, w, S, P, nids, 1));
    cr_assert_eq(sd_unet_step_condition(step, ctx_h, c->text_time ? te_h : NULL, c->text_time ? ids : NULL, &err),
                 SD_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++) {
        float t[8];
        for (int b = 0; b < B; b++)
            t[b] = 999.0f - 250.0f * (float)i;
        fill(x, nx, &seed);
        cr_assert_eq(sd_unet_step_run(step, x, t, got, &err), SD_OK, "step %d: %s", i, err.msg);
        cr_assert_eq(sd_tensor_from_host(be, &xt, x, SD_DTYPE_F32, 4, xs, 0, &err), SD_OK);
        cr_assert_eq(sd_unet_forward(u, &xt, t, &ctx, c->text_time ? &te : NULL, ids, nids, &out, &err), SD_OK,
                     "%s", err.msg);
        cr_assert_eq(sd_tensor_to_host_f32(&out, want, &err), SD_OK);
        sd_tensor_free(&out);
        sd_tensor_free(&xt);
        cr_assert_eq(memcmp(got, want, ny * 4), 0, "step %d differs from sd_unet_forward (rel L2 %g)", i,
                     tu_rel_l2(got, want, ny));
    }
    /* a second image on the same step: new conditioning, same plan */
    fill(ctx_h, (size_t)(B * S * c->cross_dim), &seed);
    sd_tensor_free(&ctx);
    cr_assert_eq(sd_tensor_from_host(be, &ctx, ctx_h, SD_DTYPE_F32, 3, cs, 0, &err), SD_OK);
    cr_assert_eq(sd_unet_step_condition(step, ctx_h, c->text_time ? te_h : NULL, c->text_time ? ids : NULL, &err),
                 SD_OK, "%s", err.msg);
    float t2[8];
    for (int b = 0; b < B; b++)
        t2[b] = 10.0f;
    cr_assert_eq(sd_unet_step_run(step, x, t2, got, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_tensor_from_host(be, &xt, x, SD_DTYPE_F32, 4, xs, 0, &err), SD_OK);
    cr_assert_eq(sd_unet_forward(u, &xt, t2, &ctx, c->text_time ? &te : NULL, ids, nids, &out, &err), SD_OK);
    cr_assert_eq(sd_tensor_to_host_f32(&out, want, &err), SD_OK);
    sd_tensor_free(&out);
    sd_tensor_free(&xt);
    cr_assert_eq(memcmp(got, want, ny * 4), 0, "the second image's step differs from sd_unet_forward");
    sd_unet_step_info info;
    sd_unet_step_get_info(step, &info);
    cr_assert_eq(info.steps, 5);
    cr_assert_eq(info.graph_steps, 0, "the CPU backend has no graphs");
    cr_assert_gt(info.buffers, 10);
    cr_assert_gt(info.peak_live_bytes, 0);
    cr_assert_geq(info.arena_bytes, info.peak_live_bytes);
    sd_unet_step_free(step);
    sd_tensor_free(&ctx);
    sd_tensor_free(&te);
    free(ctx_h);
    free(te_h);
    free(ids);
    free(x);
    free(got);
    free(want);
    sd_unet_free(u);
    sd_backend_free(be);
}

Test(unet_step, base_steps_equal_forward_bit_for_bit)
{
    steps_equal_forward("sdxl-tiny", 6, 2, 8, 8);
}

Test(unet_step, refiner_steps_equal_forward_at_an_odd_size)
{
    steps_equal_forward("sdxl-tiny-refiner", 5, 1, 10, 6);
}

/* A CPU backend that claims to capture graphs but whose capture always
 * fails at its end, as a CUDA capture of an unsupported call would. */
static sd_status fake_begin(sd_backend *be, sd_error *err)
{
    (void)be;
    (void)err;
    return SD_OK;
}
static sd_status fake_end(sd_backend *be, void **graph, sd_error *err)
{
    (void)be;
    *graph = NULL;
    return sd_fail(err, SD_ERR_BACKEND, "cuda: cudaStreamEndCapture: operation not permitted when stream is capturing");
}
static sd_status fake_launch(sd_backend *be, void *graph, sd_error *err)
{
    (void)be;
    (void)graph;
    return sd_fail(err, SD_ERR_BACKEND, "no graph to launch");
}

Test(unet_step, a_failed_capture_falls_back_to_eager_steps_with_the_same_output)
{
    sd_backend *be = tu_cpu();
    sd_backend_vtable vt = *be->vt;
    vt.graph_begin = fake_begin;
    vt.graph_end = fake_end;
    vt.graph_launch = fake_launch;
    const sd_backend_vtable *cpu_vt = be->vt;
    be->vt = &vt;
    cr_assert(sd_backend_can_capture(be));
    sd_unet *u = tu_load_unet(be, "sdxl-tiny", NULL);
    const sd_unet_config *c = sd_unet_get_config(u);
    int64_t B = 1, h = 8, w = 8, S = 5, nids = 6, P = c->add_embed_in - nids * c->addition_time_embed_dim;
    unsigned seed = 3;
    size_t nx = (size_t)(B * c->in_channels * h * w);
    float *ctx = malloc((size_t)(B * S * c->cross_dim) * 4), *te = malloc((size_t)(B * P) * 4), ids[6] = {64, 64, 0, 0, 64, 64},
          *x = malloc(nx * 4), *got = malloc(nx * 4), *want = malloc(nx * 4);
    fill(ctx, (size_t)(B * S * c->cross_dim), &seed);
    fill(te, (size_t)(B * P), &seed);
    sd_error err = {0};
    sd_unet_step *step;
    cr_assert_eq(sd_unet_step_create(&step, u, B, h, w, S, P, (int)nids, 1, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_unet_step_condition(step, ctx, te, ids, &err), SD_OK, "%s", err.msg);
    int64_t cs[3] = {B, S, c->cross_dim}, es[2] = {B, P}, xs[4] = {B, c->in_channels, h, w};
    sd_tensor ct, tt, xt, out = {0};
    cr_assert_eq(sd_tensor_from_host(be, &ct, ctx, SD_DTYPE_F32, 3, cs, 0, &err), SD_OK);
    cr_assert_eq(sd_tensor_from_host(be, &tt, te, SD_DTYPE_F32, 2, es, 0, &err), SD_OK);
    for (int i = 0; i < 5; i++) { /* step 3 is the capture that fails */
        float t = 900.0f - 200.0f * (float)i;
        fill(x, nx, &seed);
        cr_assert_eq(sd_unet_step_run(step, x, &t, got, &err), SD_OK, "step %d: %s", i, err.msg);
        cr_assert_eq(sd_tensor_from_host(be, &xt, x, SD_DTYPE_F32, 4, xs, 0, &err), SD_OK);
        cr_assert_eq(sd_unet_forward(u, &xt, &t, &ct, &tt, ids, (int)nids, &out, &err), SD_OK, "%s", err.msg);
        cr_assert_eq(sd_tensor_to_host_f32(&out, want, &err), SD_OK);
        sd_tensor_free(&out);
        sd_tensor_free(&xt);
        cr_assert_eq(memcmp(got, want, nx * 4), 0, "step %d differs from sd_unet_forward", i);
    }
    sd_unet_step_info info;
    sd_unet_step_get_info(step, &info);
    cr_assert_eq(info.steps, 5);
    cr_assert_eq(info.graph_steps, 0);
    sd_unet_step_free(step);
    sd_tensor_free(&ct);
    sd_tensor_free(&tt);
    sd_unet_free(u);
    free(ctx);
    free(te);
    free(x);
    free(got);
    free(want);
    be->vt = cpu_vt;
    sd_backend_free(be);
}
