/* test_text_golden.c - both text encoders of sdxl-tiny against transformers'
 * outputs (golden/text_encoders.safetensors): every hidden state, the final
 * layer norm, pooled output, projection and SDXL's prompt_embeds.
 * Tolerance: relative L2 error < 1e-4 (the bar for fp32; float32
 * reorderings of sums give ~1e-7 per op, far below it). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/model_folder.h"
#include "tests/test_util.h"
#include "worker/engine/text/clip_text.h"

#define TOL 1e-4

static sd_clip_text *load_encoder_from(sd_backend *be, const char *dir, const char *name, const char *variant)
{
    sd_model_folder m;
    sd_error err = {0};
    cr_assert_eq(sd_model_open(&m, dir, &err), SD_OK, "%s", err.msg);
    const sd_component *c;
    cr_assert_eq(sd_model_require(&m, name, &c, &err), SD_OK, "%s", err.msg);
    sd_clip_text *t;
    cr_assert_eq(sd_clip_text_load(&t, be, c, variant, &err), SD_OK, "%s", err.msg);
    sd_model_close(&m);
    return t;
}

static sd_clip_text *load_encoder(sd_backend *be, const char *model, const char *name, const char *variant)
{
    char *dir = tu_data_path(model);
    sd_clip_text *t = load_encoder_from(be, dir, name, variant);
    free(dir);
    return t;
}

/* model_dir NULL: ../shared/testdata/sdxl-tiny */
static void check_encoder_in(const char *model_dir, const char *name, const char *prefix, const char *ids_name)
{
    sd_backend *be = tu_cpu();
    sd_clip_text *t = model_dir ? load_encoder_from(be, model_dir, name, NULL) : load_encoder(be, "sdxl-tiny", name, NULL);
    const sd_clip_config *c = sd_clip_text_config(t);
    sd_st_file *g = tu_golden("text_encoders.safetensors");
    const sd_st_tensor *ids = tu_tensor(g, ids_name, SD_DTYPE_I64);
    sd_tensor hs[64] = {{0}}, pen = {0}, last = {0}, pooled = {0}, emb = {0};
    sd_clip_outputs out = {.hidden_states = hs, .penultimate = &pen, .last_hidden = &last, .pooled = &pooled,
                           .text_embeds = c->with_projection ? &emb : NULL};
    sd_error err = {0};
    int64_t *idv = sd_st_copy_i64(ids);
    cr_assert_eq(sd_clip_text_forward(t, idv, (int)ids->shape[0], (int)ids->shape[1], &out, &err), SD_OK, "%s",
                 err.msg);
    free(idv);
    char gname[128];
    for (int i = 0; i <= c->layers; i++) {
        snprintf(gname, sizeof gname, "%s_hidden_states_%d", prefix, i);
        tu_expect_close(&hs[i], g, gname, TOL);
        sd_tensor_free(&hs[i]);
    }
    snprintf(gname, sizeof gname, "%s_hidden_states_m2", prefix);
    tu_expect_close(&pen, g, gname, TOL);
    snprintf(gname, sizeof gname, "%s_last_hidden_state", prefix);
    tu_expect_close(&last, g, gname, TOL);
    if (c->with_projection) {
        snprintf(gname, sizeof gname, "%s_text_embeds", prefix);
        tu_expect_close(&emb, g, gname, TOL);
    } else {
        snprintf(gname, sizeof gname, "%s_pooler_output", prefix);
        tu_expect_close(&pooled, g, gname, TOL);
    }
    sd_tensor_free(&pen);
    sd_tensor_free(&last);
    sd_tensor_free(&pooled);
    sd_tensor_free(&emb);
    sd_st_close(g);
    sd_clip_text_free(t);
    sd_backend_free(be);
}

static void check_encoder(const char *name, const char *prefix, const char *ids_name)
{
    check_encoder_in(NULL, name, prefix, ids_name);
}

/* sdxl-tiny's encoder `name` re-saved as transformers 5 saves a CLIPTextModel:
 * the same tensors without the "text_model." prefix, in a folder of its own */
static char *without_text_model_prefix(const char *name)
{
    char *src = tu_data_path("sdxl-tiny"), *dst = tu_tmpdir(), path[4096];
    snprintf(path, sizeof path, "%s/model_index.json", dst);
    char index[256];
    int n = snprintf(index, sizeof index, "{\"_class_name\": \"StableDiffusionXLPipeline\", \"%s\": [\"transformers\", \"%s\"]}",
                     name, strcmp(name, "text_encoder") ? "CLIPTextModelWithProjection" : "CLIPTextModel");
    tu_write(path, index, (size_t)n);
    snprintf(path, sizeof path, "%s/%s", dst, name);
    cr_assert_eq(mkdir(path, 0755), 0);
    sd_error err;
    snprintf(path, sizeof path, "%s/config.json", name);
    tu_copy(src, dst, path);
    sd_st_file *f;
    snprintf(path, sizeof path, "%s/%s/model.safetensors", src, name);
    cr_assert_eq(sd_st_open(&f, path, &err), SD_OK, "%s", err.msg);
    sd_st_writer *w = sd_st_writer_new();
    int renamed = 0;
    for (size_t i = 0; i < f->n; i++) {
        const sd_st_tensor *x = &f->tensors[i];
        const char *nm = x->name;
        if (!strncmp(nm, "text_model.", 11)) {
            nm += 11;
            renamed++;
        }
        cr_assert_eq(sd_st_writer_add(w, nm, x->dtype, x->ndim, x->shape, x->data, &err), SD_OK, "%s", err.msg);
    }
    cr_assert_gt(renamed, 10);
    snprintf(path, sizeof path, "%s/%s/model.safetensors", dst, name);
    cr_assert_eq(sd_st_writer_save(w, path, &err), SD_OK, "%s", err.msg);
    sd_st_writer_free(w);
    sd_st_close(f);
    free(src);
    return dst;
}

Test(text_golden, transformers_5_layout_without_text_model_prefix)
{
    char *d1 = without_text_model_prefix("text_encoder"), *d2 = without_text_model_prefix("text_encoder_2");
    check_encoder_in(d1, "text_encoder", "te1", "ids_tokenizer");
    check_encoder_in(d2, "text_encoder_2", "te2", "ids_tokenizer_2");
    tu_rmrf(d1);
    tu_rmrf(d2);
    free(d1);
    free(d2);
}

Test(text_golden, clip_l_every_layer)
{
    check_encoder("text_encoder", "te1", "ids_tokenizer");
}

Test(text_golden, openclip_bigg_every_layer_and_projection)
{
    check_encoder("text_encoder_2", "te2", "ids_tokenizer_2");
}

Test(text_golden, fp16_weights_load_and_stay_close)
{
    /* fp16 weights widened to fp32: the error is that of rounding weights to
     * 11 significant bits, ~1e-3 relative; 1e-2 bounds it with margin. */
    sd_backend *be = tu_cpu();
    sd_clip_text *t = load_encoder(be, "sdxl-tiny", "text_encoder_2", "fp16");
    sd_st_file *g = tu_golden("text_encoders.safetensors");
    const sd_st_tensor *ids = tu_tensor(g, "ids_tokenizer_2", SD_DTYPE_I64);
    sd_tensor pen = {0};
    sd_clip_outputs out = {.penultimate = &pen};
    sd_error err = {0};
    int64_t *idv = sd_st_copy_i64(ids);
    cr_assert_eq(sd_clip_text_forward(t, idv, (int)ids->shape[0], 77, &out, &err), SD_OK, "%s", err.msg);
    free(idv);
    double e = tu_expect_close(&pen, g, "te2_hidden_states_m2", 1e-2);
    cr_assert(e > 0, "fp16 weights gave a bit-identical result: were they really read?");
    sd_tensor_free(&pen);
    sd_st_close(g);
    sd_clip_text_free(t);
    sd_backend_free(be);
}

Test(text_golden, rejects_out_of_vocabulary_ids)
{
    sd_backend *be = tu_cpu();
    sd_clip_text *t = load_encoder(be, "sdxl-tiny", "text_encoder", NULL);
    int64_t ids[77];
    for (int i = 0; i < 77; i++)
        ids[i] = i == 3 ? 49408 : 49407;
    sd_tensor pen = {0};
    sd_clip_outputs out = {.penultimate = &pen};
    sd_error err = {0};
    cr_assert_eq(sd_clip_text_forward(t, ids, 1, 77, &out, &err), SD_ERR_INVALID);
    cr_assert(strstr(err.msg, "49408"), "%s", err.msg);
    sd_clip_text_free(t);
    sd_backend_free(be);
}
