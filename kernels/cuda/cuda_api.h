/* cuda_api.h - the C-callable surface of the CUDA side of kernels/. Only
 * kernels/ includes it (model code goes through ops.h). */
#ifndef SDXL_KERNELS_CUDA_API_H
#define SDXL_KERNELS_CUDA_API_H

#include <stddef.h>

#include "common/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible CUDA devices; 0 when there is no driver or device. */
int sd_cuda_device_count(void);
sd_status sd_cuda_device_name(int device, char *buf, int len, sd_error *err);

/* Memory statistics of a CUDA backend (for benchmarks and tests). */
typedef struct {
    size_t bytes_reserved, bytes_in_use, peak_in_use;
    unsigned long long mallocs; /* cudaMalloc calls so far */
} sd_cuda_stats;
struct sd_backend;
void sd_cuda_backend_stats(struct sd_backend *be, sd_cuda_stats *out);

#ifdef __CUDACC__
sd_status sd_cuda_convert_f32(void *dst, int dst_is_bf16, const float *src, size_t n, cudaStream_t stream,
                              sd_error *err);
#endif

#ifdef __cplusplus
}
#endif

#endif
