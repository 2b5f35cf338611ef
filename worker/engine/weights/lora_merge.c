/* lora_merge.c - see lora_merge.h. The CPU backend's sgemm computes
 * W = scale * (up @ down) + W: each delta element summed over the rank in
 * order, then scaled and added, as PEFT's product then scale. */
#include "worker/engine/weights/lora_merge.h"

#include "kernels/ops.h"

#include <stdlib.h>
#include <string.h>

sd_status sd_lora_merge(float *w, size_t rows, size_t cols, const sd_lora_delta *d, sd_error *err)
{
    size_t rank = (size_t)d->down->shape[0];
    size_t un = sd_st_numel(d->up), dn = sd_st_numel(d->down);
    if (un != rows * rank || dn != rank * cols)
        return sd_fail(err, SD_ERR_FORMAT,
                       "LoRA up (%zu values) and down (%zu values) of rank %zu do not make a [%zu, %zu] delta", un, dn,
                       rank, rows, cols);
    float *up = malloc(un * sizeof *up), *down = malloc(dn * sizeof *down);
    if (!up || !down) {
        free(up);
        free(down);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    sd_convert_to_f32(up, d->up->data, d->up->dtype, un);
    sd_convert_to_f32(down, d->down->data, d->down->dtype, dn);
    sd_host_sgemm_acc((int64_t)rows, (int64_t)cols, (int64_t)rank, d->scale, up, down, w);
    free(up);
    free(down);
    return SD_OK;
}
