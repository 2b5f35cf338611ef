/* fuzz_job_spec.c - libFuzzer target for job specs and JSONL items: the
 * input as a SUBMIT's spec (common/job_spec.h), and each of its lines as an
 * item of that job (merged with the spec's defaults, when it parsed) through
 * the parameter table, as `sdxl submit`, the coordinator and the worker
 * decode them. Refused with a reason or accepted; never a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_text.h"
#include "common/job_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    sd_error err;
    json_t *spec = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DISABLE_EOF_CHECK, &je);
    if (spec)
        sd_job_spec_validate(spec, &err);
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        json_t *item = json_loads(line, JSON_ALLOW_NUL, &je);
        if (item) {
            sd_job_item_validate(json_object_get(spec, "defaults"), item, &err);
            json_t *p = sd_job_item_params(json_object_get(spec, "defaults"), item);
            json_decref(p);
        }
        json_decref(item);
    }
    json_decref(spec);
    free(text);
    return 0;
}
