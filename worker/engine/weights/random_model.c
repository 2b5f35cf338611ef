/* random_model.c - see random_model.h. Values: weights ~ N(0, g / sqrt(fan_in))
 * with g = 1, or 0.3 for layers that write into a residual stream (so a
 * 70-block random UNet stays well inside fp16 range); norm scales 1; biases
 * and embeddings ~ N(0, 0.02). Each tensor's values depend only on the seed
 * and its name, so they do not change with the write order. */
#include "worker/engine/weights/random_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/hashmap.h"
#include "common/model_folder.h"
#include "common/safetensors.h"
#include "worker/engine/text/clip_text.h"
#include "worker/engine/text/clip_vocab.h"
#include "worker/engine/weights/presets.h"
#include "worker/engine/unet/unet.h"
#include "worker/engine/vae/vae.h"

int sd_random_model_preset_known(const char *name)
{
    return !strcmp(name, "sdxl-base") || !strcmp(name, "sdxl-refiner") || !strcmp(name, "tiny");
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t seed;
    sd_dtype dtype;
    float mean, std; /* std 0: constant mean */
} fill_spec;

#define CHUNK 65536

static sd_status fill_random(void *dst, size_t nbytes, void *user, sd_error *err)
{
    const fill_spec *f = user;
    size_t es = sd_dtype_size(f->dtype), n = nbytes / es;
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
    int failed = 0;
#pragma omp parallel for schedule(dynamic)
    for (size_t c = 0; c < nchunks; c++) {
        float buf[CHUNK];
        size_t start = c * CHUNK, len = n - start < CHUNK ? n - start : CHUNK;
        uint64_t s = f->seed ^ (c * 0xD1B54A32D192ED03ull);
        for (size_t i = 0; i < len; i += 2) {
            /* Box-Muller on two 53-bit uniforms */
            double u1 = ((double)(splitmix64(&s) >> 11) + 1.0) * 0x1p-53;
            double u2 = (double)(splitmix64(&s) >> 11) * 0x1p-53;
            double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
            buf[i] = f->mean + f->std * (float)(r * cos(th));
            if (i + 1 < len)
                buf[i + 1] = f->mean + f->std * (float)(r * sin(th));
        }
        if (sd_convert_from_f32((char *)dst + start * es, f->dtype, buf, len) != 0)
            failed = 1;
    }
    if (failed)
        return sd_fail(err, SD_ERR_UNSUPPORTED, "cannot write %s weights", sd_dtype_name(f->dtype));
    return SD_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void spec_for(const sd_param_info *p, uint64_t seed, sd_dtype dt, fill_spec *f)
{
    f->seed = seed ^ sd_hash_bytes(p->name, strlen(p->name));
    f->dtype = dt;
    f->mean = 0;
    if (p->ndim == 1) {
        int is_norm_scale = ends_with(p->name, ".weight") && strstr(p->name, "norm");
        f->mean = is_norm_scale ? 1.0f : 0.0f;
        f->std = is_norm_scale ? 0.0f : 0.02f;
        return;
    }
    if (strstr(p->name, "embedding.weight")) { /* token / position tables */
        f->std = 0.02f;
        return;
    }
    int64_t fan_in = 1;
    for (int d = 1; d < p->ndim; d++)
        fan_in *= p->shape[d];
    int residual = strstr(p->name, "to_out.0") || strstr(p->name, "ff.net.2") || strstr(p->name, "conv2.") ||
                   strstr(p->name, "proj_out") || strstr(p->name, "out_proj") || strstr(p->name, "fc2");
    f->std = (residual ? 0.3f : 1.0f) / sqrtf((float)fan_in);
}

static sd_status write_text(const char *dir, const char *rel, const char *text, sd_error *err)
{
    char *p = sd_path_join(dir, rel);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = sd_write_file_atomic(p, text, strlen(text), err);
    free(p);
    return st;
}

static sd_status copy_file(const char *from, const char *to, sd_error *err)
{
    char *data;
    size_t len;
    SD_TRY(sd_read_file(from, &data, &len, err));
    sd_status st = sd_write_file_atomic(to, data, len, err);
    free(data);
    return st;
}

static sd_status write_tokenizer(const sd_random_model_opts *o, const char *name, int pad_bang, sd_error *err)
{
    char *dir = sd_path_join(o->out, name);
    if (!dir)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = sd_clip_write_tokenizer(dir, pad_bang, err);
    if (st == SD_OK && o->tokenizer_src) {
        const char *files[2] = {"vocab.json", "merges.txt"};
        for (int i = 0; i < 2 && st == SD_OK; i++) {
            char *from = sd_path_join(o->tokenizer_src, files[i]), *to = sd_path_join(dir, files[i]);
            st = from && to ? copy_file(from, to, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
            free(from);
            free(to);
        }
    }
    free(dir);
    return st;
}

static sd_status write_weights(const sd_random_model_opts *o, const sd_component *c, sd_error *err)
{
    sd_param_list list = {0};
    sd_status st;
    if (!strcmp(c->class_name, "UNet2DConditionModel"))
        st = sd_unet_list_params(c, &list, err);
    else if (!strcmp(c->class_name, "AutoencoderKL"))
        st = sd_vae_list_params(c, &list, err);
    else
        st = sd_clip_text_list_params(c, &list, err);
    if (st != SD_OK)
        return st;
    fill_spec *specs = calloc((size_t)list.n + 1, sizeof *specs);
    sd_st_writer *w = sd_st_writer_new();
    if (!specs || !w)
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < list.n && st == SD_OK; i++) {
        spec_for(&list.p[i], o->seed, o->dtype, &specs[i]);
        st = sd_st_writer_add_fill(w, list.p[i].name, o->dtype, list.p[i].ndim, list.p[i].shape, fill_random,
                                   &specs[i], err);
    }
    if (st == SD_OK) {
        char file[256];
        snprintf(file, sizeof file, "%s%s.safetensors", sd_class_weights_basename(c->class_name),
                 o->dtype == SD_DTYPE_F16 ? ".fp16" : "");
        char *path = sd_path_join(c->dir, file);
        if (!o->quiet)
            fprintf(stderr, "random-model: writing %s (%d tensors, %llu parameters)\n", path, list.n,
                    sd_param_list_numel(&list));
        st = path ? sd_st_writer_save(w, path, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
        free(path);
    }
    sd_st_writer_free(w);
    free(specs);
    sd_param_list_free(&list);
    return st;
}

sd_status sd_random_model_write(const sd_random_model_opts *o, sd_error *err)
{
    if (!sd_random_model_preset_known(o->preset))
        return sd_fail(err, SD_ERR_INVALID, "unknown preset '%s' (sdxl-base, sdxl-refiner, tiny)", o->preset);
    if (o->dtype != SD_DTYPE_F16 && o->dtype != SD_DTYPE_BF16 && o->dtype != SD_DTYPE_F32)
        return sd_fail(err, SD_ERR_INVALID, "random-model writes f16, bf16 or f32, not %s", sd_dtype_name(o->dtype));
    int tiny = !strcmp(o->preset, "tiny"), refiner = !strcmp(o->preset, "sdxl-refiner");
    SD_TRY(sd_mkdirs(o->out, err));
    const char *index = tiny ? sd_preset_tiny_model_index : refiner ? sd_preset_refiner_model_index
                                                                    : sd_preset_base_model_index;
    SD_TRY(write_text(o->out, "model_index.json", index, err));
    struct {
        const char *dir, *file, *text;
    } files[] = {
        {"unet", "config.json", tiny ? sd_preset_tiny_unet : refiner ? sd_preset_refiner_unet : sd_preset_base_unet},
        {"vae", "config.json", tiny ? sd_preset_tiny_vae : sd_preset_vae},
        {"text_encoder_2", "config.json", tiny ? sd_preset_tiny_text_encoder_2 : sd_preset_text_encoder_2},
        {"scheduler", "scheduler_config.json", sd_preset_scheduler},
        {refiner ? NULL : "text_encoder", "config.json", tiny ? sd_preset_tiny_text_encoder : sd_preset_text_encoder},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (!files[i].dir)
            continue;
        char *dir = sd_path_join(o->out, files[i].dir);
        sd_status st = dir ? sd_mkdirs(dir, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
        if (st == SD_OK)
            st = write_text(dir, files[i].file, files[i].text, err);
        free(dir);
        if (st != SD_OK)
            return st;
    }
    if (!refiner)
        SD_TRY(write_tokenizer(o, "tokenizer", 0, err));
    SD_TRY(write_tokenizer(o, "tokenizer_2", 1, err));
    if (o->configs_only)
        return SD_OK;
    sd_model_folder m;
    SD_TRY(sd_model_open(&m, o->out, err));
    sd_status st = SD_OK;
    for (int i = 0; i < m.n && st == SD_OK; i++)
        if (m.comps[i].present && m.comps[i].kind == SD_COMPONENT_KIND_WEIGHTS)
            st = write_weights(o, &m.comps[i], err);
    sd_model_close(&m);
    return st;
}
