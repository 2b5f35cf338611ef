/* stage_backends.h - the one place that decides which compute backend and
 * dtype each stage runs on, for `sdxl generate`, `sdxl eval` and the worker:
 *   - CPU: everything in f32 (the reference);
 *   - CUDA: the text encoders and UNets in the compute dtype (f16 unless
 *     --dtype bf16 or f32); the VAE as diffusers' SDXL pipelines run it: in
 *     f32 where its config says force_upcast (SDXL's own VAE, which
 *     overflows in f16) and the pipeline would upcast (sd_vae_upcasts), else
 *     in the compute dtype (the fp16-fix VAE says force_upcast: false). The
 *     f32 VAE runs on a second backend of the same device, opened when the
 *     process runs a stage with a VAE (UNet: img2img encoding; final:
 *     decoding) and the compute dtype is not already f32. */
#ifndef SDXL_WORKER_ENGINE_STAGE_BACKENDS_H
#define SDXL_WORKER_ENGINE_STAGE_BACKENDS_H

#include "common/dtype.h"
#include "kernels/ops.h"

typedef struct {
    sd_backend *be;     /* text encoders and UNets */
    sd_backend *f32_be; /* the upcast VAE: an f32 backend of its own, or NULL when be computes in f32 */
    sd_dtype dtype;     /* be's compute dtype */
} sd_stage_backends;

/* device: "cpu", "cuda", "cuda:N"; dtype SD_DTYPE_COUNT for the default (f32
 * on the CPU, f16 on CUDA); an explicit dtype the device cannot compute in is
 * an error naming --dtype. stages: the SD_STAGE_* bits the process runs. */
sd_status sd_stage_backends_open(sd_stage_backends *sb, const char *device, sd_dtype dtype, int stages,
                                 sd_error *err);
void sd_stage_backends_close(sd_stage_backends *sb);

/* Whether diffusers runs a VAE in float32 in a pipeline computing in
 * `compute`: decoding (encode 0) upcasts only a float16 VAE whose config says
 * force_upcast ("needs_upcasting = self.vae.dtype == torch.float16 and
 * self.vae.config.force_upcast"); img2img's encoding (encode 1) upcasts
 * whenever force_upcast ("if self.vae.config.force_upcast: image =
 * image.float(); self.vae.to(dtype=torch.float32)"), bfloat16 included. */
int sd_vae_upcasts(sd_dtype compute, int force_upcast, int encode);

/* The backend a VAE with this force_upcast encodes (encode 1) or decodes on:
 * f32_be where sd_vae_upcasts says so, else be. */
sd_backend *sd_stage_vae_backend(sd_backend *be, sd_backend *f32_be, int force_upcast, int encode);

#endif
