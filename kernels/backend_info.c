/* backend_info.c - which compute backends this build has, for `--device`
 * validation and for `sdxl --version`-style reports. */
#include "kernels/backend_info.h"

#include <stdio.h>

#ifdef SDXL_HAVE_CUDA
#include "kernels/cuda/cuda_api.h"
#endif

int sd_backend_cuda_compiled(void)
{
#ifdef SDXL_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int sd_backend_cuda_devices(void)
{
#ifdef SDXL_HAVE_CUDA
    return sd_cuda_device_count();
#else
    return 0;
#endif
}

sd_status sd_backend_cuda_device_name(int i, char *buf, int len, sd_error *err)
{
#ifdef SDXL_HAVE_CUDA
    return sd_cuda_device_name(i, buf, len, err);
#else
    (void)i;
    (void)buf;
    (void)len;
    return sd_fail(err, SD_ERR_UNSUPPORTED, "this build has no CUDA backend");
#endif
}
