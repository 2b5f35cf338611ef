/* backend_info.h - what compute backends this build carries. */
#ifndef SDXL_KERNELS_BACKEND_INFO_H
#define SDXL_KERNELS_BACKEND_INFO_H

/* 1 when the CUDA backend was compiled in (nvcc was found at build time). */
int sd_backend_cuda_compiled(void);
/* Visible CUDA devices at run time (0 without driver or GPU). */
int sd_backend_cuda_devices(void);

#endif
