/* fuzz_tensor_blob.c - libFuzzer target for the tensor frames a stage
 * result is stored as (proto/tensor_blob.h): any bytes must be attached to
 * a message or refused with a reason, and what is attached must pack again. */
#include <stdint.h>
#include <stdlib.h>

#include "proto/tensor_blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sd_msg m;
    sd_error err;
    if (sd_msg_new(&m, "TASK", &err) != SD_OK)
        return 0;
    if (sd_blob_attach(&m, data, size, "0", &err) == SD_OK) {
        void *blob = NULL;
        size_t len = 0;
        if (sd_blob_pack(&m, &blob, &len, &err) == SD_OK)
            free(blob);
    }
    sd_msg_free(&m);
    return 0;
}
