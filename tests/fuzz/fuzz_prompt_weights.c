/* fuzz_prompt_weights.c - libFuzzer target for compel's prompt syntax
 * (--long-prompts): any bytes as a prompt must give fragments or a reason,
 * in time linear in the nesting (the memo), never a crash or a hang. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_text.h"
#include "worker/engine/text/prompt_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    sd_prompt_fragments f;
    sd_error err;
    if (sd_prompt_parse_compel(text, &f, &err) == SD_OK) {
        if (f.n < 1)
            abort(); /* success always carries a fragment */
        sd_prompt_fragments_free(&f);
    }
    free(text);
    return 0;
}
