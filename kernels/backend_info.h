/* backend_info.h - what compute backends this build carries. */
#ifndef SDXL_KERNELS_BACKEND_INFO_H
#define SDXL_KERNELS_BACKEND_INFO_H

#include "common/error.h"

/* 1 when the CUDA backend was compiled in (nvcc was found at build time). */
int sd_backend_cuda_compiled(void);
/* Visible CUDA devices at run time (0 without driver or GPU). */
int sd_backend_cuda_devices(void);

/* The name of CUDA device i ("NVIDIA H200"); an error without CUDA. */
sd_status sd_backend_cuda_device_name(int i, char *buf, int len, sd_error *err);

#endif
