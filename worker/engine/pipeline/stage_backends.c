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
        return sd_fail(err, SD_ERR_INVALID, "--dtype %s: the CPU backend computes in f32 only", sd_dtype_name(dtype));
    if (!cpu && dtype != SD_DTYPE_F16 && dtype != SD_DTYPE_BF16)
        return sd_fail(err, SD_ERR_INVALID, "--dtype %s: the CUDA backend computes in f16 or bf16",
                       sd_dtype_name(dtype));
    sb->dtype = dtype;
    SD_TRY(sd_backend_create(&sb->be, device, dtype, err));
    if (!cpu && dtype == SD_DTYPE_F16 && (stages & SD_STAGE_FINAL)) {
        sd_status st = sd_backend_create(&sb->vae_be, device, SD_DTYPE_BF16, err);
        if (st != SD_OK) {
            sd_stage_backends_close(sb);
            return st;
        }
    }
    return SD_OK;
}

sd_backend *sd_stage_backends_vae(const sd_stage_backends *sb)
{
    return sb->vae_be ? sb->vae_be : sb->be;
}

void sd_stage_backends_close(sd_stage_backends *sb)
{
    sd_backend_free(sb->vae_be);
    sd_backend_free(sb->be);
    memset(sb, 0, sizeof *sb);
}
