/* model_folder.c - see model_folder.h. */
#include "model_folder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

static const struct {
    const char *class_name;
    sd_component_kind kind;
    const char *weights_basename;
} known_classes[] = {
    {"UNet2DConditionModel", SD_COMPONENT_KIND_WEIGHTS, "diffusion_pytorch_model"},
    {"AutoencoderKL", SD_COMPONENT_KIND_WEIGHTS, "diffusion_pytorch_model"},
    {"CLIPTextModel", SD_COMPONENT_KIND_WEIGHTS, "model"},
    {"CLIPTextModelWithProjection", SD_COMPONENT_KIND_WEIGHTS, "model"},
    {"CLIPTokenizer", SD_COMPONENT_KIND_TOKENIZER, NULL},
    {"CLIPTokenizerFast", SD_COMPONENT_KIND_TOKENIZER, NULL},
    {"EulerDiscreteScheduler", SD_COMPONENT_KIND_SCHEDULER, NULL},
    {"EulerAncestralDiscreteScheduler", SD_COMPONENT_KIND_SCHEDULER, NULL},
    {"DPMSolverMultistepScheduler", SD_COMPONENT_KIND_SCHEDULER, NULL},
    {"DDIMScheduler", SD_COMPONENT_KIND_SCHEDULER, NULL},
};

const char *sd_class_weights_basename(const char *class_name)
{
    for (size_t i = 0; i < sizeof known_classes / sizeof known_classes[0]; i++)
        if (strcmp(known_classes[i].class_name, class_name) == 0)
            return known_classes[i].weights_basename;
    return NULL;
}

static int class_kind(const char *class_name, sd_component_kind *kind)
{
    for (size_t i = 0; i < sizeof known_classes / sizeof known_classes[0]; i++)
        if (strcmp(known_classes[i].class_name, class_name) == 0) {
            *kind = known_classes[i].kind;
            return 0;
        }
    return -1;
}

void sd_model_close(sd_model_folder *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->comps[i].dir);
        free(m->comps[i].single_file);
    }
    free(m->root);
    free(m->single_file);
    memset(m, 0, sizeof *m);
}

/* Components whose value in model_index.json we skip: watermarker,
 * feature extractor and image encoder are not part of our pipeline. */
static int ignored_component(const char *name)
{
    return !strcmp(name, "add_watermarker") || !strcmp(name, "feature_extractor") ||
           !strcmp(name, "image_encoder") || !strcmp(name, "safety_checker");
}

/* Fills m's components from a model_index.json document; dir NULL for a
 * builtin index (components without folders). where names it in messages. */
static sd_status read_index(sd_model_folder *m, const sd_json_doc *doc, const char *dir, const char *where,
                            sd_error *err)
{
    sd_status st = SD_OK;
    snprintf(m->pipeline_class, sizeof m->pipeline_class, "%s", sd_json_string_or(doc, "_class_name", ""));
    m->force_zeros_for_empty_prompt = sd_json_bool_or(doc, "force_zeros_for_empty_prompt", -1);
    m->requires_aesthetics_score = sd_json_bool_or(doc, "requires_aesthetics_score", -1);
    const char *key;
    json_t *val;
    json_object_foreach(doc->root, key, val) {
        if (key[0] == '_' || !json_is_array(val) || ignored_component(key))
            continue;
        if (m->n == SD_MAX_COMPONENTS) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s: more than %d components", where, SD_MAX_COMPONENTS);
            break;
        }
        if (json_array_size(val) != 2) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s: component '%s' must be [library, class]", where, key);
            break;
        }
        sd_component *c = &m->comps[m->n];
        snprintf(c->name, sizeof c->name, "%s", key);
        json_t *lib = json_array_get(val, 0), *cls = json_array_get(val, 1);
        if (json_is_null(lib) && json_is_null(cls)) {
            c->present = 0;
            m->n++;
            continue;
        }
        if (!json_is_string(lib) || !json_is_string(cls)) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s: component '%s' must be [library, class]", where, key);
            break;
        }
        snprintf(c->library, sizeof c->library, "%s", json_string_value(lib));
        snprintf(c->class_name, sizeof c->class_name, "%s", json_string_value(cls));
        if (class_kind(c->class_name, &c->kind) != 0) {
            st = sd_fail(err, SD_ERR_UNSUPPORTED, "%s: component '%s' has unknown class '%s'", where, key,
                         c->class_name);
            break;
        }
        c->present = 1;
        m->n++;
        if (!dir)
            continue;
        c->dir = sd_path_join(dir, key);
        if (!c->dir) {
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
            break;
        }
        if (!sd_path_is_dir(c->dir)) {
            st = sd_fail(err, SD_ERR_MISSING, "%s: folder of component '%s' (%s) is missing", c->dir, key,
                         c->class_name);
            break;
        }
    }
    return st;
}

sd_status sd_model_open(sd_model_folder *m, const char *dir, sd_error *err)
{
    memset(m, 0, sizeof *m);
    if (!sd_path_is_dir(dir)) {
        if (sd_path_exists(dir))
            return sd_fail(err, SD_ERR_INVALID, "%s: not a model folder (a single-file checkpoint is read by "
                                                "`--model FILE`, see sdxl generate --help)", dir);
        return sd_fail(err, SD_ERR_MISSING, "%s: model folder not found", dir);
    }
    char *index_path = sd_path_join(dir, "model_index.json");
    if (!index_path)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_json_doc doc;
    sd_status st = sd_json_load(&doc, index_path, err);
    if (st == SD_OK) {
        m->root = strdup(dir);
        st = m->root ? read_index(m, &doc, dir, index_path, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
        sd_json_free(&doc);
    }
    free(index_path);
    if (st != SD_OK)
        sd_model_close(m);
    return st;
}

/* Which layout a single file has: 1 refiner (its one text encoder, OpenCLIP,
 * is embedders.0), 0 base, -1 neither. */
static int file_layout(const sd_st_file *f)
{
    int base = 0, refiner = 0;
    for (size_t i = 0; i < f->n; i++) {
        base |= !strncmp(f->tensors[i].name, "conditioner.embedders.1.model.", 30);
        refiner |= !strncmp(f->tensors[i].name, "conditioner.embedders.0.model.", 30);
    }
    return base && !refiner ? 0 : refiner && !base ? 1 : -1;
}

sd_status sd_model_open_file(sd_model_folder *m, const char *file, const char *config_dir,
                             const sd_builtin_model *builtin_base, const sd_builtin_model *builtin_refiner,
                             sd_error *err)
{
    memset(m, 0, sizeof *m);
    sd_st_file *f;
    SD_TRY(sd_st_open(&f, file, err));
    int refiner = file_layout(f);
    sd_st_close(f);
    if (refiner < 0)
        return sd_fail(err, SD_ERR_FORMAT,
                       "%s: not an SDXL base or refiner checkpoint in the original layout (no "
                       "conditioner.embedders.1.model. or conditioner.embedders.0.model. keys)",
                       file);
    sd_status st;
    if (config_dir) {
        st = sd_model_open(m, config_dir, err);
        if (st != SD_OK)
            return sd_error_prefix(err, st, "--config: ");
        const sd_component *te1 = sd_model_find(m, "text_encoder");
        int cfg_refiner = !te1 || !te1->present;
        if (cfg_refiner != refiner) {
            sd_model_close(m);
            return sd_fail(err, SD_ERR_INVALID, "%s holds an SDXL %s, but the --config folder %s is a %s", file,
                           refiner ? "refiner" : "base", config_dir, cfg_refiner ? "refiner" : "base");
        }
    } else {
        const sd_builtin_model *b = refiner ? builtin_refiner : builtin_base;
        sd_json_doc doc;
        SD_TRY(sd_json_load_text(&doc, b->model_index, strlen(b->model_index), "builtin model_index.json", err));
        m->root = strdup(file);
        st = m->root ? read_index(m, &doc, NULL, doc.path, err) : sd_fail(err, SD_ERR_NOMEM, "out of memory");
        sd_json_free(&doc);
        for (int i = 0; i < m->n && st == SD_OK; i++) {
            sd_component *c = &m->comps[i];
            if (!c->present || c->kind == SD_COMPONENT_KIND_TOKENIZER)
                continue;
            for (int k = 0; b->configs[k].name; k++)
                if (!strcmp(b->configs[k].name, c->name))
                    c->config_text = b->configs[k].text;
            if (!c->config_text)
                st = sd_fail(err, SD_ERR_MISSING, "builtin %s model: no config for component '%s'",
                             refiner ? "refiner" : "base", c->name);
        }
        if (st != SD_OK) {
            sd_model_close(m);
            return st;
        }
    }
    free(m->single_file);
    m->single_file = strdup(file);
    for (int i = 0; i < m->n; i++) {
        sd_component *c = &m->comps[i];
        if (!c->present || c->kind != SD_COMPONENT_KIND_WEIGHTS)
            continue;
        c->single_file = strdup(file);
        c->single_refiner = refiner;
        if (!c->single_file || !m->single_file) {
            sd_model_close(m);
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        }
    }
    return SD_OK;
}

sd_status sd_model_open_any(sd_model_folder *m, const char *path, const char *config_dir,
                            const sd_builtin_model *builtin_base, const sd_builtin_model *builtin_refiner,
                            sd_error *err)
{
    if (sd_path_is_dir(path)) {
        if (config_dir)
            return sd_fail(err, SD_ERR_INVALID, "--config %s: only for a single-file model; %s is a folder with its own configs",
                           config_dir, path);
        return sd_model_open(m, path, err);
    }
    if (!sd_path_exists(path)) {
        memset(m, 0, sizeof *m);
        return sd_fail(err, SD_ERR_MISSING, "%s: model folder or file not found", path);
    }
    return sd_model_open_file(m, path, config_dir, builtin_base, builtin_refiner, err);
}

const sd_component *sd_model_find(const sd_model_folder *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->comps[i].name, name) == 0)
            return &m->comps[i];
    return NULL;
}

sd_status sd_model_require(const sd_model_folder *m, const char *name, const sd_component **out,
                           sd_error *err)
{
    const sd_component *c = sd_model_find(m, name);
    if (!c)
        return sd_fail(err, SD_ERR_MISSING, "%s: model_index.json has no component '%s'", m->root, name);
    if (!c->present)
        return sd_fail(err, SD_ERR_MISSING, "%s: component '%s' is null in model_index.json", m->root, name);
    *out = c;
    return SD_OK;
}

sd_status sd_component_config(const sd_component *c, sd_json_doc *doc, sd_error *err)
{
    const char *file = c->kind == SD_COMPONENT_KIND_SCHEDULER   ? "scheduler_config.json"
                       : c->kind == SD_COMPONENT_KIND_TOKENIZER ? "tokenizer_config.json"
                                                      : "config.json";
    sd_status st;
    if (c->config_text) {
        char name[160];
        snprintf(name, sizeof name, "builtin %s/%s", c->name, file);
        st = sd_json_load_text(doc, c->config_text, strlen(c->config_text), name, err);
    } else {
        char *path = c->dir ? sd_path_join(c->dir, file) : NULL;
        if (!path)
            return sd_fail(err, c->dir ? SD_ERR_NOMEM : SD_ERR_MISSING,
                           c->dir ? "out of memory" : "component '%s' has no config", c->name);
        st = sd_json_load(doc, path, err);
        free(path);
    }
    if (st == SD_OK) {
        const char *cls = sd_json_string_or(doc, "_class_name", NULL);
        if (c->kind == SD_COMPONENT_KIND_WEIGHTS && !cls) {
            json_t *arch = json_object_get(doc->root, "architectures");
            if (json_is_array(arch) && json_is_string(json_array_get(arch, 0)))
                cls = json_string_value(json_array_get(arch, 0));
        }
        if (cls && c->kind == SD_COMPONENT_KIND_WEIGHTS && strcmp(cls, c->class_name) != 0) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s: config of component '%s' is for class '%s', model_index.json says '%s'",
                         doc->path, c->name, cls, c->class_name);
            sd_json_free(doc);
        }
    }
    return st;
}
