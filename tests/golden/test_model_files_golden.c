/* test_model_files_golden.c - the model files users download, against what
 * diffusers makes of them (tests/golden/data/model_files, written by
 * make_model_files_goldens.py with diffusers from PyPI):
 *   - single-file checkpoints in Stability's original layout (base and
 *     refiner), rebuilt here from the tiny folders by the recipe diffusers'
 *     own converter followed, in fp32 and fp16;
 *   - the refiner alone as img2img;
 *   - LoRAs in kohya/SGM and in diffusers/PEFT naming, merged at a scale;
 *   - another VAE as a folder and as an original-layout file;
 *   - the real SDXL checkpoints' names and shapes against the built-in
 *     configs (sparse files: no weights).
 * Tolerances: final latents within relative L2 1e-4 and the 8-bit image
 * within 1 level, as the other pipeline goldens (float32 on a CPU on both
 * sides; only summation order differs). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/image_io.h"
#include "common/lora.h"
#include "common/model_folder.h"
#include "common/builtin_models.h"
#include "tests/test_util.h"
#include "worker/engine/pipeline/pipeline.h"

#define DATA "tests/golden/data/model_files/"

/* cases.json, loaded once per test (the parameters borrow its strings) */
static json_t *loaded_cases;

static json_t *cases(void)
{
    if (!loaded_cases) {
        json_error_t je;
        loaded_cases = json_load_file(DATA "cases.json", 0, &je);
        cr_assert(loaded_cases, "cases.json: %s", je.text);
    }
    return loaded_cases;
}

static void free_cases(void)
{
    json_decref(loaded_cases);
    loaded_cases = NULL;
}

TestSuite(model_files, .fini = free_cases);

/* Rebuilds a single file from a tiny folder by a recipe of diffusers'. */
static void build_single_file(const char *recipe_path, const char *folder, const char *out, sd_dtype dtype)
{
    json_error_t je;
    json_t *recipe = json_load_file(recipe_path, 0, &je);
    cr_assert(recipe, "%s: %s", recipe_path, je.text);
    sd_error err = {0};
    const char *comps[4] = {"unet", "vae", "text_encoder", "text_encoder_2"};
    sd_weights w[4];
    int have[4] = {0};
    for (int i = 0; i < 4; i++) {
        char *dir = sd_path_join(folder, comps[i]);
        if (sd_path_is_dir(dir)) {
            cr_assert_eq(sd_weights_open_dir(&w[i], dir, i < 2 ? "diffusion_pytorch_model" : "model", NULL, &err), SD_OK,
                         "%s", err.msg);
            have[i] = 1;
        }
        free(dir);
    }
    sd_st_writer *wr = sd_st_writer_new();
    const char *key;
    json_t *e;
    json_object_foreach(recipe, key, e) {
        const char *op = json_string_value(json_object_get(e, "op"));
        json_t *from = json_object_get(e, "from"), *shape = json_object_get(e, "shape");
        int64_t sh[4];
        int nd = (int)json_array_size(shape);
        size_t numel = 1;
        for (int d = 0; d < nd; d++)
            numel *= (size_t)(sh[d] = json_integer_value(json_array_get(shape, (size_t)d)));
        float *buf = malloc(numel * sizeof *buf);
        size_t at = 0;
        for (size_t k = 0; k < json_array_size(from); k++) {
            json_t *src = json_array_get(from, k);
            const char *comp = json_string_value(json_array_get(src, 0)), *name = json_string_value(json_array_get(src, 1));
            int ci = 0;
            while (ci < 4 && strcmp(comps[ci], comp))
                ci++;
            cr_assert(ci < 4 && have[ci], "%s: no component %s", key, comp);
            const sd_st_tensor *t = sd_weights_find(&w[ci], name);
            cr_assert(t, "%s: no tensor %s", key, name);
            size_t n = sd_st_numel(t);
            float *tmp = malloc(n * sizeof *tmp);
            sd_convert_to_f32(tmp, t->data, t->dtype, n);
            if (!strcmp(op, "transpose")) { /* source [a, b] -> stored [b, a] */
                size_t a = (size_t)t->shape[0], b = (size_t)t->shape[1];
                for (size_t i = 0; i < a; i++)
                    for (size_t j = 0; j < b; j++)
                        buf[j * a + i] = tmp[i * b + j];
            } else {
                memcpy(buf + at, tmp, n * sizeof *tmp);
            }
            at += n;
            free(tmp);
        }
        void *data = malloc(numel * sd_dtype_size(dtype));
        sd_convert_from_f32(data, dtype, buf, numel);
        cr_assert_eq(sd_st_writer_add_copy(wr, key, dtype, nd, sh, data, &err), SD_OK, "%s", err.msg);
        free(data);
        free(buf);
    }
    cr_assert_eq(sd_st_writer_save(wr, out, &err), SD_OK, "%s", err.msg);
    sd_st_writer_free(wr);
    for (int i = 0; i < 4; i++)
        if (have[i])
            sd_weights_close(&w[i]);
    json_decref(recipe);
}


static void expect_golden(const sd_model_spec *ms, const sd_gen_params *g, const char *name)
{
    tu_expect_generated(ms, g, DATA "goldens.safetensors", name);
}


Test(model_files, single_file_base_equals_diffusers_from_single_file)
{
    char *dir = tu_tmpdir(), *tiny = tu_data_path("sdxl-tiny");
    char *file = sd_path_join(dir, "sdxl-tiny-sgm.safetensors");
    build_single_file(DATA "base_single_file_recipe.json", tiny, file, SD_DTYPE_F32);
    json_t *c = json_object_get(cases(), "single_file");
    sd_gen_params g;
    tu_params_from_case(&g, c);
    sd_model_spec ms = {.model = file, .model_config = tiny};
    expect_golden(&ms, &g, "single_file");
    tu_rmrf(dir);
    free(file);
    free(tiny);
    free(dir);
}

Test(model_files, single_file_fp16_equals_the_folders_fp16_variant)
{
    /* diffusers' converter with --half rounds each fp32 weight to fp16,
     * as the folder's fp16 variant files are: same weights, same image */
    char *dir = tu_tmpdir(), *tiny = tu_data_path("sdxl-tiny");
    char *file = sd_path_join(dir, "sdxl-tiny-sgm.fp16.safetensors");
    build_single_file(DATA "base_single_file_recipe.json", tiny, file, SD_DTYPE_F16);
    sd_gen_params g;
    tu_params_from_case(&g, json_object_get(cases(), "single_file"));
    sd_model_spec a = {.model = file, .model_config = tiny}, b = {.model = tiny, .variant = "fp16"};
    sd_error err = {0};
    float *la, *lb;
    uint8_t *ra, *rb;
    cr_assert_eq(tu_generate(&a, &g, &la, &ra, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(tu_generate(&b, &g, &lb, &rb, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(memcmp(la, lb, 256 * sizeof(float)), 0, "fp16 single file and fp16 folder differ");
    cr_assert_eq(memcmp(ra, rb, 64 * 64 * 3), 0);
    free(la), free(lb), free(ra), free(rb);
    tu_rmrf(dir);
    free(file), free(tiny), free(dir);
}

Test(model_files, refiner_alone_single_file_and_folder)
{
    char *dir = tu_tmpdir(), *ref = tu_data_path("sdxl-tiny-refiner");
    char *file = sd_path_join(dir, "sdxl-tiny-refiner-sgm.safetensors");
    build_single_file(DATA "refiner_single_file_recipe.json", ref, file, SD_DTYPE_F32);
    sd_gen_params g;
    tu_params_from_case(&g, json_object_get(cases(), "refiner_alone"));
    g.init_image = tu_load_image_f(DATA "init_image.png", &g.init_w, &g.init_h);
    sd_model_spec folder = {.model = ref}, single = {.model = file, .model_config = ref};
    expect_golden(&folder, &g, "refiner_alone");
    expect_golden(&single, &g, "refiner_alone");
    /* without an image the refiner is refused, naming what to give */
    sd_gen_params t2i = g;
    t2i.init_image = NULL;
    sd_error err = {0};
    float *lat;
    uint8_t *rgb;
    cr_assert_eq(tu_generate(&folder, &t2i, &lat, &rgb, &err), SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "--init-image"), "%s", err.msg);
    free((void *)g.init_image);
    tu_rmrf(dir);
    free(file), free(ref), free(dir);
}

Test(model_files, lora_kohya_and_peft_equal_diffusers_fuse_lora)
{
    char *tiny = tu_data_path("sdxl-tiny");
    json_t *all = cases();
    const char *names[2] = {"lora_kohya", "lora_peft"};
    for (int i = 0; i < 2; i++) {
        json_t *c = json_object_get(all, names[i]);
        sd_gen_params g;
        tu_params_from_case(&g, c);
        sd_model_spec ms = {.model = tiny};
        char arg[256];
        snprintf(arg, sizeof arg, DATA "%s.safetensors:%g", names[i], json_number_value(json_object_get(c, "scale")));
        sd_error err = {0};
        cr_assert_eq(sd_model_spec_add_lora(&ms, arg, &err), SD_OK, "%s", err.msg);
        expect_golden(&ms, &g, names[i]);
    }
    free(tiny);
}

Test(model_files, lora_resolves_every_module_of_both_namings)
{
    char *tiny = tu_data_path("sdxl-tiny");
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, tiny, &err), SD_OK, "%s", err.msg);
    json_t *all = cases();
    sd_lora_index *idx;
    cr_assert_eq(sd_lora_index_open(&idx, &m, NULL, &err), SD_OK, "%s", err.msg);
    const char *names[2] = {"lora_kohya", "lora_peft"};
    for (int i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, DATA "%s.safetensors", names[i]);
        sd_lora l;
        cr_assert_eq(sd_lora_open(&l, path, 1.0f, idx, &err), SD_OK, "%s", err.msg);
        /* as many modules as diffusers merged (counted by the script) */
        cr_assert_eq((long long)l.n, json_integer_value(json_object_get(json_object_get(all, names[i]), "modules")));
        int te1 = 0, te2 = 0, conv = 0;
        for (size_t k = 0; k < l.n; k++) {
            te1 += !strcmp(l.d[k].component, "text_encoder");
            te2 += !strcmp(l.d[k].component, "text_encoder_2");
            conv += l.d[k].down->ndim == 4 && l.d[k].down->shape[2] == 3;
        }
        cr_assert(te1 > 0, "%s: no text encoder layer", names[i]);
        if (i == 0)
            cr_assert(te2 > 0 && conv > 0, "kohya: lora_te2_ and 3x3 convs expected");
        sd_lora_close(&l);
    }
    sd_lora_index_free(idx);
    sd_model_close(&m);
    free(tiny);
}

/* a copy of a LoRA with one more module, named name */
static void lora_with_extra(const char *src, const char *dst, const char *name)
{
    sd_st_file *f;
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&f, src, &err), SD_OK, "%s", err.msg);
    sd_st_writer *w = sd_st_writer_new();
    for (size_t i = 0; i < f->n; i++)
        sd_st_writer_add(w, f->tensors[i].name, f->tensors[i].dtype, f->tensors[i].ndim, f->tensors[i].shape,
                         f->tensors[i].data, &err);
    static float down[2 * 16], up[16 * 2];
    char k[300];
    snprintf(k, sizeof k, "%s.lora_down.weight", name);
    sd_st_writer_add(w, k, SD_DTYPE_F32, 2, (int64_t[]){2, 16}, down, &err);
    snprintf(k, sizeof k, "%s.lora_up.weight", name);
    sd_st_writer_add(w, k, SD_DTYPE_F32, 2, (int64_t[]){16, 2}, up, &err);
    cr_assert_eq(sd_st_writer_save(w, dst, &err), SD_OK, "%s", err.msg);
    sd_st_writer_free(w);
    sd_st_close(f);
}

Test(model_files, lora_key_matching_no_layer_is_an_error_naming_it)
{
    char *dir = tu_tmpdir(), *tiny = tu_data_path("sdxl-tiny");
    char *bad = sd_path_join(dir, "bad.safetensors");
    lora_with_extra(DATA "lora_kohya.safetensors", bad, "lora_unet_down_blocks_7_attentions_0_proj_in");
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, tiny, &err), SD_OK, "%s", err.msg);
    sd_lora_index *idx;
    cr_assert_eq(sd_lora_index_open(&idx, &m, NULL, &err), SD_OK, "%s", err.msg);
    sd_lora l;
    cr_assert_eq(sd_lora_open(&l, bad, 1.0f, idx, &err), SD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "lora_unet_down_blocks_7_attentions_0_proj_in"), "%s", err.msg);
    sd_lora_index_free(idx);
    sd_model_close(&m);
    tu_rmrf(dir);
    free(bad), free(tiny), free(dir);
}

Test(model_files, vae_folder_and_original_file_equal_diffusers)
{
    char *tiny = tu_data_path("sdxl-tiny");
    sd_gen_params g;
    tu_params_from_case(&g, json_object_get(cases(), "vae_swap"));
    sd_model_spec folder = {.model = tiny, .vae = DATA "vae_fp16fix_like"};
    sd_model_spec file = {.model = tiny, .vae = DATA "vae_original.safetensors"};
    expect_golden(&folder, &g, "vae_swap");
    expect_golden(&file, &g, "vae_swap");
    free(tiny);
}

Test(model_files, single_file_key_errors_name_the_key)
{
    char *dir = tu_tmpdir(), *tiny = tu_data_path("sdxl-tiny");
    char *good = sd_path_join(dir, "good.safetensors"), *bad = sd_path_join(dir, "bad.safetensors");
    build_single_file(DATA "base_single_file_recipe.json", tiny, good, SD_DTYPE_F32);
    sd_st_file *f;
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&f, good, &err), SD_OK, "%s", err.msg);
    const char *drop = "model.diffusion_model.output_blocks.2.2.conv.bias";
    const char *extras[2] = {"model.diffusion_model.input_blocks.1.0.mystery.weight", "cond_stage_model.foo"};
    for (int mode = 0; mode < 3; mode++) {
        sd_st_writer *w = sd_st_writer_new();
        for (size_t i = 0; i < f->n; i++)
            if (mode || strcmp(f->tensors[i].name, drop))
                sd_st_writer_add(w, f->tensors[i].name, f->tensors[i].dtype, f->tensors[i].ndim, f->tensors[i].shape,
                                 f->tensors[i].data, &err);
        static float one[4];
        if (mode)
            sd_st_writer_add(w, extras[mode - 1], SD_DTYPE_F32, 1, (int64_t[]){4}, one, &err);
        cr_assert_eq(sd_st_writer_save(w, bad, &err), SD_OK, "%s", err.msg);
        sd_st_writer_free(w);
        sd_gen_params g;
        tu_params_from_case(&g, json_object_get(cases(), "single_file"));
        sd_model_spec ms = {.model = bad, .model_config = tiny};
        float *lat;
        uint8_t *rgb;
        cr_assert_neq(tu_generate(&ms, &g, &lat, &rgb, &err), SD_OK, "mode %d loaded", mode);
        /* a missing tensor is named by the file's own key (and diffusers') */
        const char *want = mode == 0 ? drop : extras[mode - 1];
        cr_assert(strstr(err.msg, want), "mode %d: '%s' does not name %s", mode, err.msg, want);
    }
    sd_st_close(f);
    tu_rmrf(dir);
    free(good), free(bad), free(tiny), free(dir);
}

/* A safetensors file with these names and shapes (F16) and no data written:
 * sparse, all zeros, megabytes on disk for gigabytes of weights. */
static void sparse_file(const char *keys_path, const char *out)
{
    json_error_t je;
    json_t *keys = json_load_file(keys_path, 0, &je);
    cr_assert(keys, "%s: %s", keys_path, je.text);
    json_t *hdr = json_object();
    const char *k;
    json_t *shape;
    unsigned long long off = 0;
    json_object_foreach(keys, k, shape) {
        unsigned long long n = 2;
        for (size_t d = 0; d < json_array_size(shape); d++)
            n *= (unsigned long long)json_integer_value(json_array_get(shape, d));
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string("F16"));
        json_object_set(e, "shape", shape);
        json_object_set_new(e, "data_offsets", json_pack("[I, I]", (json_int_t)off, (json_int_t)(off + n)));
        json_object_set_new(hdr, k, e);
        off += n;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    uint64_t len = strlen(text);
    int fd = open(out, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, &len, 8), 8);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    cr_assert_eq(ftruncate(fd, (off_t)(8 + len + off)), 0);
    close(fd);
    free(text);
    json_decref(hdr);
    json_decref(keys);
}

Test(model_files, real_checkpoints_map_onto_the_builtin_configs)
{
    /* every tensor of sd_xl_base_1.0.safetensors and the refiner's, by name
     * and shape, is one of the real diffusers folder's (real-sdxl/keys.json),
     * and all of those are covered, with the configs built in */
    const char *which[2] = {"base", "refiner"};
    char *dir = tu_tmpdir();
    for (int r = 0; r < 2; r++) {
        char keys[128], *file = sd_path_join(dir, "real.safetensors");
        snprintf(keys, sizeof keys, DATA "real_%s_keys.json", which[r]);
        sparse_file(keys, file);
        sd_model_folder m;
        sd_error err = {0};
        cr_assert_eq(sd_model_open_path(&m, file, NULL, &err), SD_OK, "%s", err.msg);
        cr_assert_str_eq(m.pipeline_class, r ? "StableDiffusionXLImg2ImgPipeline" : "StableDiffusionXLPipeline");
        int checked = 0;
        for (int i = 0; i < m.n; i++) {
            const sd_component *c = &m.comps[i];
            if (!c->present || c->kind != SD_COMPONENT_KIND_WEIGHTS)
                continue;
            char rel[96];
            snprintf(rel, sizeof rel, "real-sdxl/%s/%s/keys.json", r && !strcmp(c->name, "unet") ? "refiner" : "base",
                     c->name);
            char *kp = tu_data_path(rel);
            json_t *want = json_load_file(kp, 0, NULL);
            cr_assert(want, "%s", kp);
            sd_weights w;
            cr_assert_eq(sd_weights_open(&w, c, NULL, &err), SD_OK, "%s: %s", c->name, err.msg);
            cr_assert_eq(w.n, json_object_size(want), "%s %s: %zu tensors, the folder has %zu", which[r], c->name, w.n,
                         json_object_size(want));
            sd_st_file *raw;
            cr_assert_eq(sd_st_open(&raw, file, &err), SD_OK, "%s", err.msg);
            for (size_t t = 0; t < w.n; t++) {
                /* and back: each parameter names the file's own key (missing-key messages) */
                char back[400];
                cr_assert(sd_weights_file_key(&w, w.tensors[t]->name, back, sizeof back) && sd_st_find(raw, back),
                          "%s %s: '%s' maps back to '%s', not a key of the file", which[r], c->name, w.tensors[t]->name,
                          back);
                json_t *e = json_object_get(want, w.tensors[t]->name);
                cr_assert(e, "%s %s: '%s' is not a diffusers parameter", which[r], c->name, w.tensors[t]->name);
                json_t *shape = json_object_get(e, "shape");
                cr_assert_eq((size_t)w.tensors[t]->ndim, json_array_size(shape), "%s", w.tensors[t]->name);
                for (int d = 0; d < w.tensors[t]->ndim; d++)
                    cr_assert_eq(w.tensors[t]->shape[d], json_integer_value(json_array_get(shape, (size_t)d)), "%s",
                                 w.tensors[t]->name);
            }
            checked++;
            sd_st_close(raw);
            sd_weights_close(&w);
            json_decref(want);
            free(kp);
        }
        cr_assert_eq(checked, r ? 3 : 4);
        sd_model_close(&m);
        free(file);
    }
    tu_rmrf(dir);
    free(dir);
}
