/* lora_merge.h - merging one LoRA delta into a weight, in fp32, before any
 * cast: W += scale * up @ down (PEFT's merge: the product, times alpha /
 * rank and the user's scale, added to the weight). A convolution's delta is
 * the same product with down [rank, in, kh, kw] flattened to [rank, in*kh*kw]
 * and up [out, rank, 1, 1] to [out, rank]. */
#ifndef SDXL_WORKER_LORA_MERGE_H
#define SDXL_WORKER_LORA_MERGE_H

#include <stddef.h>

#include "common/lora.h"

/* w: the weight [rows, cols] (cols: everything after the first dimension). */
sd_status sd_lora_merge(float *w, size_t rows, size_t cols, const sd_lora_delta *d, sd_error *err);

#endif
