/* test_scheduler_golden.c - the schedulers against diffusers: the shared
 * goldens of diffusers 0.24 (four schedulers: timesteps, sigmas and
 * init_noise_sigma for 4, 10 and 30 steps, then four steps from a fixed
 * sample with fixed model outputs: scaled model input, predicted x0 and
 * previous sample), and tests/golden/data/schedulers of diffusers 0.42
 * (make_scheduler_goldens.py: every sampler name we take and configs with
 * the keys users set, ten steps each, stochastic ones with the generator's
 * noise, img2img's add_noise). Tolerance: the manifest's atol 1e-5 + rtol
 * 1e-5 per element (we follow diffusers' float32 expression order, so the
 * observed differences are a few float32 ulps). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_config.h"
#include "tests/test_util.h"
#include "worker/engine/schedulers/brownian_tree.h"
#include "worker/engine/schedulers/scheduler.h"

static void expect_close_arr(const float *got, const sd_st_tensor *ref, const char *what)
{
    size_t n = (size_t)sd_st_numel(ref);
    float *r = malloc(n * sizeof *r + 4);
    sd_convert_to_f32(r, ref->data, ref->dtype, n);
    if (ref->dtype == SD_DTYPE_I64) {
        int64_t *v = sd_st_copy_i64(ref);
        for (size_t i = 0; i < n; i++)
            r[i] = (float)v[i];
        free(v);
    }
    for (size_t i = 0; i < n; i++)
        cr_assert(fabsf(got[i] - r[i]) <= 1e-5f + 1e-5f * fabsf(r[i]) || (isnan(got[i]) && isnan(r[i])),
                  "%s[%zu]: %.9g vs %.9g", what, i, (double)got[i], (double)r[i]);
    free(r);
}

static void init_sched(sd_scheduler *s, sd_sched_kind kind)
{
    char *p = tu_data_path("sdxl-tiny/scheduler/scheduler_config.json");
    sd_json_doc d;
    sd_error err = {0};
    cr_assert_eq(sd_json_load(&d, p, &err), SD_OK, "%s", err.msg);
    /* diffusers 0.24, which made these goldens, ended DPM++ on sigma_min
     * when the config did not say: today that takes the config saying so */
    if (kind == SD_SCHED_KIND_DPMPP_2M_KARRAS)
        json_object_set_new(d.root, "final_sigmas_type", json_string("sigma_min"));
    cr_assert_eq(sd_scheduler_init(s, &d, (int)kind, 0.0f, &err), SD_OK, "%s", err.msg);
    sd_json_free(&d);
    free(p);
}

static void check_scheduler(const char *file, sd_sched_kind kind, int has_sigmas, int has_x0)
{
    sd_st_file *g = tu_golden(file);
    int counts[3] = {4, 10, 30};
    char name[64];
    sd_error err = {0};
    for (int c = 0; c < 3; c++) {
        sd_scheduler s;
        init_sched(&s, kind);
        cr_assert_eq(sd_scheduler_set_timesteps(&s, counts[c], &err), SD_OK, "%s", err.msg);
        snprintf(name, sizeof name, "n%d_timesteps", counts[c]);
        const sd_st_tensor *ts = sd_st_find(g, name);
        cr_assert_not_null(ts);
        cr_assert_eq((int64_t)s.n, sd_st_numel(ts), "%s: %d timesteps", name, s.n);
        expect_close_arr(s.timesteps, ts, name);
        if (has_sigmas) {
            snprintf(name, sizeof name, "n%d_sigmas", counts[c]);
            expect_close_arr(s.sigmas, tu_tensor(g, name, SD_DTYPE_F32), name);
        }
        snprintf(name, sizeof name, "n%d_init_noise_sigma", counts[c]);
        expect_close_arr(&s.init_noise_sigma, tu_tensor(g, name, SD_DTYPE_F32), name);
        sd_scheduler_free(&s);
    }
    /* four steps on a fresh 10-step schedule */
    sd_scheduler s;
    init_sched(&s, kind);
    cr_assert_eq(sd_scheduler_set_timesteps(&s, 10, &err), SD_OK);
    const sd_st_tensor *x0t = tu_tensor(g, "step_initial_sample", SD_DTYPE_F32);
    size_t n = (size_t)sd_st_numel(x0t);
    float *x = malloc(n * sizeof *x), *scaled = malloc(n * sizeof *x), *pred = malloc(n * sizeof *x);
    memcpy(x, x0t->data, n * sizeof *x);
    sd_torch_gen gen;
    sd_torch_gen_seed(&gen, 2024);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "step%d_timestep", i);
        float t = *(const float *)tu_tensor(g, name, SD_DTYPE_F32)->data;
        float div;
        cr_assert_eq(sd_scheduler_input_divisor(&s, t, &div, &err), SD_OK, "%s", err.msg);
        for (size_t k = 0; k < n; k++)
            scaled[k] = x[k] / div;
        snprintf(name, sizeof name, "step%d_scaled_model_input", i);
        expect_close_arr(scaled, tu_tensor(g, name, SD_DTYPE_F32), name);
        snprintf(name, sizeof name, "step%d_model_output", i);
        const sd_st_tensor *mo = tu_tensor(g, name, SD_DTYPE_F32);
        cr_assert_eq(sd_scheduler_step(&s, mo->data, t, x, n, kind == SD_SCHED_KIND_EULER_ANCESTRAL ? &gen : NULL, pred,
                                       &err),
                     SD_OK, "%s", err.msg);
        if (has_x0) {
            snprintf(name, sizeof name, "step%d_pred_original_sample", i);
            expect_close_arr(pred, tu_tensor(g, name, SD_DTYPE_F32), name);
        }
        snprintf(name, sizeof name, "step%d_prev_sample", i);
        expect_close_arr(x, tu_tensor(g, name, SD_DTYPE_F32), name);
    }
    free(x);
    free(scaled);
    free(pred);
    sd_scheduler_free(&s);
    sd_st_close(g);
}

Test(scheduler_golden, euler)
{
    check_scheduler("scheduler_euler.safetensors", SD_SCHED_KIND_EULER, 1, 1);
}

Test(scheduler_golden, euler_ancestral)
{
    check_scheduler("scheduler_euler_ancestral.safetensors", SD_SCHED_KIND_EULER_ANCESTRAL, 1, 1);
}

Test(scheduler_golden, dpmpp_2m_karras)
{
    check_scheduler("scheduler_dpmpp_2m_karras.safetensors", SD_SCHED_KIND_DPMPP_2M_KARRAS, 1, 0);
}

Test(scheduler_golden, ddim)
{
    check_scheduler("scheduler_ddim.safetensors", SD_SCHED_KIND_DDIM, 0, 1);
}

Test(scheduler_golden, names_and_errors)
{
    sd_sched_kind k;
    cr_assert_eq(sd_sched_kind_parse("dpmpp_2m_karras", &k), 0);
    cr_assert_eq(k, SD_SCHED_KIND_DPMPP_2M_KARRAS);
    cr_assert_eq(sd_sched_kind_parse("EulerAncestralDiscreteScheduler", &k), 0);
    cr_assert_eq(sd_sched_kind_parse("DPM++ SDE Karras", &k), 0);
    cr_assert_eq(k, SD_SCHED_KIND_DPMPP_SDE_KARRAS);
    cr_assert_eq(sd_sched_kind_parse("dpmpp_4m", &k), -1);
    sd_scheduler s;
    init_sched(&s, SD_SCHED_KIND_EULER);
    sd_error err = {0};
    cr_assert_eq(sd_scheduler_set_timesteps(&s, 0, &err), SD_ERR_INVALID);
    cr_assert_eq(sd_scheduler_set_timesteps(&s, 4, &err), SD_OK);
    float div;
    /* a timestep not in the schedule takes the last step's sigma, as
     * diffusers' index_for_timestep */
    cr_assert_eq(sd_scheduler_input_divisor(&s, 123.0f, &div, &err), SD_OK);
    cr_assert_float_eq(div, sqrtf(s.sigmas[3] * s.sigmas[3] + 1.0f), 0.0f);
    sd_scheduler_free(&s);
}

/* DPM++ 2M Karras as diffusers >= 0.26 saves and runs it: final_sigmas_type
 * "zero" in its config (the last step lands on sigma 0, first order) and
 * lambda_min_clipped -Infinity (Python's spelling, read as null). The golden
 * and config come from diffusers 0.42 (tests/crosscheck/make_dpmpp_zero_golden.py,
 * stored in tests/golden/data). Same tolerance as above. */
Test(scheduler_golden, dpmpp_2m_karras_ending_on_sigma_zero_from_a_newer_config)
{
    sd_json_doc d;
    sd_error err = {0};
    cr_assert_eq(sd_json_load(&d, "tests/golden/data/dpmpp_final_zero_config.json", &err), SD_OK, "%s", err.msg);
    sd_scheduler s;
    cr_assert_eq(sd_scheduler_init(&s, &d, -1, 0.0f, &err), SD_OK, "%s", err.msg);
    sd_json_free(&d);
    cr_assert_eq(s.cls, SD_SCHED_DPM);
    cr_assert(s.karras);
    sd_st_file *g;
    cr_assert_eq(sd_st_open(&g, "tests/golden/data/dpmpp_final_zero.safetensors", &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_scheduler_set_timesteps(&s, 5, &err), SD_OK, "%s", err.msg);
    expect_close_arr(s.timesteps, tu_tensor(g, "timesteps", SD_DTYPE_F32), "timesteps");
    expect_close_arr(s.sigmas, tu_tensor(g, "sigmas", SD_DTYPE_F32), "sigmas");
    cr_assert_eq(s.sigmas[5], 0.0f);
    const sd_st_tensor *x0t = tu_tensor(g, "initial_sample", SD_DTYPE_F32);
    size_t n = (size_t)sd_st_numel(x0t);
    float *x = malloc(n * sizeof *x);
    memcpy(x, x0t->data, n * sizeof *x);
    char name[64];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "step%d_model_output", i);
        const sd_st_tensor *mo = tu_tensor(g, name, SD_DTYPE_F32);
        cr_assert_eq(sd_scheduler_step(&s, mo->data, s.timesteps[i], x, n, NULL, NULL, &err), SD_OK, "%s", err.msg);
        snprintf(name, sizeof name, "step%d_prev_sample", i);
        expect_close_arr(x, tu_tensor(g, name, SD_DTYPE_F32), name);
    }
    free(x);
    sd_scheduler_free(&s);
    sd_st_close(g);
}

Test(scheduler_golden, final_sigmas_type_other_than_zero_or_sigma_min_is_an_error_naming_the_file)
{
    char *dir = tu_tmpdir(), path[4096];
    snprintf(path, sizeof path, "%s/scheduler_config.json", dir);
    const char *cfgs[2] = {"{\"_class_name\": \"DPMSolverMultistepScheduler\", \"use_karras_sigmas\": true, "
                           "\"final_sigmas_type\": \"denoise_to_zero\"}",
                           "{\"_class_name\": \"EulerDiscreteScheduler\", \"final_sigmas_type\": \"denoise_to_zero\"}"};
    for (int k = 0; k < 2; k++) {
        tu_write(path, cfgs[k], strlen(cfgs[k]));
        sd_json_doc d;
        sd_error err = {0};
        cr_assert_eq(sd_json_load(&d, path, &err), SD_OK, "%s", err.msg);
        sd_scheduler s;
        cr_assert_eq(sd_scheduler_init(&s, &d, -1, 0.0f, &err), SD_ERR_UNSUPPORTED);
        cr_assert(strstr(err.msg, "final_sigmas_type") && strstr(err.msg, path), "%s", err.msg);
        sd_json_free(&d);
    }
    tu_rmrf(dir);
    free(dir);
}

/* ---- diffusers 0.42: every sampler name and the config keys users set ---- */

static void run_case(const char *name, json_t *c)
{
    char path[256];
    snprintf(path, sizeof path, "tests/golden/data/schedulers/%s.safetensors", name);
    sd_st_file *g;
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&g, path, &err), SD_OK, "%s", err.msg);
    sd_json_doc d = {json_deep_copy(json_object_get(c, "config")), (char *)name};
    const char *kname = json_string_value(json_object_get(c, "kind"));
    sd_sched_kind kind = (sd_sched_kind)-1;
    if (kname)
        cr_assert_eq(sd_sched_kind_parse(kname, &kind), 0, "%s", kname);
    float eta = (float)json_number_value(json_object_get(c, "eta"));
    int counts[4] = {4, 10, 25, 30};
    char key[64];
    for (int k = 0; k < 4; k++) {
        snprintf(key, sizeof key, "n%d_timesteps", counts[k]);
        if (!sd_st_find(g, key)) /* LCM's goldens stop at 25 steps */
            continue;
        sd_scheduler s;
        cr_assert_eq(sd_scheduler_init(&s, &d, (int)kind, eta, &err), SD_OK, "%s: %s", name, err.msg);
        cr_assert_eq(sd_scheduler_set_timesteps(&s, counts[k], &err), SD_OK, "%s", err.msg);
        snprintf(key, sizeof key, "n%d_timesteps", counts[k]);
        const sd_st_tensor *ts = tu_tensor(g, key, SD_DTYPE_F32);
        cr_assert_eq((int64_t)s.n, sd_st_numel(ts), "%s %s: %d timesteps", name, key, s.n);
        char what[128];
        snprintf(what, sizeof what, "%s %s", name, key);
        expect_close_arr(s.timesteps, ts, what);
        snprintf(key, sizeof key, "n%d_sigmas", counts[k]);
        if (sd_st_find(g, key)) {
            snprintf(what, sizeof what, "%s %s", name, key);
            expect_close_arr(s.sigmas, tu_tensor(g, key, SD_DTYPE_F32), what);
        }
        snprintf(key, sizeof key, "n%d_init_noise_sigma", counts[k]);
        snprintf(what, sizeof what, "%s %s", name, key);
        expect_close_arr(&s.init_noise_sigma, tu_tensor(g, key, SD_DTYPE_F32), what);
        sd_scheduler_free(&s);
    }
    sd_scheduler s;
    cr_assert_eq(sd_scheduler_init(&s, &d, (int)kind, eta, &err), SD_OK, "%s", err.msg);
    sd_scheduler_set_noise_seed(&s, 2024); /* DPM++ SDE's tree, unless the config names a seed */
    cr_assert_eq(sd_scheduler_set_timesteps(&s, 10, &err), SD_OK);
    const sd_st_tensor *x0t = tu_tensor(g, "initial_sample", SD_DTYPE_F32);
    size_t n = (size_t)sd_st_numel(x0t);
    float *x = malloc(n * sizeof *x), *scaled = malloc(n * sizeof *x);
    memcpy(x, x0t->data, n * sizeof *x);
    sd_torch_gen gen;
    sd_torch_gen_seed(&gen, 2024);
    for (int i = 0; i < s.n; i++) {
        float t = s.timesteps[i], div;
        cr_assert_eq(sd_scheduler_input_divisor(&s, t, &div, &err), SD_OK, "%s", err.msg);
        for (size_t k = 0; k < n; k++)
            scaled[k] = x[k] / div;
        char what[128];
        snprintf(key, sizeof key, "step%d_scaled_model_input", i);
        snprintf(what, sizeof what, "%s %s", name, key);
        expect_close_arr(scaled, tu_tensor(g, key, SD_DTYPE_F32), what);
        snprintf(key, sizeof key, "step%d_model_output", i);
        const sd_st_tensor *mo = tu_tensor(g, key, SD_DTYPE_F32);
        cr_assert_eq(sd_scheduler_step(&s, mo->data, t, x, n, &gen, NULL, &err), SD_OK, "%s: %s", name, err.msg);
        snprintf(key, sizeof key, "step%d_prev_sample", i);
        snprintf(what, sizeof what, "%s %s", name, key);
        expect_close_arr(x, tu_tensor(g, key, SD_DTYPE_F32), what);
    }
    /* img2img: add_noise at the begin index of strength 0.3 and 0.6 */
    const sd_st_tensor *clean = tu_tensor(g, "img2img_clean", SD_DTYPE_F32), *noise = tu_tensor(g, "img2img_noise", SD_DTYPE_F32);
    for (int str = 3; str <= 6; str += 3) {
        sd_scheduler_set_timesteps(&s, 10, &err);
        int first = (10 - (int)(10 * (str / 10.0f))) * sd_scheduler_order(&s);
        sd_scheduler_set_begin_index(&s, first);
        cr_assert_eq(sd_scheduler_add_noise(&s, clean->data, noise->data, s.timesteps[first], x, n, &err), SD_OK, "%s",
                     err.msg);
        char what[128];
        snprintf(key, sizeof key, "img2img_%d_noisy", str);
        snprintf(what, sizeof what, "%s %s", name, key);
        expect_close_arr(x, tu_tensor(g, key, SD_DTYPE_F32), what);
    }
    free(x);
    free(scaled);
    sd_scheduler_free(&s);
    json_decref(d.root);
    sd_st_close(g);
}

Test(scheduler_golden, every_sampler_and_config_against_diffusers_0_42)
{
    json_error_t je;
    json_t *cases = json_load_file("tests/golden/data/schedulers/cases.json", 0, &je);
    cr_assert(cases, "%s", je.text);
    const char *name;
    json_t *c;
    int n = 0;
    json_object_foreach(cases, name, c) {
        run_case(name, c);
        n++;
    }
    cr_assert_geq(n, 25);
    json_decref(cases);
}

/* every key a class reads is followed or refused naming it */
Test(scheduler_golden, unsupported_config_values_are_refused_naming_the_key)
{
    static const char *const bad[][2] = {
        {"use_exponential_sigmas", "true"},     {"prediction_type", "\"sample\""},
        {"interpolation_type", "\"log_linear\""}, {"timestep_spacing", "\"uniform\""},
        {"beta_schedule", "\"squaredcos_cap_v2\""}, {"timestep_type", "\"continuous\""},
    };
    char *p = tu_data_path("sdxl-tiny/scheduler/scheduler_config.json");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sd_json_doc d;
        sd_error err = {0};
        cr_assert_eq(sd_json_load(&d, p, &err), SD_OK);
        json_object_set_new(d.root, bad[i][0], json_loads(bad[i][1], JSON_DECODE_ANY, NULL));
        sd_scheduler s;
        cr_assert_neq(sd_scheduler_init(&s, &d, -1, 0.0f, &err), SD_OK, "%s accepted", bad[i][0]);
        cr_assert(strstr(err.msg, bad[i][0]), "'%s' does not name %s", err.msg, bad[i][0]);
        sd_json_free(&d);
    }
    /* DPM++ keys, checked when the sampler picked is DPM++ */
    sd_json_doc d;
    sd_error err = {0};
    cr_assert_eq(sd_json_load(&d, p, &err), SD_OK);
    json_object_set_new(d.root, "use_lu_lambdas", json_true());
    sd_scheduler s;
    cr_assert_eq(sd_scheduler_init(&s, &d, SD_SCHED_KIND_EULER, 0.0f, &err), SD_OK, "Euler does not read it: %s", err.msg);
    cr_assert_neq(sd_scheduler_init(&s, &d, SD_SCHED_KIND_DPMPP_2M, 0.0f, &err), SD_OK);
    cr_assert(strstr(err.msg, "use_lu_lambdas"), "%s", err.msg);
    /* eta is DDIM's */
    cr_assert_neq(sd_scheduler_init(&s, &d, SD_SCHED_KIND_EULER, 0.5f, &err), SD_OK);
    cr_assert(strstr(err.msg, "--eta"), "%s", err.msg);
    sd_json_free(&d);
    free(p);
}

/* DPM++ SDE's noise source on its own (brownian.safetensors): numpy's
 * SeedSequence words exactly, and torchsde's BrownianInterval queried both
 * ways, across splits, repeated, clamped at the ends and empty; float32
 * arithmetic in torch's order, so within 1e-6 of each value */
Test(scheduler_golden, brownian_tree_equals_torchsde)
{
    sd_st_file *g;
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&g, "tests/golden/data/schedulers/brownian.safetensors", &err), SD_OK, "%s", err.msg);
    const int64_t *ent = tu_tensor(g, "seedseq_entropy", SD_DTYPE_I64)->data;
    const uint64_t entropies[5] = {0, 5, 2024, (1ull << 32) + 7, UINT64_MAX};
    const uint64_t keys[5][2] = {{0, 0}, {0, 0}, {1, 1}, {5, 3}, {(1ull << 33) + 1, 34}};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq((uint64_t)ent[i], entropies[i] & 0x7fffffffffffffffull);
        for (int j = 0; j < 5; j++) {
            char key[32];
            snprintf(key, sizeof key, "seedseq_%d_%d", i, j);
            const int64_t *want = tu_tensor(g, key, SD_DTYPE_I64)->data;
            uint32_t got[4];
            sd_numpy_seed_sequence(entropies[i], keys[j], j ? 2 : 0, 24, got, 4);
            for (int w = 0; w < 4; w++)
                cr_expect_eq((int64_t)got[w], want[w], "%s word %d: %u, numpy %lld", key, w, got[w], (long long)want[w]);
        }
    }
    sd_brownian_tree *tree;
    cr_assert_eq(sd_brownian_tree_create(&tree, (double)0.0291675f, (double)14.614642f, 12345, 24, 0, 0, &err), SD_OK,
                 "%s", err.msg);
    const sd_st_tensor *qt = tu_tensor(g, "tree_queries", SD_DTYPE_F64);
    const double *q = qt->data;
    int nq = (int)(sd_st_numel(qt) / 2);
    for (int i = 0; i < nq; i++) {
        float w[24];
        cr_assert_eq(sd_brownian_tree_increment(tree, q[2 * i], q[2 * i + 1], w, &err), SD_OK, "%s", err.msg);
        char key[32];
        snprintf(key, sizeof key, "tree_%d", i);
        const float *want = tu_tensor(g, key, SD_DTYPE_F32)->data;
        for (int k = 0; k < 24; k++)
            cr_expect(fabsf(w[k] - want[k]) <= 1e-6f * fmaxf(1.0f, fabsf(want[k])),
                      "%s [%g, %g] [%d]: %.9g, torchsde %.9g", key, q[2 * i], q[2 * i + 1], k, w[k], want[k]);
    }
    sd_brownian_tree_free(tree);
    sd_st_close(g);
}
