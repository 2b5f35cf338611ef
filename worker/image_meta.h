/* image_meta.h - the generation parameters written into an image's text
 * chunks. One function for `sdxl generate` and the cluster's final workers,
 * so the same parameters give byte-identical files either way. */
#ifndef SDXL_WORKER_IMAGE_META_H
#define SDXL_WORKER_IMAGE_META_H

#include "common/image_io.h"
#include "worker/pipeline.h"

#define SD_IMAGE_META_N 9

typedef struct {
    char seed[32], steps[16], guidance[32], size[32];
    sd_image_text text[SD_IMAGE_META_N];
} sd_image_meta;

void sd_image_meta_fill(sd_image_meta *m, const sd_gen_params *g, int width, int height, const char *identity);
/* The value written under key ("scheduler", "model", ...), or NULL. */
const char *sd_image_meta_value(const sd_image_meta *m, const char *key);
/* Encodes rgb with the metadata in the format named by ext ("png", "webp", "jpg"). */
sd_status sd_image_meta_encode(const sd_image_meta *m, const char *ext, const uint8_t *rgb, int width, int height,
                               uint8_t **out, size_t *len, sd_error *err);

#endif
