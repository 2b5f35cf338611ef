// cuda_device.cu - device discovery and the dtype conversion kernels used to
// upload fp32 host data as fp16/bf16 (weights are widened on the CPU side,
// narrowed here once at upload).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdio.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_api.h"

extern "C" int sd_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no device" error
        return 0;
    }
    return n;
}

extern "C" sd_status sd_cuda_device_name(int device, char *buf, int len, sd_error *err)
{
    cudaDeviceProp prop;
    SD_CUDA_TRY(cudaGetDeviceProperties(&prop, device), err, "cudaGetDeviceProperties");
    snprintf(buf, (size_t)len, "%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30));
    return SD_OK;
}

__global__ void f32_to_f16_kernel(__half *dst, const float *src, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

__global__ void f32_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

extern "C" sd_status sd_cuda_convert_f32(void *dst, int dst_is_bf16, const float *src, size_t n,
                                         cudaStream_t stream, sd_error *err)
{
    if (n == 0)
        return SD_OK;
    unsigned blocks = (unsigned)((n + 255) / 256 < 65535 ? (n + 255) / 256 : 65535);
    if (dst_is_bf16)
        f32_to_bf16_kernel<<<blocks, 256, 0, stream>>>((__nv_bfloat16 *)dst, src, n);
    else
        f32_to_f16_kernel<<<blocks, 256, 0, stream>>>((__half *)dst, src, n);
    SD_CUDA_LAUNCH_CHECK(err, "convert f32");
    return SD_OK;
}
