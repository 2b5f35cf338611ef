/* job_spec.c - see job_spec.h. */
#include "common/job_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gen_params.h"
#include "common/hashmap.h"

sd_status sd_job_spec_validate(const json_t *spec, sd_error *err)
{
    json_t *out = json_object_get(spec, "out"), *total = json_object_get(spec, "total");
    if (json_object_get(spec, "items"))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'items' travel in SUBMIT_ITEMS messages, not in the spec (a "
                                            "client older than the coordinator?)");
    if (!json_is_integer(total) || json_integer_value(total) < 1 || json_integer_value(total) > SD_JOB_MAX_ITEMS)
        return sd_fail(err, SD_ERR_INVALID, "spec: 'total' must be the number of items, 1 to %d", SD_JOB_MAX_ITEMS);
    const char *hash = json_string_value(json_object_get(spec, "items_hash"));
    if (!hash || strlen(hash) != 16 || strspn(hash, "0123456789abcdef") != 16)
        return sd_fail(err, SD_ERR_INVALID, "spec: 'items_hash' must be 16 hex digits");
    if (!json_is_string(out) || json_string_value(out)[0] != '/')
        return sd_fail(err, SD_ERR_INVALID, "spec: 'out' must be an absolute directory path");
    const char *fmt = json_string_value(json_object_get(spec, "format"));
    if (fmt && strcmp(fmt, "png") && strcmp(fmt, "webp") && strcmp(fmt, "jpeg"))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'format' must be png, webp or jpeg");
    const char *layout = json_string_value(json_object_get(spec, "layout"));
    if (json_object_get(spec, "layout") && (!layout || (strcmp(layout, "webdataset") && strcmp(layout, "files"))))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'layout' must be webdataset or files");
    json_t *shard = json_object_get(spec, "shard_size");
    if (shard && (!json_is_integer(shard) || json_integer_value(shard) < 1 || json_integer_value(shard) > 1000000))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'shard_size' must be an integer from 1 to 1000000");
    json_t *model = json_object_get(spec, "model");
    if (model && (!json_is_string(model) || json_string_length(model) == 0 || json_string_length(model) >= 80))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'model' must be a model identity string");
    json_t *defaults = json_object_get(spec, "defaults");
    if (defaults && !json_is_object(defaults))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'defaults' must be an object of generation parameters");
    if (json_object_get(defaults, "prompt") || json_object_get(defaults, "seed"))
        return sd_fail(err, SD_ERR_INVALID, "spec: 'defaults' may not hold 'prompt' or 'seed' (each item has its own)");
    /* the defaults alone, with a placeholder prompt and seed, as the worker decodes them */
    json_t *probe = json_pack("{s:s, s:i}", "prompt", "", "seed", 0);
    sd_status st = sd_job_item_validate(defaults, probe, err);
    json_decref(probe);
    return st == SD_OK ? SD_OK : sd_error_prefix(err, st, "spec: 'defaults': ");
}

sd_status sd_job_item_validate(const json_t *defaults, const json_t *item, sd_error *err)
{
    uint64_t seed;
    if (!json_is_object(item) || !json_is_string(json_object_get(item, "prompt")) ||
        sd_seed_from_json(json_object_get(item, "seed"), &seed))
        return sd_fail(err, SD_ERR_INVALID, "needs a 'prompt' string and a 'seed' (an integer from 0 to 2^64 - 1)");
    json_t *p = sd_job_item_params(defaults, item);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_gen_params g;
    sd_status st = sd_gen_params_from_json(&g, p, err);
    json_decref(p);
    return st;
}

json_t *sd_job_item_params(const json_t *defaults, const json_t *item)
{
    json_t *p = json_is_object(defaults) ? json_copy((json_t *)defaults) : json_object();
    if (p && json_object_update(p, (json_t *)item) != 0) {
        json_decref(p);
        return NULL;
    }
    return p;
}

uint64_t sd_job_items_hash_add(uint64_t h, const json_t *item)
{
    char *text = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS);
    h = sd_fnv1a(h, text ? text : "", text ? strlen(text) : 0);
    free(text);
    return sd_fnv1a(h, "\n", 1);
}
