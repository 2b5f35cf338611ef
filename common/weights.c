/* weights.c - a component's weights: one safetensors file or a sharded set
 * behind an index, chosen by variant, looked up by tensor name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "json_config.h"
#include "model_folder.h"
#include "original_layout.h"

void sd_weights_close(sd_weights *w)
{
    for (int i = 0; i < w->nfiles; i++)
        sd_st_close(w->files[i]);
    free(w->files);
    free(w->tensors);
    free(w->description);
    free(w->index_path);
    for (size_t i = 0; i < w->nvirt; i++)
        free(w->virt[i].name);
    free(w->virt);
    for (size_t i = 0; i < w->nbufs; i++)
        free(w->bufs[i]);
    free(w->bufs);
    memset(w, 0, sizeof *w);
}

static int cmp_tensor_ptr(const void *a, const void *b)
{
    return strcmp((*(const sd_st_tensor *const *)a)->name, (*(const sd_st_tensor *const *)b)->name);
}

static sd_status add_file(sd_weights *w, const char *path, sd_error *err)
{
    sd_st_file **nf = realloc(w->files, (size_t)(w->nfiles + 1) * sizeof *nf);
    if (!nf)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    w->files = nf;
    SD_TRY(sd_st_open(&w->files[w->nfiles], path, err));
    w->nfiles++;
    return SD_OK;
}

/* Builds the merged, sorted name index over all files; duplicate names across
 * shards are an error. */
static sd_status build_index(sd_weights *w, sd_error *err)
{
    if (w->virt) { /* renamed views of an original-layout file */
        w->tensors = malloc((w->nvirt ? w->nvirt : 1) * sizeof *w->tensors);
        if (!w->tensors)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < w->nvirt; i++)
            w->tensors[w->n++] = &w->virt[i];
        goto sort;
    }
    size_t total = 0;
    for (int i = 0; i < w->nfiles; i++)
        total += w->files[i]->n;
    w->tensors = malloc((total ? total : 1) * sizeof *w->tensors);
    if (!w->tensors)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < w->nfiles; i++)
        for (size_t j = 0; j < w->files[i]->n; j++)
            w->tensors[w->n++] = &w->files[i]->tensors[j];
sort:
    qsort(w->tensors, w->n, sizeof *w->tensors, cmp_tensor_ptr);
    for (size_t i = 1; i < w->n; i++)
        if (strcmp(w->tensors[i - 1]->name, w->tensors[i]->name) == 0)
            return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' appears in more than one shard", w->description,
                           w->tensors[i]->name);
    return SD_OK;
}

static sd_status open_sharded(sd_weights *w, const char *dir, const char *index_path, sd_error *err)
{
    sd_json_doc doc;
    SD_TRY(sd_json_load(&doc, index_path, err));
    sd_status st = SD_OK;
    json_t *map = json_object_get(doc.root, "weight_map");
    if (!json_is_object(map)) {
        st = sd_fail(err, SD_ERR_FORMAT, "%s: missing 'weight_map' object", index_path);
        goto out;
    }
    w->index_path = strdup(index_path);
    w->description = strdup(index_path);
    /* Open each distinct shard once, in order of first appearance. */
    const char **names = calloc(json_object_size(map) + 1, sizeof *names);
    int nnames = 0;
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        if (!json_is_string(val)) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s: weight_map['%s'] is not a file name", index_path, key);
            break;
        }
        const char *shard = json_string_value(val);
        if (strchr(shard, '/') || shard[0] == '.') {
            st = sd_fail(err, SD_ERR_FORMAT, "%s: weight_map['%s'] names '%s', outside the folder", index_path,
                         key, shard);
            break;
        }
        int seen = 0;
        for (int i = 0; i < nnames && !seen; i++)
            seen = strcmp(names[i], shard) == 0;
        if (!seen) {
            names[nnames++] = shard;
            char *p = sd_path_join(dir, shard);
            st = p ? add_file(w, p, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
            free(p);
            if (st != SD_OK)
                break;
        }
    }
    /* Every tensor of the map must be in the shard the map names. */
    json_object_foreach(map, key, val) {
        if (st != SD_OK)
            break;
        const char *shard = json_string_value(val);
        for (int i = 0; i < nnames; i++) {
            if (strcmp(names[i], shard) == 0 && !sd_st_find(w->files[i], key)) {
                st = sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' is mapped to %s but not stored there",
                             index_path, key, shard);
                break;
            }
        }
    }
    free(names);
    if (st == SD_OK)
        st = build_index(w, err);
out:
    sd_json_free(&doc);
    return st;
}

sd_status sd_weights_open_dir(sd_weights *w, const char *dir, const char *basename, const char *variant,
                              sd_error *err)
{
    memset(w, 0, sizeof *w);
    /* candidates in order of preference: (is_index, file name) */
    char cand[6][512];
    int is_index[6], nc = 0;
    if (!variant) {
        snprintf(cand[nc], sizeof cand[0], "%s.safetensors", basename), is_index[nc++] = 0;
        snprintf(cand[nc], sizeof cand[0], "%s.safetensors.index.json", basename), is_index[nc++] = 1;
        variant = "fp16"; /* fall back to the fp16 variant when only it exists */
    }
    snprintf(cand[nc], sizeof cand[0], "%s.%s.safetensors", basename, variant), is_index[nc++] = 0;
    snprintf(cand[nc], sizeof cand[0], "%s.safetensors.index.%s.json", basename, variant), is_index[nc++] = 1;
    snprintf(cand[nc], sizeof cand[0], "%s.%s.safetensors.index.json", basename, variant), is_index[nc++] = 1;
    for (int i = 0; i < nc; i++) {
        char *p = sd_path_join(dir, cand[i]);
        if (!p)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        if (!sd_path_exists(p)) {
            free(p);
            continue;
        }
        sd_status st;
        if (is_index[i]) {
            st = open_sharded(w, dir, p, err);
        } else {
            w->description = strdup(p);
            st = add_file(w, p, err);
            if (st == SD_OK)
                st = build_index(w, err);
        }
        free(p);
        if (st != SD_OK)
            sd_weights_close(w);
        return st;
    }
    /* PyTorch pickles (diffusers' NAME.bin, transformers' pytorch_model.bin)
     * are code, not data: never loaded here */
    char bin[512];
    int has_bin = 0;
    for (int k = 0; k < 2 && !has_bin; k++) {
        snprintf(bin, sizeof bin, k ? "pytorch_model.bin" : "%s.bin", basename);
        char *bp = sd_path_join(dir, bin);
        has_bin = bp && sd_path_exists(bp);
        free(bp);
    }
    if (has_bin)
        return sd_fail(err, SD_ERR_UNSUPPORTED,
                       "%s: only %s found: PyTorch pickle weights are not read (save the model as safetensors, e.g. "
                       "diffusers' save_pretrained(safe_serialization=True))",
                       dir, bin);
    return sd_fail(err, SD_ERR_MISSING, "%s: no weights found (looked for %s%s%s)", dir, cand[0],
                   nc > 3 ? " and variants like " : "", nc > 3 ? cand[2] : "");
}

/* ---- original-layout single files ---- */

static sd_status add_view(sd_weights *w, const sd_st_tensor *src, const sd_orig_target *t, size_t *cap,
                          sd_error *err)
{
    if (w->nvirt == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        sd_st_tensor *nv = realloc(w->virt, nc * sizeof *nv);
        if (!nv)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        w->virt = nv;
        *cap = nc;
    }
    sd_st_tensor v = *src;
    size_t es = sd_dtype_size(src->dtype);
    switch (t->how) {
    case SD_ORIG_AS_IS:
        break;
    case SD_ORIG_SQUEEZE:
        if (v.ndim == 4 && v.shape[2] == 1 && v.shape[3] == 1)
            v.ndim = 2;
        else if (v.ndim != 2)
            return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' must be [out, in, 1, 1] or [out, in]", w->description,
                           src->name);
        break;
    case SD_ORIG_THIRD: {
        if (v.ndim < 1 || v.shape[0] % 3)
            return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' (fused q, k, v) has %lld rows, not a multiple of 3",
                           w->description, src->name, v.ndim ? (long long)v.shape[0] : 0LL);
        uint64_t part_bytes = (src->end - src->begin) / 3;
        v.shape[0] /= 3;
        v.begin = src->begin + (uint64_t)t->part * part_bytes;
        v.end = v.begin + part_bytes;
        v.data = (const char *)src->data + (uint64_t)t->part * part_bytes;
        break;
    }
    case SD_ORIG_TRANSPOSE: {
        if (v.ndim != 2)
            return sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' must be a matrix", w->description, src->name);
        size_t r = (size_t)v.shape[0], c = (size_t)v.shape[1];
        char *buf = malloc(r * c * es + 1);
        void **nb = buf ? realloc(w->bufs, (w->nbufs + 1) * sizeof *nb) : NULL;
        if (!nb) {
            free(buf);
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        }
        w->bufs = nb;
        w->bufs[w->nbufs++] = buf;
        for (size_t i = 0; i < r; i++)
            for (size_t j = 0; j < c; j++)
                memcpy(buf + (j * r + i) * es, (const char *)src->data + (i * c + j) * es, es);
        v.shape[0] = (int64_t)c;
        v.shape[1] = (int64_t)r;
        v.data = buf;
        break;
    }
    }
    v.name = strdup(t->name);
    if (!v.name)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    w->virt[w->nvirt++] = v;
    return SD_OK;
}

sd_status sd_weights_open_original(sd_weights *w, const char *path, const char *component, int refiner, int vae_file,
                                   const sd_json_doc *cfg, sd_error *err)
{
    memset(w, 0, sizeof *w);
    int is_unet = !strcmp(component, "unet"), is_vae = !strcmp(component, "vae");
    int is_openclip = !strcmp(component, "text_encoder_2");
    sd_unet_layout ul;
    int vae_levels = 0;
    if (is_unet)
        SD_TRY(sd_unet_layout_from_config(cfg, &ul, err));
    if (is_vae)
        SD_TRY(sd_vae_levels_from_config(cfg, &vae_levels, err));
    size_t dlen = strlen(path) + strlen(component) + 64;
    w->description = malloc(dlen);
    if (!w->description)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    snprintf(w->description, dlen, vae_file ? "%s" : "%s (%s, original layout)", path, component);
    snprintf(w->orig_component, sizeof w->orig_component, "%s", component);
    w->orig_refiner = refiner;
    w->orig_vae_file = vae_file;
    w->orig_vae_levels = vae_levels;
    if (is_unet) {
        w->orig_has_unet = 1;
        w->orig_unet[0] = ul.levels, w->orig_unet[1] = ul.layers;
        w->orig_unet[2] = (int)ul.down_attn, w->orig_unet[3] = (int)ul.up_attn;
    }
    sd_status st = add_file(w, path, err);
    const sd_st_file *f = st == SD_OK ? w->files[0] : NULL;
    /* a VAE file may hold diffusers' names already */
    int vae_diffusers = 0;
    if (f && vae_file) {
        vae_diffusers = 1;
        for (size_t i = 0; i < f->n && vae_diffusers; i++)
            vae_diffusers = !sd_orig_is_vae_original_key(f->tensors[i].name);
    }
    size_t cap = 0;
    for (size_t i = 0; f && i < f->n && st == SD_OK; i++) {
        const sd_st_tensor *src = &f->tensors[i];
        const char *rest = src->name, *comp;
        if (vae_file) {
            comp = "vae";
            if (!strncmp(rest, "first_stage_model.", 18))
                rest += 18;
        } else {
            comp = sd_orig_component(src->name, refiner, &rest);
        }
        if (!comp) {
            st = sd_fail(err, SD_ERR_FORMAT,
                         "%s: key '%s' belongs to no SDXL %s component (model.diffusion_model., first_stage_model., "
                         "conditioner.embedders.N.)",
                         path, src->name, refiner ? "refiner" : "base");
            break;
        }
        if (strcmp(comp, component))
            continue;
        sd_orig_target t[3];
        int n = 1;
        if (vae_diffusers) {
            snprintf(t[0].name, sizeof t[0].name, "%s", rest);
            t[0].how = SD_ORIG_AS_IS;
        } else if (is_unet) {
            st = sd_orig_unet_name(rest, &ul, t, &n, src->name, err);
        } else if (is_vae) {
            st = sd_orig_vae_name(rest, vae_levels, t, &n, src->name, err);
        } else if (is_openclip) {
            st = sd_orig_openclip_name(rest, t, &n, src->name, err);
        } else { /* CLIP-L is stored under transformers' own names */
            snprintf(t[0].name, sizeof t[0].name, "%s", rest);
            t[0].how = SD_ORIG_AS_IS;
        }
        for (int k = 0; k < n && st == SD_OK; k++)
            st = add_view(w, src, &t[k], &cap, err);
        if (st != SD_OK)
            sd_error_prefix(err, st, "%s: ", path);
    }
    if (st == SD_OK && w->nvirt == 0)
        st = sd_fail(err, SD_ERR_MISSING, "%s: no tensors of component '%s'", path, component);
    if (st == SD_OK)
        st = build_index(w, err);
    if (st != SD_OK)
        sd_weights_close(w);
    return st;
}

sd_status sd_weights_open(sd_weights *w, const sd_component *c, const char *variant, sd_error *err)
{
    if (c->single_file) {
        sd_json_doc cfg;
        SD_TRY(sd_component_config(c, &cfg, err));
        sd_status st = sd_weights_open_original(w, c->single_file, c->name, c->single_refiner, c->vae_file, &cfg, err);
        sd_json_free(&cfg);
        return st;
    }
    const char *base = sd_class_weights_basename(c->class_name);
    if (!base)
        return sd_fail(err, SD_ERR_INVALID, "component '%s' (%s) has no weights", c->name, c->class_name);
    sd_status st = sd_weights_open_dir(w, c->dir, base, variant, err);
    if (st != SD_OK)
        sd_error_prefix(err, st, "component '%s': ", c->name);
    return st;
}

const sd_st_tensor *sd_weights_find(const sd_weights *w, const char *name)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(w->tensors[mid]->name, name);
        if (c == 0)
            return w->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int sd_weights_file_key(const sd_weights *w, const char *name, char *out, size_t len)
{
    if (!w->orig_component[0])
        return 0;
    sd_unet_layout ul = {w->orig_unet[0], w->orig_unet[1], (unsigned)w->orig_unet[2], (unsigned)w->orig_unet[3]};
    return sd_orig_key_of(w->orig_component, name, w->orig_refiner, w->orig_vae_file, w->orig_has_unet ? &ul : NULL,
                          w->orig_vae_levels, out, len);
}
