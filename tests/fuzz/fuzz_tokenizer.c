/* fuzz_tokenizer.c - libFuzzer target for the CLIP tokenizer: any bytes as a
 * prompt (invalid UTF-8, NUL, huge words) must give 77 ids or a reason. The
 * tokenizer is the real one (the embedded vocabulary), loaded once. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_text.h"
#include "worker/engine/text/clip_tokenizer.h"
#include "worker/engine/text/clip_vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static sd_clip_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/sdxl-fuzz-tok-XXXXXX";
    sd_error err;
    if (!mkdtemp(dir) || sd_clip_write_tokenizer(dir, 1, &err) != SD_OK ||
        sd_clip_tokenizer_load(&tok, dir, &err) != SD_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot set up the tokenizer in %s\n", dir);
        abort();
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_tokenizer: %s left behind\n", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    int64_t ids[77];
    int n = 0;
    sd_error err;
    sd_clip_tokenize(tok, text, ids, &n, &err);
    free(text);
    return 0;
}
