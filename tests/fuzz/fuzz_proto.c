/* fuzz_proto.c - libFuzzer target for the wire decoder: the input is split
 * into frames at each "\xff\xfe" marker; any frames must be decoded or
 * refused with an error, never crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const void *frames[24];
    size_t sizes[24];
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i + 1 < size && n < 23; i++) {
        if (data[i] == 0xff && data[i + 1] == 0xfe) {
            frames[n] = data + start;
            sizes[n++] = i - start;
            start = i + 2;
            i++;
        }
    }
    frames[n] = data + start;
    sizes[n++] = size - start;
    sd_msg m;
    sd_error err;
    if (sd_msg_decode(&m, frames, sizes, n, &err) == SD_OK) {
        void *buf;
        size_t len;
        if (sd_msg_encode_header(&m, &buf, &len, &err) == SD_OK)
            free(buf);
        sd_msg_free(&m);
    }
    return 0;
}
