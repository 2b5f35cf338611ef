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
    for (int i = 0; i < m->n; i++)
        free(m->comps[i].dir);
    free(m->root);
    memset(m, 0, sizeof *m);
}

/* Components whose value in model_index.json we skip: watermarker,
 * feature extractor and image encoder are not part of our pipeline. */
static int ignored_component(const char *name)
{
    return !strcmp(name, "add_watermarker") || !strcmp(name, "feature_extractor") ||
           !strcmp(name, "image_encoder") || !strcmp(name, "safety_checker");
}

sd_status sd_model_open(sd_model_folder *m, const char *dir, sd_error *err)
{
    memset(m, 0, sizeof *m);
    if (!sd_path_is_dir(dir))
        return sd_fail(err, SD_ERR_MISSING, "%s: model folder not found", dir);
    char *index_path = sd_path_join(dir, "model_index.json");
    if (!index_path)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_json_doc doc;
    sd_status st = sd_json_load(&doc, index_path, err);
    free(index_path);
    if (st != SD_OK)
        return st;
    m->root = strdup(dir);
    snprintf(m->pipeline_class, sizeof m->pipeline_class, "%s", sd_json_string_or(&doc, "_class_name", ""));
    m->force_zeros_for_empty_prompt = sd_json_bool_or(&doc, "force_zeros_for_empty_prompt", -1);
    m->requires_aesthetics_score = sd_json_bool_or(&doc, "requires_aesthetics_score", -1);
    const char *key;
    json_t *val;
    json_object_foreach(doc.root, key, val) {
        if (key[0] == '_' || !json_is_array(val) || ignored_component(key))
            continue;
        if (m->n == SD_MAX_COMPONENTS) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s/model_index.json: more than %d components", dir,
                         SD_MAX_COMPONENTS);
            break;
        }
        if (json_array_size(val) != 2) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s/model_index.json: component '%s' must be [library, class]",
                         dir, key);
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
            st = sd_fail(err, SD_ERR_FORMAT, "%s/model_index.json: component '%s' must be [library, class]",
                         dir, key);
            break;
        }
        snprintf(c->library, sizeof c->library, "%s", json_string_value(lib));
        snprintf(c->class_name, sizeof c->class_name, "%s", json_string_value(cls));
        if (class_kind(c->class_name, &c->kind) != 0) {
            st = sd_fail(err, SD_ERR_UNSUPPORTED, "%s/model_index.json: component '%s' has unknown class '%s'",
                         dir, key, c->class_name);
            break;
        }
        c->present = 1;
        c->dir = sd_path_join(dir, key);
        if (!c->dir) {
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
            break;
        }
        m->n++;
        if (!sd_path_is_dir(c->dir)) {
            st = sd_fail(err, SD_ERR_MISSING, "%s: folder of component '%s' (%s) is missing", c->dir, key,
                         c->class_name);
            break;
        }
    }
    sd_json_free(&doc);
    if (st != SD_OK)
        sd_model_close(m);
    return st;
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
    char *path = sd_path_join(c->dir, file);
    if (!path)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = sd_json_load(doc, path, err);
    free(path);
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
