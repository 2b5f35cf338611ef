/* test_gen_params.c - the generation-parameter table: what a job item, a
 * task or a flag may carry, and the refusals naming the key or flag. The
 * expected values and ranges are diffusers' defaults and the limits the
 * table documents (1..1000 steps, multiples of 8 up to 8192, ...). */
#include <criterion/criterion.h>
#include <string.h>

#include "common/gen_params.h"
#include "common/torch_rng.h"
#include "common/image_io.h"

static sd_status from_text(const char *json, sd_gen_params *g, sd_error *err)
{
    json_error_t je;
    json_t *o = json_loads(json, JSON_ALLOW_NUL, &je); /* as a task decoded from MessagePack may hold */
    cr_assert_not_null(o, "%s: %s", json, je.text);
    sd_status st = sd_gen_params_from_json(g, o, err);
    /* text fields point into o: tests read only numbers after this */
    json_decref(o);
    return st;
}

static void expect_refused(const char *json, const char *needle)
{
    sd_gen_params g;
    sd_error err = {0};
    cr_assert_neq(from_text(json, &g, &err), SD_OK, "%s was accepted", json);
    cr_assert(strstr(err.msg, needle), "%s: message '%s' lacks '%s'", json, err.msg, needle);
}

Test(gen_params, defaults_are_diffusers)
{
    sd_gen_params g;
    sd_gen_params_init(&g);
    cr_assert_eq(g.steps, 50);
    cr_assert_float_eq(g.guidance, 5.0f, 0);
    cr_assert_float_eq(g.high_noise_frac, 0.8f, 0);
    cr_assert_float_eq(g.aesthetic_score, 6.0f, 0);
    cr_assert_float_eq(g.negative_aesthetic_score, 2.5f, 0);
    cr_assert_eq(g.scheduler, -1);
}

Test(gen_params, an_item_is_decoded_field_by_field)
{
    sd_gen_params g;
    sd_error err = {0};
    cr_assert_eq(from_text("{\"prompt\":\"a\",\"seed\":7,\"steps\":12,\"guidance\":7.5,\"width\":512,\"height\":768,"
                           "\"scheduler\":\"euler_a\",\"original_size\":[640,480],\"crop_top_left\":[3,4],"
                           "\"format\":\"webp\"}",
                           &g, &err),
                 SD_OK, "%s", err.msg);
    cr_assert_eq(g.seed, 7);
    cr_assert_eq(g.steps, 12);
    cr_assert_float_eq(g.guidance, 7.5f, 0);
    cr_assert_eq(g.width, 512);
    cr_assert_eq(g.height, 768);
    cr_assert_eq(g.scheduler, SD_SCHED_KIND_EULER_ANCESTRAL);
    cr_assert_eq(g.original_w, 640);
    cr_assert_eq(g.original_h, 480);
    cr_assert_eq(g.crop_top, 3);
    cr_assert_eq(g.crop_left, 4);
    cr_assert_eq(g.format, SD_IMAGE_FORMAT_WEBP);
}

Test(gen_params, unknown_keys_wrong_types_and_ranges_are_refused_naming_the_key)
{
    expect_refused("{\"prompt\":\"a\",\"stpes\":4}", "'stpes'");
    expect_refused("{\"prompt\":\"a\",\"seed\":\"abc\"}", "'seed'");
    expect_refused("{\"prompt\":\"a\",\"seed\":-5}", "'seed'");
    expect_refused("{\"prompt\":\"a\",\"steps\":\"ten\"}", "'steps'");
    expect_refused("{\"prompt\":\"a\",\"steps\":0}", "'steps'");
    expect_refused("{\"prompt\":\"a\",\"steps\":1001}", "'steps'");
    expect_refused("{\"prompt\":\"a\",\"width\":65}", "'width'");
    expect_refused("{\"prompt\":\"a\",\"guidance\":101}", "'guidance'");
    expect_refused("{\"prompt\":\"a\",\"guidance_rescale\":1.5}", "'guidance_rescale'");
    expect_refused("{\"prompt\":\"a\",\"high_noise_frac\":1}", "'high_noise_frac'");
    expect_refused("{\"prompt\":\"a\",\"scheduler\":\"foo\"}", "'scheduler'");
    expect_refused("{\"prompt\":\"a\",\"original_size\":[640]}", "'original_size'");
    expect_refused("{\"prompt\":\"a\",\"crop_top_left\":[-1,0]}", "'crop_top_left'");
    expect_refused("{\"prompt\":\"a\\u0000b\"}", "NUL");
    expect_refused("{\"negative_prompt\":\"a\"}", "'prompt'");
    /* img2img strength is a generate flag, not a job key */
    expect_refused("{\"prompt\":\"a\",\"strength\":0.5}", "'strength'");
}

Test(gen_params, flags_parse_through_the_same_checks)
{
    sd_gen_params g;
    sd_gen_params_init(&g);
    sd_error err = {0};
    const sd_gen_params_spec *s = sd_gen_params_by_flag("--target-size");
    cr_assert_not_null(s);
    cr_assert_eq(sd_gen_params_set_flag(&g, s, "1024x768", &err), SD_OK, "%s", err.msg);
    cr_assert_eq(g.target_w, 1024);
    cr_assert_eq(g.target_h, 768);
    cr_assert_neq(sd_gen_params_set_flag(&g, s, "1024x768junk", &err), SD_OK);
    cr_assert(strstr(err.msg, "--target-size"), "%s", err.msg);
    s = sd_gen_params_by_flag("--guidance");
    cr_assert_neq(sd_gen_params_set_flag(&g, s, "nan", &err), SD_OK);
    cr_assert(strstr(err.msg, "--guidance"), "%s", err.msg);
    json_t *v;
    cr_assert_eq(sd_gen_params_flag_to_json(sd_gen_params_by_flag("--steps"), "30", &v, &err), SD_OK);
    cr_assert(json_is_integer(v) && json_integer_value(v) == 30);
    json_decref(v);
    cr_assert_neq(sd_gen_params_flag_to_json(sd_gen_params_by_flag("--steps"), "0", &v, &err), SD_OK);
}

Test(gen_params, every_row_is_reachable_by_flag_and_key_and_round_trips)
{
    sd_gen_params g;
    sd_gen_params_init(&g);
    g.prompt = "p";
    g.scheduler = SD_SCHED_KIND_DDIM;
    g.width = g.height = 64;
    g.original_w = g.original_h = g.target_w = g.target_h = 64;
    g.neg_original_w = g.neg_original_h = g.neg_target_w = g.neg_target_h = 48;
    g.seed = 18446744073709551615ull; /* past 2^63 - 1: a string in JSON */
    for (int i = 0; i < sd_gen_params_count; i++) {
        const sd_gen_params_spec *s = &sd_gen_params_table[i];
        cr_assert_eq(sd_gen_params_by_flag(s->flag), s);
        cr_assert_eq(sd_gen_params_by_key(s->key), s);
        cr_assert(s->help && s->help[0] && s->deflt && s->metavar, "row %s lacks help", s->key);
        if (s->type == SD_GEN_PARAMS_TYPE_TEXT)
            continue;
        json_t *v = sd_gen_params_to_json(&g, s);
        sd_gen_params h;
        sd_gen_params_init(&h);
        sd_error err = {0};
        cr_assert_eq(sd_gen_params_set_json(&h, s, v, s->key, &err), SD_OK, "%s: %s", s->key, err.msg);
        json_t *w = sd_gen_params_to_json(&h, s);
        cr_assert(json_equal(v, w), "%s does not round-trip", s->key);
        json_decref(v);
        json_decref(w);
    }
}

Test(gen_params, seeds_take_all_64_bits_as_torch_does)
{
    sd_gen_params g;
    sd_gen_params_init(&g);
    sd_error err = {0};
    const sd_gen_params_spec *s = sd_gen_params_by_flag("--seed");
    cr_assert_eq(sd_gen_params_set_flag(&g, s, "18446744073709551615", &err), SD_OK, "%s", err.msg);
    cr_assert_eq(g.seed, 18446744073709551615ull);
    cr_assert_neq(sd_gen_params_set_flag(&g, s, "18446744073709551616", &err), SD_OK, "2^64 accepted");
    cr_assert_neq(sd_gen_params_set_flag(&g, s, "-1", &err), SD_OK);
    json_t *v = sd_gen_params_to_json(&g, s);
    cr_assert(json_is_string(v) && !strcmp(json_string_value(v), "18446744073709551615"));
    json_decref(v);
    g.seed = 9223372036854775807ull;
    v = sd_gen_params_to_json(&g, s);
    cr_assert(json_is_integer(v), "up to 2^63 - 1 a seed stays a JSON integer");
    json_decref(v);
    json_t *item = json_pack("{s:s, s:s}", "prompt", "p", "seed", "9223372036854775808");
    cr_assert_eq(sd_gen_params_from_json(&g, item, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(g.seed, 9223372036854775808ull);
    json_decref(item);
    /* and the generator takes them as torch does: torch 2.15's
     * torch.randn(20, generator=torch.Generator().manual_seed(2**64 - 1))[:3] */
    sd_torch_gen gen;
    sd_torch_gen_seed(&gen, 18446744073709551615ull);
    float n[20];
    sd_torch_randn(&gen, n, 20);
    const float want[3] = {-2.664297580718994f, -1.0910485982894897f, 0.45144742727279663f};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(n[i], want[i], "randn[%d] %.9g, torch %.9g", i, (double)n[i], (double)want[i]);
}
