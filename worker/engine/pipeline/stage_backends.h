/* stage_backends.h - the one place that decides which compute backend and
 * dtype each stage runs on, for `sdxl generate`, `sdxl eval` and the worker:
 *   - CPU: everything in f32 (the reference);
 *   - CUDA: the text encoders and UNets in the compute dtype (f16 unless
 *     --dtype bf16); a VAE whose config says force_upcast (SDXL's own, which
 *     overflows in f16; diffusers decodes it in f32) in bf16, f32's range
 *     (the CUDA kernels have no f32 path), on a second backend of the same
 *     device when the compute dtype is f16 and the process runs the final
 *     stage; a VAE with force_upcast false (the fp16-fix VAE) in the compute
 *     dtype, as diffusers (the pipeline picks, pipeline.c load_vae). */
#ifndef SDXL_WORKER_ENGINE_STAGE_BACKENDS_H
#define SDXL_WORKER_ENGINE_STAGE_BACKENDS_H

#include "common/dtype.h"
#include "kernels/ops.h"

typedef struct {
    sd_backend *be;     /* text encoders and UNets */
    sd_backend *vae_be; /* the VAE: a backend of its own, or NULL when it shares be */
    sd_dtype dtype;     /* be's compute dtype */
} sd_stage_backends;

/* device: "cpu", "cuda", "cuda:N"; dtype SD_DTYPE_COUNT for the default (f32
 * on the CPU, f16 on CUDA); an explicit dtype the device cannot compute in is
 * an error naming --dtype. stages: the SD_STAGE_* bits the process runs. */
sd_status sd_stage_backends_open(sd_stage_backends *sb, const char *device, sd_dtype dtype, int stages,
                                 sd_error *err);
/* The VAE's backend (vae_be, or be when they share). */
sd_backend *sd_stage_backends_vae(const sd_stage_backends *sb);
void sd_stage_backends_close(sd_stage_backends *sb);

#endif
