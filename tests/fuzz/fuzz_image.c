/* fuzz_image.c - libFuzzer target for init images (--init-image): PNG or
 * JPEG bytes decoded as `sdxl generate` reads them; any bytes must decode
 * or be refused with a reason (libpng's and libjpeg's errors caught). */
#include <stdint.h>
#include <stdlib.h>

#include "common/image_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    sd_error err;
    if (sd_image_decode(data, size, "fuzz", &rgb, &w, &h, &err) == SD_OK)
        free(rgb);
    return 0;
}
