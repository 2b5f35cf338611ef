/* fuzz_job_spec.c - libFuzzer target for job specs and JSONL items: the
 * input as a SUBMIT's spec (coordinator/job_spec.h), and each of its lines
 * as a JSONL item through the parameter table, as `sdxl submit` and the
 * worker decode them. Refused with a reason or accepted; never a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/gen_params.h"
#include "coordinator/job_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    sd_error err;
    json_t *spec = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &je);
    if (spec) {
        sd_job_spec_validate(spec, &err);
        json_decref(spec);
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        json_t *item = json_loads(line, JSON_ALLOW_NUL, &je);
        sd_gen_params g;
        if (item)
            sd_gen_params_from_json(&g, item, &err);
        json_decref(item);
    }
    free(text);
    return 0;
}
