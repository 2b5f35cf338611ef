/* image_io.h - 8-bit RGB images to and from files. PNG carries text chunks
 * (the generation parameters, as other SD tools write them); WebP and JPEG
 * are chosen by extension. Reading accepts PNG and JPEG (for --init-image). */
#ifndef SDXL_COMMON_IMAGE_IO_H
#define SDXL_COMMON_IMAGE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct {
    const char *key, *value;
} sd_image_text;

typedef enum { SD_IMAGE_FORMAT_PNG, SD_IMAGE_FORMAT_WEBP, SD_IMAGE_FORMAT_JPEG } sd_image_format;

/* By the file's extension (.png .webp .jpg .jpeg, any case); -1 if none. */
int sd_image_format_of(const char *path);

/* Encodes rgb [height][width][3] into a malloc'd buffer. quality applies to
 * WebP and JPEG (1-100). */
sd_status sd_image_encode(sd_image_format fmt, const uint8_t *rgb, int width, int height, const sd_image_text *text,
                          int ntext, int quality, uint8_t **out, size_t *out_len, sd_error *err);
/* Encodes and writes atomically (temp file, fsync, rename). */
sd_status sd_image_write(const char *path, const uint8_t *rgb, int width, int height, const sd_image_text *text,
                         int ntext, sd_error *err);
/* Reads a PNG or JPEG as 8-bit RGB (alpha dropped, grey expanded). */
sd_status sd_image_read(const char *path, uint8_t **rgb, int *width, int *height, sd_error *err);
/* Images read are at most this wide and high (the largest generated size). */
#define SD_IMAGE_MAX_SIDE 8192
/* The same from bytes in memory; name is for messages. */
sd_status sd_image_decode(const void *data, size_t len, const char *name, uint8_t **rgb, int *width, int *height,
                          sd_error *err);

#endif
