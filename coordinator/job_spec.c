/* job_spec.c - see job_spec.h. */
#include "coordinator/job_spec.h"

#include <stdio.h>
#include <string.h>

#include "common/gen_params.h"

sd_status sd_job_spec_validate(const json_t *spec, sd_error *err)
{
    json_t *items = json_object_get(spec, "items"), *out = json_object_get(spec, "out");
    if (!json_is_array(items) || json_array_size(items) == 0 || json_array_size(items) > 10000000)
        return sd_fail(err, SD_ERR_INVALID, "spec: 'items' must be a non-empty list");
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
    size_t i;
    json_t *it;
    json_array_foreach((json_t *)items, i, it) {
        if (!json_is_object(it) || !json_is_string(json_object_get(it, "prompt")) ||
            !json_is_integer(json_object_get(it, "seed")))
            return sd_fail(err, SD_ERR_INVALID, "spec: item %zu needs a 'prompt' string and an integer 'seed'", i);
        /* every key as the worker will decode it: a bad one fails the
         * submission now, not the item after its attempts */
        sd_gen_params g;
        if (sd_gen_params_from_json(&g, it, err) != SD_OK)
            return sd_error_prefix(err, err->code, "spec: item %zu: ", i);
    }
    return SD_OK;
}
