/* test_random_model.c - `random-model` writes what the real SDXL folders
 * hold: for the sdxl-base and sdxl-refiner presets the config files equal
 * ../shared/testdata/real-sdxl's, and the tensor names and shapes the loader
 * asks for (and the writer writes) equal real-sdxl's keys.json, with the true
 * parameter totals. The tiny preset is written in full and loads. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/model_folder.h"
#include "tests/test_util.h"
#include "worker/engine/text/clip_text.h"
#include "worker/engine/text/clip_tokenizer.h"
#include "worker/engine/weights/random_model.h"
#include "worker/engine/unet/unet.h"
#include "worker/engine/vae/vae.h"

static json_t *load_json(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert_not_null(j, "%s: %s", path, e.text);
    return j;
}

static void compare_config(const char *written_dir, const char *rel, const char *real_rel)
{
    char *a = sd_path_join(written_dir, rel), *b = tu_data_path(real_rel);
    json_t *ja = load_json(a), *jb = load_json(b);
    cr_assert(json_equal(ja, jb), "%s differs from %s", a, b);
    json_decref(ja);
    json_decref(jb);
    free(a);
    free(b);
}

static void compare_params(const sd_model_folder *m, const char *comp, const char *keys_rel,
                           unsigned long long expected_params)
{
    const sd_component *c;
    sd_error err = {0};
    cr_assert_eq(sd_model_require(m, comp, &c, &err), SD_OK, "%s", err.msg);
    sd_param_list list = {0};
    sd_status st = !strcmp(c->class_name, "UNet2DConditionModel") ? sd_unet_list_params(c, &list, &err)
                   : !strcmp(c->class_name, "AutoencoderKL")      ? sd_vae_list_params(c, &list, &err)
                                                                  : sd_clip_text_list_params(c, &list, &err);
    cr_assert_eq(st, SD_OK, "%s", err.msg);
    char *kp = tu_data_path(keys_rel);
    json_t *keys = load_json(kp);
    cr_assert_eq((size_t)list.n, json_object_size(keys), "%s: %d tensors, real SDXL has %zu", comp, list.n,
                 json_object_size(keys));
    for (int i = 0; i < list.n; i++) {
        json_t *k = json_object_get(keys, list.p[i].name);
        cr_assert_not_null(k, "%s: tensor '%s' is not in the real model", comp, list.p[i].name);
        json_t *shape = json_object_get(k, "shape");
        cr_assert_eq(json_array_size(shape), (size_t)list.p[i].ndim, "%s: rank of %s", comp, list.p[i].name);
        for (int d = 0; d < list.p[i].ndim; d++)
            cr_assert_eq(json_integer_value(json_array_get(shape, (size_t)d)), list.p[i].shape[d],
                         "%s: shape of %s, dim %d", comp, list.p[i].name, d);
    }
    cr_assert_eq(sd_param_list_numel(&list), expected_params, "%s: %llu parameters", comp,
                 sd_param_list_numel(&list));
    json_decref(keys);
    free(kp);
    sd_param_list_free(&list);
}

Test(random_model, sdxl_base_matches_the_real_model)
{
    char *dir = tu_tmpdir();
    sd_random_model_opts o = {.preset = "sdxl-base", .out = dir, .dtype = SD_DTYPE_F16, .configs_only = 1, .quiet = 1};
    sd_error err = {0};
    cr_assert_eq(sd_random_model_write(&o, &err), SD_OK, "%s", err.msg);
    compare_config(dir, "model_index.json", "real-sdxl/base/model_index.json");
    compare_config(dir, "unet/config.json", "real-sdxl/base/unet/config.json");
    compare_config(dir, "vae/config.json", "real-sdxl/base/vae/config.json");
    compare_config(dir, "text_encoder/config.json", "real-sdxl/base/text_encoder/config.json");
    compare_config(dir, "text_encoder_2/config.json", "real-sdxl/base/text_encoder_2/config.json");
    compare_config(dir, "scheduler/scheduler_config.json", "real-sdxl/base/scheduler/scheduler_config.json");
    sd_model_folder m;
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    compare_params(&m, "unet", "real-sdxl/base/unet/keys.json", 2567463684ull);
    compare_params(&m, "vae", "real-sdxl/base/vae/keys.json", 83653863ull);
    compare_params(&m, "text_encoder", "real-sdxl/base/text_encoder/keys.json", 123060480ull);
    compare_params(&m, "text_encoder_2", "real-sdxl/base/text_encoder_2/keys.json", 694659840ull);
    sd_model_close(&m);
    tu_rmrf(dir);
    free(dir);
}

Test(random_model, sdxl_refiner_matches_the_real_model)
{
    char *dir = tu_tmpdir();
    sd_random_model_opts o = {.preset = "sdxl-refiner", .out = dir, .dtype = SD_DTYPE_F16, .configs_only = 1,
                              .quiet = 1};
    sd_error err = {0};
    cr_assert_eq(sd_random_model_write(&o, &err), SD_OK, "%s", err.msg);
    compare_config(dir, "model_index.json", "real-sdxl/refiner/model_index.json");
    compare_config(dir, "unet/config.json", "real-sdxl/refiner/unet/config.json");
    compare_config(dir, "scheduler/scheduler_config.json", "real-sdxl/refiner/scheduler/scheduler_config.json");
    sd_model_folder m;
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    compare_params(&m, "unet", "real-sdxl/refiner/unet/keys.json", 2259526660ull);
    compare_params(&m, "vae", "real-sdxl/base/vae/keys.json", 83653863ull);
    compare_params(&m, "text_encoder_2", "real-sdxl/base/text_encoder_2/keys.json", 694659840ull);
    cr_assert_null(sd_model_find(&m, "text_encoder")->dir, "the refiner has no text_encoder");
    sd_model_close(&m);
    tu_rmrf(dir);
    free(dir);
}

Test(random_model, tiny_is_written_loaded_and_runs)
{
    char *dir = tu_tmpdir();
    sd_random_model_opts o = {.preset = "tiny", .out = dir, .dtype = SD_DTYPE_F16, .seed = 7, .quiet = 1};
    sd_error err = {0};
    cr_assert_eq(sd_random_model_write(&o, &err), SD_OK, "%s", err.msg);
    char *f16 = sd_path_join(dir, "unet/diffusion_pytorch_model.fp16.safetensors");
    cr_assert(sd_path_exists(f16), "f16 weights go to the fp16 variant file");
    free(f16);
    sd_model_folder m;
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    sd_backend *be = tu_cpu();
    const sd_component *c;
    cr_assert_eq(sd_model_require(&m, "unet", &c, &err), SD_OK);
    sd_unet *u;
    cr_assert_eq(sd_unet_load(&u, be, c, NULL, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_model_require(&m, "vae", &c, &err), SD_OK);
    sd_vae *v;
    cr_assert_eq(sd_vae_load(&v, be, c, "fp16", &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_model_require(&m, "text_encoder_2", &c, &err), SD_OK);
    sd_clip_text *t;
    cr_assert_eq(sd_clip_text_load(&t, be, c, NULL, &err), SD_OK, "%s", err.msg);
    /* the written tokenizer equals the reference one on a prompt with '!' */
    char *tdir = sd_path_join(dir, "tokenizer_2"), *rdir = tu_data_path("sdxl-tiny/tokenizer_2");
    sd_clip_tokenizer *a, *b;
    cr_assert_eq(sd_clip_tokenizer_load(&a, tdir, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_clip_tokenizer_load(&b, rdir, &err), SD_OK, "%s", err.msg);
    int64_t ia[77], ib[77];
    cr_assert_eq(sd_clip_tokenize(a, "Hello!!! a red fox", ia, NULL, &err), SD_OK);
    cr_assert_eq(sd_clip_tokenize(b, "Hello!!! a red fox", ib, NULL, &err), SD_OK);
    cr_assert_eq(memcmp(ia, ib, sizeof ia), 0);
    /* a forward on random weights gives finite, non-constant output */
    int64_t ss[4] = {1, 4, 8, 8}, cs[3] = {1, 77, 72}, ts[2] = {1, 32};
    sd_tensor s, ctx, te, out = {0};
    cr_assert_eq(sd_tensor_alloc(be, &s, 4, ss, &err), SD_OK);
    cr_assert_eq(sd_tensor_alloc(be, &ctx, 3, cs, &err), SD_OK);
    cr_assert_eq(sd_tensor_alloc(be, &te, 2, ts, &err), SD_OK);
    for (int64_t i = 0; i < 256; i++)
        ((float *)s.data)[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    memset(ctx.data, 0, ctx.bytes);
    memset(te.data, 0, te.bytes);
    float tstep = 500, ids[6] = {64, 64, 0, 0, 64, 64};
    cr_assert_eq(sd_unet_forward(u, &s, &tstep, &ctx, &te, ids, 6, &out, &err), SD_OK, "%s", err.msg);
    const float *o_ = out.data;
    float mn = o_[0], mx = o_[0];
    for (int i = 0; i < 256; i++) {
        cr_assert(isfinite(o_[i]));
        mn = o_[i] < mn ? o_[i] : mn;
        mx = o_[i] > mx ? o_[i] : mx;
    }
    cr_assert(mx > mn, "constant output");
    sd_tensor_free(&s);
    sd_tensor_free(&ctx);
    sd_tensor_free(&te);
    sd_tensor_free(&out);
    sd_clip_tokenizer_free(a);
    sd_clip_tokenizer_free(b);
    free(tdir);
    free(rdir);
    sd_clip_text_free(t);
    sd_vae_free(v);
    sd_unet_free(u);
    sd_backend_free(be);
    sd_model_close(&m);
    tu_rmrf(dir);
    free(dir);
}

Test(random_model, unknown_preset_and_dtype)
{
    sd_random_model_opts o = {.preset = "sd15", .out = "/tmp/never", .dtype = SD_DTYPE_F16};
    sd_error err = {0};
    cr_assert_eq(sd_random_model_write(&o, &err), SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "sd15"), "%s", err.msg);
    o.preset = "tiny";
    o.dtype = SD_DTYPE_I8;
    cr_assert_eq(sd_random_model_write(&o, &err), SD_ERR_INVALID);
}
