/* lora.c - see lora.h. */
#include "common/lora.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hashmap.h"
#include "common/original_layout.h"

static int starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* ---- the model's modules, by dotted and by underscored name ---- */

typedef struct {
    char name[16];
    int present;
    char **modules; /* "down_blocks.0.resnets.0.conv1": parameters ending in .weight */
    size_t n;
    sd_strmap by_underscore; /* -> index, -1 when two modules collide */
    sd_strmap by_dot;
    sd_unet_layout layout; /* unet: to read kohya's original-layout names */
} component_modules;

static void modules_free(component_modules *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->modules[i]);
    free(c->modules);
    sd_strmap_free(&c->by_underscore);
    sd_strmap_free(&c->by_dot);
}

/* registers a module under its dotted and underscored names (an
 * underscored name two modules share resolves to neither: -1) */
static sd_status add_names(component_modules *cm, const char *dotted, const char *under, int32_t idx, sd_error *err)
{
    int32_t prev;
    int32_t u_idx = sd_strmap_get(&cm->by_underscore, under, strlen(under), &prev) && prev != idx ? -1 : idx;
    if (sd_strmap_put(&cm->by_underscore, under, strlen(under), u_idx) ||
        sd_strmap_put(&cm->by_dot, dotted, strlen(dotted), idx))
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    return SD_OK;
}

static sd_status modules_load(component_modules *cm, const sd_model_folder *m, const char *name, const char *variant,
                              sd_error *err)
{
    memset(cm, 0, sizeof *cm);
    snprintf(cm->name, sizeof cm->name, "%s", name);
    sd_strmap_init(&cm->by_underscore);
    sd_strmap_init(&cm->by_dot);
    const sd_component *c = sd_model_find(m, name);
    if (!c || !c->present)
        return SD_OK;
    cm->present = 1;
    if (!strcmp(name, "unet")) {
        sd_json_doc cfg;
        SD_TRY(sd_component_config(c, &cfg, err));
        sd_status st = sd_unet_layout_from_config(&cfg, &cm->layout, err);
        sd_json_free(&cfg);
        SD_TRY(st);
    }
    sd_weights w;
    SD_TRY(sd_weights_open(&w, c, variant, err));
    sd_status st = SD_OK;
    cm->modules = calloc(w.n ? w.n : 1, sizeof *cm->modules);
    if (!cm->modules)
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < w.n && st == SD_OK; i++) {
        const char *t = w.tensors[i]->name;
        size_t len = strlen(t);
        if (len < 8 || strcmp(t + len - 7, ".weight"))
            continue;
        char *mod = strndup(t, len - 7);
        if (!mod) {
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
            break;
        }
        int32_t idx = (int32_t)cm->n;
        cm->modules[cm->n++] = mod;
        char *u = strdup(mod);
        if (!u) {
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
            break;
        }
        for (char *p = u; *p; p++)
            if (*p == '.')
                *p = '_';
        st = add_names(cm, mod, u, idx, err);
        /* transformers 5 saves a text encoder without its "text_model."
         * root; LoRAs name the layers with it */
        if (st == SD_OK && !strncmp(name, "text_encoder", 12) && strncmp(mod, "text_model.", 11) &&
            strncmp(mod, "text_projection", 15)) {
            char dotted[320], under[320];
            snprintf(dotted, sizeof dotted, "text_model.%s", mod);
            snprintf(under, sizeof under, "text_model_%s", u);
            st = add_names(cm, dotted, under, idx, err);
        }
        free(u);
    }
    sd_weights_close(&w);
    return st;
}

struct sd_lora_index {
    component_modules cms[3];
    int ncm; /* those loaded (all 3 unless it failed part way) */
};

sd_status sd_lora_index_open(sd_lora_index **out, const sd_model_folder *m, const char *variant, sd_error *err)
{
    static const char *const names[3] = {"unet", "text_encoder", "text_encoder_2"};
    sd_lora_index *idx = calloc(1, sizeof *idx);
    if (!idx)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = SD_OK;
    for (int i = 0; i < 3 && st == SD_OK; i++, idx->ncm++)
        st = modules_load(&idx->cms[i], m, names[i], variant, err);
    if (st != SD_OK) {
        sd_lora_index_free(idx);
        return st;
    }
    *out = idx;
    return SD_OK;
}

void sd_lora_index_free(sd_lora_index *idx)
{
    if (!idx)
        return;
    for (int i = 0; i < idx->ncm; i++)
        modules_free(&idx->cms[i]);
    free(idx);
}

/* kohya's names of the UNet in the original layout (input_blocks_4_1_...):
 * the structural numbers and the resnet layer names put back in dotted
 * form, translated as a single-file key, then underscored again */
static int kohya_original_unet(const component_modules *cm, const char *u, char *out, size_t cap)
{
    static const char *const resnet[][2] = {
        {"in_layers_0", "in_layers.0"},   {"in_layers_2", "in_layers.2"},   {"emb_layers_1", "emb_layers.1"},
        {"out_layers_0", "out_layers.0"}, {"out_layers_3", "out_layers.3"},
    };
    char key[320];
    int a, b, used = 0;
    if (sscanf(u, "input_blocks_%d_%d_%n", &a, &b, &used) == 2 && used)
        snprintf(key, sizeof key, "input_blocks.%d.%d.", a, b);
    else if (sscanf(u, "output_blocks_%d_%d_%n", &a, &b, &used) == 2 && used)
        snprintf(key, sizeof key, "output_blocks.%d.%d.", a, b);
    else if (sscanf(u, "middle_block_%d_%n", &a, &used) == 1 && used)
        snprintf(key, sizeof key, "middle_block.%d.", a);
    else if (sscanf(u, "time_embed_%d%n", &a, &used) == 1 && used && !u[used])
        snprintf(key, sizeof key, "time_embed.%d.", a);
    else if (sscanf(u, "label_emb_0_%d%n", &a, &used) == 1 && used && !u[used])
        snprintf(key, sizeof key, "label_emb.0.%d.", a);
    else if (sscanf(u, "out_%d%n", &a, &used) == 1 && used && !u[used])
        snprintf(key, sizeof key, "out.%d.", a);
    else
        return -1;
    const char *rest = u + used;
    const char *tail = rest;
    for (size_t i = 0; i < sizeof resnet / sizeof resnet[0]; i++)
        if (!strcmp(rest, resnet[i][0]))
            tail = resnet[i][1];
    if (*tail)
        snprintf(key + strlen(key), sizeof key - strlen(key), "%s.weight", tail);
    else
        snprintf(key + strlen(key), sizeof key - strlen(key), "weight");
    sd_orig_target t[3];
    int n;
    sd_error ignore;
    if (sd_orig_unet_name(key, &cm->layout, t, &n, key, &ignore) != SD_OK || n != 1)
        return -1;
    size_t len = strlen(t[0].name);
    if (len < 8 || len - 7 >= cap)
        return -1;
    memcpy(out, t[0].name, len - 7);
    out[len - 7] = 0;
    for (char *p = out; *p; p++)
        if (*p == '.')
            *p = '_';
    return 0;
}

/* ---- the file's modules ---- */

typedef enum { PART_UP, PART_DOWN, PART_ALPHA, PART_NONE } part_kind;

/* Splits key into module and part by its suffix. */
static part_kind split_part(const char *key, size_t *module_len)
{
    static const struct {
        const char *suffix;
        part_kind part;
    } sfx[] = {
        {".lora_up.weight", PART_UP},   {".lora_down.weight", PART_DOWN}, {".lora_B.weight", PART_UP},
        {".lora_A.weight", PART_DOWN},  {".lora.up.weight", PART_UP},     {".lora.down.weight", PART_DOWN},
        {".lora_B.default.weight", PART_UP}, {".lora_A.default.weight", PART_DOWN}, {".alpha", PART_ALPHA},
    };
    size_t len = strlen(key);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        size_t l = strlen(sfx[i].suffix);
        if (len > l && !strcmp(key + len - l, sfx[i].suffix)) {
            *module_len = len - l;
            return sfx[i].part;
        }
    }
    return PART_NONE;
}

typedef struct {
    char *module;
    const sd_st_tensor *up, *down, *alpha;
} file_module;

static sd_status resolve(const component_modules *cms, int ncm, const char *path, const char *module, char *comp_out,
                         char *target, size_t cap, sd_error *err)
{
    const char *m = module;
    if (starts(m, "base_model.model."))
        m += strlen("base_model.model.");
    static const struct {
        const char *prefix, *component;
        int underscored;
    } pre[] = {
        {"lora_unet_", "unet", 1},          {"lora_te1_", "text_encoder", 1},   {"lora_te2_", "text_encoder_2", 1},
        {"lora_te_", "text_encoder", 1},    {"unet.", "unet", 0},               {"text_encoder_2.", "text_encoder_2", 0},
        {"text_encoder.", "text_encoder", 0},
    };
    const char *comp = NULL, *rest = m;
    int underscored = 0;
    for (size_t i = 0; i < sizeof pre / sizeof pre[0] && !comp; i++)
        if (starts(m, pre[i].prefix)) {
            comp = pre[i].component;
            rest = m + strlen(pre[i].prefix);
            underscored = pre[i].underscored;
        }
    if (!comp) /* a bare PEFT state dict of the UNet */
        comp = "unet";
    const component_modules *cm = NULL;
    for (int i = 0; i < ncm; i++)
        if (!strcmp(cms[i].name, comp))
            cm = &cms[i];
    if (!cm || !cm->present)
        return sd_fail(err, SD_ERR_INVALID, "%s: LoRA module '%s' is for the %s, which this model does not have", path,
                       module, comp);
    int32_t idx = -2;
    /* diffusers' older attention-processor names: attn1.processor.to_q_lora */
    char dotted[320];
    snprintf(dotted, sizeof dotted, "%s", rest);
    char *proc = strstr(dotted, ".processor.");
    if (proc && !underscored) {
        char *lora = strstr(proc, "_lora");
        if (lora && !lora[5]) {
            *lora = 0;
            memmove(proc + 1, proc + strlen(".processor."), strlen(proc + strlen(".processor.")) + 1);
            if (!strncmp(proc + 1, "to_out", 6) && !proc[7])
                strcat(dotted, ".0");
        }
    }
    if (underscored) {
        if (!sd_strmap_get(&cm->by_underscore, rest, strlen(rest), &idx) && !strcmp(comp, "unet")) {
            char u[320];
            if (kohya_original_unet(cm, rest, u, sizeof u) == 0 && !sd_strmap_get(&cm->by_underscore, u, strlen(u), &idx))
                idx = -2;
        }
        if (idx == -1)
            return sd_fail(err, SD_ERR_FORMAT, "%s: LoRA module '%s' matches more than one layer of the %s", path,
                           module, comp);
    } else if (!sd_strmap_get(&cm->by_dot, dotted, strlen(dotted), &idx)) {
        idx = -2;
    }
    if (idx < 0)
        return sd_fail(err, SD_ERR_FORMAT, "%s: LoRA module '%s' matches no layer of the %s", path, module, comp);
    snprintf(comp_out, 16, "%s", comp);
    snprintf(target, cap, "%s.weight", cm->modules[idx]);
    return SD_OK;
}

static int64_t numel_of(const sd_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static sd_status check_pair(const char *path, const file_module *fm, sd_error *err)
{
    if (!fm->up || !fm->down)
        return sd_fail(err, SD_ERR_FORMAT, "%s: LoRA module '%s' has no %s weight", path, fm->module,
                       fm->up ? "down (lora_down / lora_A)" : "up (lora_up / lora_B)");
    const sd_st_tensor *u = fm->up, *d = fm->down;
    if (u->ndim < 2 || d->ndim < 2 || u->shape[1] != d->shape[0] || (u->ndim == 4 && (u->shape[2] != 1 || u->shape[3] != 1)))
        return sd_fail(err, SD_ERR_FORMAT,
                       "%s: LoRA module '%s': up and down do not compose (up [out, rank(, 1, 1)], down [rank, in(, kh, kw)])",
                       path, fm->module);
    if (!sd_dtype_is_float(u->dtype) || !sd_dtype_is_float(d->dtype))
        return sd_fail(err, SD_ERR_FORMAT, "%s: LoRA module '%s' is not floating point", path, fm->module);
    return SD_OK;
}

static int cmp_module(const void *a, const void *b)
{
    return strcmp(((const file_module *)a)->module, ((const file_module *)b)->module);
}

sd_status sd_lora_open(sd_lora *l, const char *path, float scale, const sd_lora_index *idx, sd_error *err)
{
    memset(l, 0, sizeof *l);
    l->scale = scale;
    l->path = strdup(path);
    if (!l->path)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = sd_st_open(&l->file, path, err);
    if (st != SD_OK) {
        sd_lora_close(l);
        return st;
    }
    const sd_st_file *f = l->file;
    file_module *fms = calloc(f->n ? f->n : 1, sizeof *fms);
    size_t nfm = 0;
    if (!fms)
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    /* group the tensors by module (names are sorted: a module's parts are
     * not always adjacent, so look up by name) */
    sd_strmap by_module;
    sd_strmap_init(&by_module);
    for (size_t i = 0; i < f->n && st == SD_OK; i++) {
        const sd_st_tensor *t = &f->tensors[i];
        size_t ml;
        part_kind part = split_part(t->name, &ml);
        if (part == PART_NONE) {
            st = sd_fail(err, SD_ERR_UNSUPPORTED,
                         "%s: tensor '%s' is not part of a LoRA (lora_up/lora_down/alpha, lora_A/lora_B); LoHa, LoKr, "
                         "DoRA and LoCon's lora_mid are not supported",
                         path, t->name);
            break;
        }
        int32_t k;
        if (!sd_strmap_get(&by_module, t->name, ml, &k)) {
            k = (int32_t)nfm;
            fms[nfm].module = strndup(t->name, ml);
            if (!fms[nfm++].module || sd_strmap_put(&by_module, t->name, ml, k)) {
                st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
                break;
            }
        }
        const sd_st_tensor **slot = part == PART_UP ? &fms[k].up : part == PART_DOWN ? &fms[k].down : &fms[k].alpha;
        *slot = t;
    }
    if (st == SD_OK && nfm == 0)
        st = sd_fail(err, SD_ERR_FORMAT, "%s: no LoRA tensors", path);
    sd_strmap_free(&by_module);
    qsort(fms, nfm, sizeof *fms, cmp_module);
    if (st == SD_OK) {
        l->d = calloc(nfm, sizeof *l->d);
        if (!l->d)
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < nfm && st == SD_OK; i++) {
        st = check_pair(path, &fms[i], err);
        if (st != SD_OK)
            break;
        sd_lora_delta *d = &l->d[l->n];
        st = resolve(idx->cms, idx->ncm, path, fms[i].module, d->component, d->target, sizeof d->target, err);
        if (st != SD_OK)
            break;
        d->up = fms[i].up;
        d->down = fms[i].down;
        float rank = (float)fms[i].down->shape[0], alpha = rank;
        if (fms[i].alpha) {
            if (numel_of(fms[i].alpha) != 1 || sd_convert_to_f32(&alpha, fms[i].alpha->data, fms[i].alpha->dtype, 1) ||
                !isfinite(alpha)) {
                st = sd_fail(err, SD_ERR_FORMAT, "%s: tensor '%s' must be one finite number", path, fms[i].alpha->name);
                break;
            }
        }
        d->scale = scale * alpha / rank;
        l->n++;
    }
    for (size_t i = 0; i < nfm; i++)
        free(fms[i].module);
    free(fms);
    if (st != SD_OK) {
        sd_lora_close(l);
        return st;
    }
    return SD_OK;
}

void sd_lora_close(sd_lora *l)
{
    if (l->file)
        sd_st_close(l->file);
    free(l->d);
    free(l->path);
    memset(l, 0, sizeof *l);
}

static int cmp_delta(const void *a, const void *b)
{
    return strcmp((*(const sd_lora_delta *const *)a)->target, (*(const sd_lora_delta *const *)b)->target);
}

sd_status sd_lora_deltas_for(const sd_lora *loras, int nloras, const char *component, sd_lora_deltas *out,
                             sd_error *err)
{
    memset(out, 0, sizeof *out);
    size_t total = 0;
    for (int i = 0; i < nloras; i++)
        total += loras[i].n;
    out->d = malloc((total ? total : 1) * sizeof *out->d);
    if (!out->d)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nloras; i++)
        for (size_t k = 0; k < loras[i].n; k++)
            if (!strcmp(loras[i].d[k].component, component))
                out->d[out->n++] = &loras[i].d[k];
    qsort(out->d, out->n, sizeof *out->d, cmp_delta);
    return SD_OK;
}

void sd_lora_deltas_free(sd_lora_deltas *d)
{
    free(d->d);
    memset(d, 0, sizeof *d);
}

size_t sd_lora_deltas_find(const sd_lora_deltas *d, const char *target, size_t *count)
{
    size_t lo = 0, hi = d ? d->n : 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(d->d[mid]->target, target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (d && end < d->n && !strcmp(d->d[end]->target, target))
        end++;
    *count = end - lo;
    return lo;
}
