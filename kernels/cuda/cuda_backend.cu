// cuda_backend.cu - the CUDA backend (work in progress: device selection only).
#include "kernels/backend_impl.h"
#include "kernels/cuda/cuda_api.h"

extern "C" sd_status sd_cuda_backend_create(sd_backend **out, int device, sd_dtype dtype, sd_error *err)
{
    (void)dtype;
    *out = NULL;
    int n = sd_cuda_device_count();
    if (device >= n)
        return sd_fail(err, SD_ERR_INVALID, "device cuda:%d: %d CUDA device%s visible", device, n, n == 1 ? "" : "s");
    return sd_fail(err, SD_ERR_UNSUPPORTED, "device cuda:%d: the CUDA ops are not built yet", device);
}
