/* image_meta.h - the generation parameters written with each image: its
 * text chunks (PNG tEXt, WebP/JPEG comments) and the JSON record of a job
 * item. Both come from the parameter table (common/gen_params.h: the rows
 * marked in_metadata) plus what the run decided: the actual size and the
 * model. One function for `sdxl generate` and the cluster's final workers,
 * so the same parameters give byte-identical files either way. */
#ifndef SDXL_WORKER_IMAGE_META_H
#define SDXL_WORKER_IMAGE_META_H

#include <jansson.h>

#include "common/gen_params.h"
#include "common/image_io.h"
#include "worker/engine/pipeline/pipeline.h"

#define SD_IMAGE_META_MAX 32

typedef struct {
    char buf[SD_IMAGE_META_MAX][48];
    char sched[256];   /* the sampler that ran, with its settings */
    char params[4096]; /* A1111's "parameters" text */
    char truncated[2048]; /* what CLIP's 77 tokens cut from the prompts */
    char batch[64];
    int sched_ran; /* whether sched describes the scheduler built for the run */
    sd_image_text text[SD_IMAGE_META_MAX];
    int n;
} sd_image_meta;

/* g's parameters that changed the image (those that matter only with a
 * refiner, an init image or when given, only then), "scheduler" as it ran
 * (class and settings), "size" (width x height as made), "model" (p's
 * identity), "variant", "vae" and "loras" (file names and content hashes,
 * when p was given them), A1111's "parameters" text (which A1111, ComfyUI
 * importers and Civitai read) and "software". The prompts and notes are
 * borrowed. */
void sd_image_meta_fill(sd_image_meta *m, const sd_gen_params *g, int width, int height, const sd_pipeline *p);
/* The same record as JSON fields of info (width and height apart), from m
 * as sd_image_meta_fill left it for the same g, size and p: the scheduler
 * is built and the prompts tokenized once per image, not once per form. */
void sd_image_meta_json(json_t *info, const sd_image_meta *m, const sd_gen_params *g, int width, int height,
                        const sd_pipeline *p);
/* Encodes rgb with the metadata as fmt (a job item's format). */
sd_status sd_image_meta_encode(const sd_image_meta *m, sd_image_format fmt, const uint8_t *rgb, int width, int height,
                               uint8_t **out, size_t *len, sd_error *err);

#endif
