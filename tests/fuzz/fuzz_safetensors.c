/* fuzz_safetensors.c - libFuzzer target for the safetensors reader: any byte
 * string must be parsed or refused with an error, never crash or read out of
 * bounds; an accepted file's every tensor byte must be readable. */
#include <stddef.h>
#include <stdint.h>

#include "common/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sd_st_file *f;
    sd_error err;
    if (sd_st_parse(&f, data, size, "fuzz.safetensors", &err) != SD_OK)
        return 0;
    volatile unsigned sum = 0;
    for (size_t i = 0; i < f->n; i++) {
        const unsigned char *p = f->tensors[i].data;
        for (uint64_t k = f->tensors[i].begin; k < f->tensors[i].end; k++)
            sum += p[k - f->tensors[i].begin];
        if (sd_st_find(f, f->tensors[i].name) != &f->tensors[i])
            __builtin_trap();
    }
    sd_st_close(f);
    return 0;
}
