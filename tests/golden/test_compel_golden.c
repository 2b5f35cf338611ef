/* test_compel_golden.c - `--long-prompts` against compel 2.5 (PyPI), what
 * diffusers users pass long and weighted SDXL prompts through
 * (tests/golden/data/compel, written by make_compel_goldens.py):
 *   - the prompt syntax: compel's own parse of hand-picked and 600 random
 *     prompts, fragment for fragment (texts equal, weights equal to 1e-12:
 *     both sides multiply the same doubles in the same order);
 *   - CompelForSDXL's embeddings on sdxl-tiny: chunks of 75 tokens split at
 *     sentence, phrase or word ends, up- and down-weighting (masked
 *     attention), prompt_2, negatives longer than the prompt;
 *   - one image generated from compel's embeddings by diffusers' pipeline.
 * Tolerances: embeddings within relative L2 1e-5 (float32 on a CPU both
 * sides; summation order differs), latents 1e-4 and the 8-bit image within
 * 1 level, as the other pipeline goldens. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/model_folder.h"
#include "tests/test_util.h"
#include "worker/engine/pipeline/pipeline.h"
#include "worker/engine/text/prompt_weights.h"

#define DATA "tests/golden/data/compel/"

static json_t *load(const char *file)
{
    json_error_t je;
    json_t *j = json_load_file(file, 0, &je);
    cr_assert(j, "%s: %s", file, je.text);
    return j;
}

Test(compel, prompt_syntax_parses_as_compel_parses_it)
{
    json_t *all = load(DATA "parse_cases.json");
    size_t i;
    json_t *c;
    int checked = 0;
    json_array_foreach(all, i, c)
    {
        const char *prompt = json_string_value(json_object_get(c, "prompt"));
        json_t *want = json_object_get(c, "fragments");
        sd_prompt_fragments got;
        sd_error err = {0};
        sd_status st = sd_prompt_parse_compel(prompt, &got, &err);
        if (!want) {
            cr_expect_neq(st, SD_OK, "'%s': compel refuses it, we parsed it", prompt);
            if (st == SD_OK)
                sd_prompt_fragments_free(&got);
            continue;
        }
        cr_expect_eq(st, SD_OK, "'%s': %s", prompt, err.msg);
        if (st != SD_OK)
            continue;
        int n = (int)json_array_size(want), same = got.n == n;
        for (int k = 0; same && k < n; k++) {
            json_t *f = json_array_get(want, (size_t)k);
            double w = json_number_value(json_array_get(f, 1));
            same = !strcmp(got.items[k].text, json_string_value(json_array_get(f, 0))) &&
                   fabs(got.items[k].weight - w) <= 1e-12 * fabs(w);
        }
        if (!same) {
            char have[1024] = "", *o = have;
            for (int k = 0; k < got.n && o < have + sizeof have - 64; k++)
                o += snprintf(o, (size_t)(have + sizeof have - o), "['%s', %.17g] ", got.items[k].text,
                              got.items[k].weight);
            char *js = json_dumps(want, JSON_COMPACT);
            cr_expect(same, "'%s': compel gives %s, we give %s", prompt, js, have);
            free(js);
        }
        checked++;
        sd_prompt_fragments_free(&got);
    }
    cr_expect_gt(checked, 600, "only %d cases read", checked);
    json_decref(all);
}

Test(compel, operators_beyond_weights_are_refused_by_name)
{
    const char *bad[] = {"(a cat, a dog).blend(0.5, 0.5)", "(a cat, a dog).and()", "a cat.swap(dog)",
                         "withLora(foo, 0.5) a cat"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sd_prompt_fragments f;
        sd_error err = {0};
        cr_expect_eq(sd_prompt_parse_compel(bad[i], &f, &err), SD_ERR_UNSUPPORTED, "'%s' was accepted", bad[i]);
        cr_expect(strstr(err.msg, "not supported"), "'%s': %s", bad[i], err.msg);
    }
}

/* sdxl-tiny's pipeline, loaded once for the embedding cases */
static sd_pipeline pipe;
static sd_backend *pipe_be;

static void load_tiny(void)
{
    sd_error err = {0};
    char *tiny = tu_data_path("sdxl-tiny");
    sd_model_spec ms = {.model = tiny};
    pipe_be = tu_cpu();
    cr_assert_eq(sd_pipeline_load(&pipe, pipe_be, NULL, &ms, SD_STAGE_ALL, &err), SD_OK, "%s", err.msg);
    free(tiny);
}

static void free_tiny(void)
{
    sd_pipeline_free(&pipe);
    sd_backend_free(pipe_be);
}

static void params_of(sd_gen_params *g, json_t *c)
{
    tu_params_from_case(g, c);
    g->long_prompts = 1;
}

/* row `row` of [rows, n] against golden `key` ([1, ...] of n), or zeros
 * when the golden has no such tensor (diffusers' zeroed negative) */
static void expect_row(const float *rows, int row, size_t n, const sd_st_file *gf, const char *key, const char *what)
{
    if (!sd_st_find(gf, key)) {
        double worst = 0;
        for (size_t i = 0; i < n; i++)
            worst = fmax(worst, fabs(rows[(size_t)row * n + i]));
        cr_expect_eq(worst, 0.0, "%s: %s should be zeros (force_zeros_for_empty_prompt)", what, key);
        return;
    }
    tu_expect_close_host(rows + (size_t)row * n, n, gf, key, 1e-5);
}

Test(compel, embeddings_equal_compel_for_sdxl, .init = load_tiny, .fini = free_tiny, .timeout = 300)
{
    json_t *all = load(DATA "cases.json");
    sd_st_file *gf;
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&gf, DATA "goldens.safetensors", &err), SD_OK, "%s", err.msg);
    const char *name;
    json_t *c;
    int n = 0;
    json_object_foreach(all, name, c)
    {
        if (!strcmp(name, "generated"))
            continue;
        sd_gen_params g;
        params_of(&g, c);
        sd_text_result t;
        cr_assert_eq(sd_stage_text(&pipe, &g, &t, &err), SD_OK, "%s: %s", name, err.msg);
        cr_expect_eq(t.S, (int)json_integer_value(json_object_get(c, "tokens")), "%s: %d tokens", name, t.S);
        char key[96];
        size_t ne = (size_t)t.S * (size_t)t.D;
        snprintf(key, sizeof key, "%s.embeds", name);
        expect_row(t.embeds, 1, ne, gf, key, name);
        snprintf(key, sizeof key, "%s.negative_embeds", name);
        expect_row(t.embeds, 0, ne, gf, key, name);
        snprintf(key, sizeof key, "%s.pooled", name);
        expect_row(t.pooled, 1, (size_t)t.P, gf, key, name);
        snprintf(key, sizeof key, "%s.negative_pooled", name);
        expect_row(t.pooled, 0, (size_t)t.P, gf, key, name);
        sd_text_result_free(&t);
        n++;
    }
    cr_expect_geq(n, 7);
    sd_st_close(gf);
    json_decref(all);
}

Test(compel, image_from_compel_embeddings_equals_diffusers, .timeout = 300)
{
    json_t *all = load(DATA "cases.json"), *c = json_object_get(all, "generated");
    cr_assert(c);
    sd_gen_params g;
    params_of(&g, c);
    char *tiny = tu_data_path("sdxl-tiny");
    sd_model_spec ms = {.model = tiny};
    tu_expect_generated(&ms, &g, DATA "goldens.safetensors", "generated");
    free(tiny);
    json_decref(all);
}

/* compel (pyparsing, no packrat) takes 50 s for "((((((((x" and doubles
 * that per level; ours remembers each group's outcome by position, so deep
 * nesting is linear, and past 200 levels it is an error, not a stack crash */
Test(compel, deep_nesting_parses_in_linear_time_and_has_a_limit, .timeout = 10)
{
    char s[512];
    int d = 150;
    memset(s, '(', (size_t)d);
    strcpy(s + d, "x");
    sd_prompt_fragments f;
    sd_error err = {0};
    /* no group ever closes: the whole run is one free word at the top */
    cr_assert_eq(sd_prompt_parse_compel(s, &f, &err), SD_OK, "%s", err.msg);
    cr_expect_eq(f.n, 1);
    cr_expect_str_eq(f.items[0].text, s);
    sd_prompt_fragments_free(&f);
    /* 150 closed levels, weighted at the innermost */
    for (int i = 0; i < d; i++)
        s[d + 1 + i] = ')';
    strcpy(s + 2 * d + 1, "1.5");
    s[d] = 'x';
    cr_assert_eq(sd_prompt_parse_compel(s, &f, &err), SD_OK, "%s", err.msg);
    cr_expect_eq(f.n, 1);
    cr_expect_str_eq(f.items[0].text, "x");
    cr_expect_float_eq(f.items[0].weight, 1.5, 1e-12);
    sd_prompt_fragments_free(&f);
    memset(s, '(', 250);
    strcpy(s + 250, "x");
    cr_expect_eq(sd_prompt_parse_compel(s, &f, &err), SD_ERR_INVALID);
    cr_expect(strstr(err.msg, "nested deeper than 200"), "%s", err.msg);
}
