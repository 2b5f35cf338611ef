/* test_model_folder.c - diffusers folders: components, variants, shards and
 * the errors for what is missing, null or unknown. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/model_folder.h"
#include "tests/test_util.h"

static void write_text(const char *dir, const char *rel, const char *text)
{
    char *p = sd_path_join(dir, rel);
    tu_write(p, text, strlen(text));
    free(p);
}

static void mkdir_in(const char *dir, const char *rel)
{
    char *p = sd_path_join(dir, rel);
    sd_error err;
    cr_assert_eq(sd_mkdirs(p, &err), SD_OK);
    free(p);
}

Test(model_folder, opens_tiny_base)
{
    char *dir = tu_data_path("sdxl-tiny");
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    cr_assert_str_eq(m.pipeline_class, "StableDiffusionXLPipeline");
    cr_assert_eq(m.force_zeros_for_empty_prompt, 1);
    const sd_component *c;
    cr_assert_eq(sd_model_require(&m, "unet", &c, &err), SD_OK);
    cr_assert_str_eq(c->class_name, "UNet2DConditionModel");

    sd_weights w;
    cr_assert_eq(sd_weights_open(&w, c, NULL, &err), SD_OK, "%s", err.msg);
    cr_assert(strstr(w.description, "diffusion_pytorch_model.safetensors"), "default picked %s", w.description);
    cr_assert_eq(sd_weights_find(&w, "conv_in.weight")->dtype, SD_DTYPE_F32);
    sd_weights_close(&w);
    cr_assert_eq(sd_weights_open(&w, c, "fp16", &err), SD_OK, "%s", err.msg);
    cr_assert(strstr(w.description, "diffusion_pytorch_model.fp16.safetensors"), "%s", w.description);
    cr_assert_eq(sd_weights_find(&w, "conv_in.weight")->dtype, SD_DTYPE_F16);
    sd_weights_close(&w);
    cr_assert_neq(sd_weights_open(&w, c, "bf16", &err), SD_OK, "a missing variant must be an error");
    cr_assert(strstr(err.msg, "unet") && strstr(err.msg, "bf16"), "%s", err.msg);

    sd_json_doc cfg;
    cr_assert_eq(sd_component_config(c, &cfg, &err), SD_OK, "%s", err.msg);
    long long v;
    cr_assert_eq(sd_json_int(&cfg, "no_such_key", &v, &err), SD_ERR_MISSING);
    cr_assert(strstr(err.msg, "no_such_key") && strstr(err.msg, "unet/config.json"), "%s", err.msg);
    sd_json_free(&cfg);
    sd_model_close(&m);
    free(dir);
}

Test(model_folder, refiner_has_null_text_encoder)
{
    char *dir = tu_data_path("sdxl-tiny-refiner");
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    const sd_component *c;
    cr_assert_eq(sd_model_require(&m, "text_encoder", &c, &err), SD_ERR_MISSING);
    cr_assert(strstr(err.msg, "'text_encoder' is null"), "%s", err.msg);
    cr_assert_eq(sd_model_require(&m, "text_encoder_2", &c, &err), SD_OK);
    cr_assert_eq(m.requires_aesthetics_score, 1);
    cr_assert_eq(m.force_zeros_for_empty_prompt, 0);
    sd_model_close(&m);
    free(dir);
}

Test(model_folder, unknown_class_and_missing_folder)
{
    char *dir = tu_tmpdir();
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_ERR_MISSING, "no model_index.json accepted");
    cr_assert(strstr(err.msg, "model_index.json"), "%s", err.msg);
    write_text(dir, "model_index.json", "{\"unet\": [\"diffusers\", \"FooNet\"]}");
    mkdir_in(dir, "unet");
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "'unet'") && strstr(err.msg, "FooNet"), "%s", err.msg);
    write_text(dir, "model_index.json", "{\"vae\": [\"diffusers\", \"AutoencoderKL\"]}");
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_ERR_MISSING);
    cr_assert(strstr(err.msg, "'vae'"), "%s", err.msg);
    write_text(dir, "model_index.json", "{\"vae\": [\"diffusers\"]}");
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "'vae'"), "%s", err.msg);
    tu_rmrf(dir);
    free(dir);
}

Test(model_folder, default_falls_back_to_fp16_only)
{
    char *dir = tu_tmpdir();
    char *rel = tu_data_path("sdxl-tiny/vae/diffusion_pytorch_model.fp16.safetensors");
    char *src = realpath(rel, NULL);
    free(rel);
    char *dst = sd_path_join(dir, "diffusion_pytorch_model.fp16.safetensors");
    cr_assert_eq(symlink(src, dst), 0);
    sd_weights w;
    sd_error err = {0};
    cr_assert_eq(sd_weights_open_dir(&w, dir, "diffusion_pytorch_model", NULL, &err), SD_OK, "%s", err.msg);
    cr_assert(strstr(w.description, ".fp16."), "%s", w.description);
    sd_weights_close(&w);
    cr_assert_neq(sd_weights_open_dir(&w, dir, "model", NULL, &err), SD_OK);
    cr_assert(strstr(err.msg, "no weights found"), "%s", err.msg);
    free(src);
    free(dst);
    tu_rmrf(dir);
    free(dir);
}

Test(model_folder, pickle_weights_are_refused_by_name)
{
    const char *names[2] = {"diffusion_pytorch_model.bin", "pytorch_model.bin"};
    const char *bases[2] = {"diffusion_pytorch_model", "model"};
    for (int k = 0; k < 2; k++) {
        char *dir = tu_tmpdir(), *p = sd_path_join(dir, names[k]);
        tu_write(p, "PK", 2);
        sd_weights w;
        sd_error err = {0};
        cr_assert_eq(sd_weights_open_dir(&w, dir, bases[k], NULL, &err), SD_ERR_UNSUPPORTED);
        cr_assert(strstr(err.msg, names[k]) && strstr(err.msg, "safetensors"), "%s", err.msg);
        free(p);
        tu_rmrf(dir);
        free(dir);
    }
}

Test(model_folder, an_error_context_is_named_once)
{
    sd_error err = {0};
    sd_fail(&err, SD_ERR_MISSING, "x: not found");
    sd_error_prefix(&err, err.code, "component '%s': ", "unet");
    sd_error_prefix(&err, err.code, "component '%s': ", "unet");
    cr_assert_str_eq(err.msg, "component 'unet': x: not found");
    sd_error_prefix(&err, err.code, "model: ");
    cr_assert_str_eq(err.msg, "model: component 'unet': x: not found");
}

static void write_shard(const char *dir, const char *file, const char *const *names, int n)
{
    sd_st_writer *wr = sd_st_writer_new();
    sd_error err = {0};
    float data[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    for (int i = 0; i < n; i++)
        cr_assert_eq(sd_st_writer_add(wr, names[i], SD_DTYPE_F32, 1, shape, data, &err), SD_OK);
    char *p = sd_path_join(dir, file);
    cr_assert_eq(sd_st_writer_save(wr, p, &err), SD_OK, "%s", err.msg);
    free(p);
    sd_st_writer_free(wr);
}

Test(model_folder, sharded_weights_through_index)
{
    char *dir = tu_tmpdir();
    const char *s1[] = {"a.weight", "b.weight"}, *s2[] = {"c.weight"};
    write_shard(dir, "model.fp16-00001-of-00002.safetensors", s1, 2);
    write_shard(dir, "model.fp16-00002-of-00002.safetensors", s2, 1);
    write_text(dir, "model.safetensors.index.fp16.json",
               "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {"
               "\"a.weight\": \"model.fp16-00001-of-00002.safetensors\","
               "\"b.weight\": \"model.fp16-00001-of-00002.safetensors\","
               "\"c.weight\": \"model.fp16-00002-of-00002.safetensors\"}}");
    sd_weights w;
    sd_error err = {0};
    cr_assert_eq(sd_weights_open_dir(&w, dir, "model", "fp16", &err), SD_OK, "%s", err.msg);
    cr_assert_eq(w.nfiles, 2);
    cr_assert_eq(w.n, 3u);
    cr_assert_not_null(sd_weights_find(&w, "c.weight"));
    cr_assert_null(sd_weights_find(&w, "d.weight"));
    sd_weights_close(&w);
    /* the default (no variant) also finds the fp16 shards */
    cr_assert_eq(sd_weights_open_dir(&w, dir, "model", NULL, &err), SD_OK, "%s", err.msg);
    sd_weights_close(&w);

    write_text(dir, "model.safetensors.index.fp16.json",
               "{\"weight_map\": {\"c.weight\": \"model.fp16-00001-of-00002.safetensors\"}}");
    cr_assert_eq(sd_weights_open_dir(&w, dir, "model", "fp16", &err), SD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "'c.weight'"), "%s", err.msg);
    write_text(dir, "model.safetensors.index.fp16.json", "{\"weight_map\": {\"c.weight\": \"../x.safetensors\"}}");
    cr_assert_eq(sd_weights_open_dir(&w, dir, "model", "fp16", &err), SD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "outside the folder"), "%s", err.msg);
    tu_rmrf(dir);
    free(dir);
}
