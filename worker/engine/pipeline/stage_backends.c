/* stage_backends.c - see stage_backends.h. */
#include "worker/engine/pipeline/stage_backends.h"

#include <string.h>

#include "kernels/device.h"
#include "worker/engine/pipeline/pipeline.h"

sd_status sd_stage_backends_open(sd_stage_backends *sb, const char *device, sd_dtype dtype, int stages,
                                 sd_error *err)
{
    memset(sb, 0, sizeof *sb);
    sd_device d;
    SD_TRY(sd_device_parse(device, &d, err));
    int cpu = d.kind == SD_DEVICE_KIND_CPU;
    if (dtype == SD_DTYPE_COUNT)
        dtype = cpu ? SD_DTYPE_F32 : SD_DTYPE_F16;
    if (cpu && dtype != SD_DTYPE_F32)
        return sd_fail(err, SD_ERR_INVALID, "--dtype %s: the CPU backend computes in f32 only", sd_dtype_user_name(dtype));
    /* on CUDA every --dtype computes (f32, f16, bf16); sd_backend_create refuses anything else */
    sb->dtype = dtype;
    SD_TRY(sd_backend_create(&sb->be, device, dtype, err));
    if (dtype != SD_DTYPE_F32 && (stages & (SD_STAGE_UNET | SD_STAGE_FINAL))) {
        sd_status st = sd_backend_create(&sb->f32_be, device, SD_DTYPE_F32, err);
        if (st != SD_OK) {
            sd_stage_backends_close(sb);
            return sd_error_prefix(err, st, "the f32 VAE backend: ");
        }
    }
    return SD_OK;
}

int sd_vae_upcasts(sd_dtype compute, int force_upcast, int encode)
{
    if (compute == SD_DTYPE_F32 || !force_upcast)
        return 0;
    return encode || compute == SD_DTYPE_F16;
}

sd_backend *sd_stage_vae_backend(sd_backend *be, sd_backend *f32_be, int force_upcast, int encode)
{
    return f32_be && sd_vae_upcasts(sd_backend_dtype(be), force_upcast, encode) ? f32_be : be;
}

void sd_stage_backends_close(sd_stage_backends *sb)
{
    sd_backend_free(sb->f32_be);
    sd_backend_free(sb->be);
    memset(sb, 0, sizeof *sb);
}
