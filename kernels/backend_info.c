/* backend_info.c - which compute backends this build has, for `--device`
 * validation and for `sdxl --version`-style reports. */
#include "backend_info.h"

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
