/* watermark.h - the invisible watermark diffusers' SDXL pipelines add when
 * the invisible-watermark package is installed (as the seed's instructions
 * install it): StableDiffusionXLWatermarker, dwtDct with its 48 bits, on
 * images 256 pixels wide or more. Applied to the decoder's output before
 * it becomes 8-bit, as diffusers does. */
#ifndef SDXL_WORKER_WATERMARK_H
#define SDXL_WORKER_WATERMARK_H

/* Whether an image of this size gets the watermark (256 wide and 256*256
 * pixels or more: diffusers' check and the encoder's). */
int sd_watermark_applies(int width, int height);
/* chw: the decoded image [3, height, width] in -1..1 (RGB), in place.
 * 1 applied, 0 not (too small), -1 out of memory. */
int sd_watermark_apply(float *chw, int width, int height);

#endif
