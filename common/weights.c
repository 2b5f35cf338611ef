/* weights.c - a component's weights: one safetensors file or a sharded set
 * behind an index, chosen by variant, looked up by tensor name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "json_config.h"
#include "model_folder.h"

void sd_weights_close(sd_weights *w)
{
    for (int i = 0; i < w->nfiles; i++)
        sd_st_close(w->files[i]);
    free(w->files);
    free(w->tensors);
    free(w->description);
    free(w->index_path);
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
    size_t total = 0;
    for (int i = 0; i < w->nfiles; i++)
        total += w->files[i]->n;
    w->tensors = malloc((total ? total : 1) * sizeof *w->tensors);
    if (!w->tensors)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < w->nfiles; i++)
        for (size_t j = 0; j < w->files[i]->n; j++)
            w->tensors[w->n++] = &w->files[i]->tensors[j];
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

sd_status sd_weights_open(sd_weights *w, const sd_component *c, const char *variant, sd_error *err)
{
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
