/* test_tokenizer_golden.c - both SDXL tokenizers against the ids produced by
 * transformers' CLIPTokenizer (golden/tokenizer.safetensors): exact match. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "tests/test_util.h"
#include "worker/engine/text/clip_tokenizer.h"

static void check_tokenizer_dir(const char *dir, const char *golden_key, int check_lengths)
{
    json_t *c = tu_manifest_case("tokenizer");
    json_t *prompts = json_object_get(c, "prompts");
    sd_st_file *g = tu_golden("tokenizer.safetensors");
    const sd_st_tensor *ids = tu_tensor(g, golden_key, SD_DTYPE_I64);
    const sd_st_tensor *lens = tu_tensor(g, "untruncated_length_tokenizer", SD_DTYPE_I64);
    cr_assert_eq(ids->shape[0], (int64_t)json_array_size(prompts));
    sd_clip_tokenizer *t;
    sd_error err = {0};
    cr_assert_eq(sd_clip_tokenizer_load(&t, dir, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_clip_tokenizer_max_length(t), 77);
    int64_t *exp = sd_st_copy_i64(ids), *lens_v = sd_st_copy_i64(lens);
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        const char *text = json_string_value(json_array_get(prompts, i));
        int64_t got[77];
        int untrunc = 0;
        cr_assert_eq(sd_clip_tokenize(t, text, got, &untrunc, &err), SD_OK, "%s", err.msg);
        for (int k = 0; k < 77; k++)
            cr_assert_eq(got[k], exp[i * 77 + k], "prompt %zu (%s): id %d is %lld, expected %lld", i, text, k,
                         (long long)got[k], (long long)exp[i * 77 + k]);
        if (check_lengths)
            cr_assert_eq(untrunc, lens_v[i], "prompt %zu untruncated length", i);
    }
    sd_clip_tokenizer_free(t);
    free(exp);
    free(lens_v);
    sd_st_close(g);
    json_decref(c);
}

static void check_tokenizer(const char *folder, const char *golden_key, int check_lengths)
{
    char *dir = tu_data_path(folder);
    check_tokenizer_dir(dir, golden_key, check_lengths);
    free(dir);
}

/* The folder as transformers 5 saves it: tokenizer.json (vocabulary and
 * merges under "model") beside the two small config files, no vocab.json or
 * merges.txt. Merges as "a b" strings or as [a, b] pairs, the two spellings
 * tokenizers has used. */
static char *as_tokenizer_json(const char *folder, int pairs)
{
    char *src = tu_data_path(folder), *dst = tu_tmpdir(), path[4096];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/vocab.json", src);
    json_t *vocab = json_load_file(path, 0, &jerr), *merges = json_array();
    cr_assert(vocab, "%s", jerr.text);
    snprintf(path, sizeof path, "%s/merges.txt", src);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *sp = strchr(line, ' ');
        if (!strncmp(line, "#version", 8) || !sp)
            continue;
        if (pairs) {
            *sp = 0;
            json_array_append_new(merges, json_pack("[ss]", line, sp + 1));
        } else {
            json_array_append_new(merges, json_string(line));
        }
    }
    fclose(f);
    json_t *doc = json_pack("{s:{s:s,s:o,s:o}}", "model", "type", "BPE", "vocab", vocab, "merges", merges);
    snprintf(path, sizeof path, "%s/tokenizer.json", dst);
    cr_assert_eq(json_dump_file(doc, path, 0), 0);
    json_decref(doc);
    tu_copy(src, dst, "special_tokens_map.json");
    tu_copy(src, dst, "tokenizer_config.json");
    free(src);
    return dst;
}

Test(tokenizer_golden, tokenizer_json_alone_gives_the_same_ids)
{
    char *d1 = as_tokenizer_json("sdxl-tiny/tokenizer", 0), *d2 = as_tokenizer_json("sdxl-tiny/tokenizer_2", 1);
    check_tokenizer_dir(d1, "ids_tokenizer", 1);
    check_tokenizer_dir(d2, "ids_tokenizer_2", 0);
    tu_rmrf(d1);
    tu_rmrf(d2);
    free(d1);
    free(d2);
}

Test(tokenizer_golden, tokenizer_1_matches_transformers)
{
    check_tokenizer("sdxl-tiny/tokenizer", "ids_tokenizer", 1);
}

Test(tokenizer_golden, tokenizer_2_matches_transformers)
{
    check_tokenizer("sdxl-tiny/tokenizer_2", "ids_tokenizer_2", 0);
}

Test(tokenizer_golden, rejects_invalid_utf8)
{
    char *dir = tu_data_path("sdxl-tiny/tokenizer");
    sd_clip_tokenizer *t;
    sd_error err = {0};
    cr_assert_eq(sd_clip_tokenizer_load(&t, dir, &err), SD_OK, "%s", err.msg);
    int64_t ids[77];
    const char *bad[] = {"abc\xff", "\xc3", "x\xed\xa0\x80y" /* surrogate */, "\xc0\xaf" /* overlong */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(sd_clip_tokenize(t, bad[i], ids, NULL, &err), SD_ERR_INVALID, "case %zu accepted", i);
        cr_assert(strstr(err.msg, "UTF-8"), "%s", err.msg);
    }
    sd_clip_tokenizer_free(t);
    free(dir);
}

Test(tokenizer_golden, truncates_to_75_tokens_plus_specials)
{
    char *dir = tu_data_path("sdxl-tiny/tokenizer_2");
    sd_clip_tokenizer *t;
    sd_error err = {0};
    cr_assert_eq(sd_clip_tokenizer_load(&t, dir, &err), SD_OK, "%s", err.msg);
    char text[2000] = "";
    for (int i = 0; i < 100; i++)
        strcat(text, "cat ");
    int64_t ids[77];
    int n;
    cr_assert_eq(sd_clip_tokenize(t, text, ids, &n, &err), SD_OK);
    cr_assert_eq(n, 102);
    cr_assert_eq(ids[0], sd_clip_tokenizer_bos_id(t));
    cr_assert_eq(ids[76], sd_clip_tokenizer_eos_id(t));
    cr_assert_eq(ids[75], ids[1], "body is the repeated word");
    cr_assert_eq(sd_clip_tokenizer_pad_id(t), 0, "tokenizer_2 pads with '!' = 0");
    sd_clip_tokenizer_free(t);
    free(dir);
}

Test(tokenizer_golden, missing_folder_is_an_error)
{
    sd_clip_tokenizer *t;
    sd_error err = {0};
    cr_assert_eq(sd_clip_tokenizer_load(&t, "/nonexistent/tok", &err), SD_ERR_MISSING);
    cr_assert(strstr(err.msg, "/nonexistent/tok"), "%s", err.msg);
}

Test(tokenizer_golden, a_folder_without_vocabulary_names_what_it_looked_for)
{
    char *d = tu_tmpdir(), path[4096];
    sd_clip_tokenizer *t;
    sd_error err = {0};
    cr_assert_eq(sd_clip_tokenizer_load(&t, d, &err), SD_ERR_MISSING);
    cr_assert(strstr(err.msg, "vocab.json") && strstr(err.msg, "tokenizer.json"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/tokenizer.json", d);
    tu_write(path, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", 45);
    cr_assert_eq(sd_clip_tokenizer_load(&t, d, &err), SD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "not a BPE tokenizer"), "%s", err.msg);
    tu_rmrf(d);
    free(d);
}
