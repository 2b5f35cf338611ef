/* fuzz_text.h - the fuzzer's bytes as a C string, for the targets whose
 * input is text (prompts, configs, job specs). */
#ifndef SDXL_TESTS_FUZZ_TEXT_H
#define SDXL_TESTS_FUZZ_TEXT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* data[0..size) and a NUL, malloc'd; NULL out of memory (skip the input) */
static inline char *fuzz_text(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
    }
    return text;
}

#endif
