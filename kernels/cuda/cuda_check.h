/* cuda_check.h - error checks for CUDA and cuBLASLt calls that carry the op,
 * file and line into an sd_error instead of exiting (a worker must report a
 * failed item and keep serving). */
#ifndef SDXL_KERNELS_CUDA_CHECK_H
#define SDXL_KERNELS_CUDA_CHECK_H

#include <cuda_runtime.h>

#include "common/error.h"

#define SD_CUDA_TRY(call, err, what)                                                               \
    do {                                                                                           \
        cudaError_t sd_cuda_e_ = (call);                                                           \
        if (sd_cuda_e_ != cudaSuccess)                                                             \
            return sd_fail((err), SD_ERR_BACKEND, "cuda: %s: %s (%s:%d)", (what),                  \
                           cudaGetErrorString(sd_cuda_e_), __FILE__, __LINE__);                    \
    } while (0)

/* After a kernel launch: launch errors (bad configuration) surface here. */
#define SD_CUDA_LAUNCH_CHECK(err, what) SD_CUDA_TRY(cudaGetLastError(), err, what)

#endif
