/* cfg_pair_nccl.h - the NCCL side of cfg_pair.h: a two-rank communicator
 * and an all-gather of host prediction buffers through device memory.
 * Without the CUDA toolkit at build time every call reports that NCCL is not
 * built in and sd_nccl_built() is 0. */
#ifndef SDXL_WORKER_CFG_PAIR_NCCL_H
#define SDXL_WORKER_CFG_PAIR_NCCL_H

#include <stddef.h>

#include "common/error.h"

#define SD_NCCL_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES */

typedef struct sd_nccl_pair sd_nccl_pair;

int sd_nccl_built(void);
sd_status sd_nccl_unique_id(unsigned char id[SD_NCCL_ID_BYTES], sd_error *err);
/* Joins the two-rank communicator on CUDA device `device`: non-blocking
 * (where libnccl has it), polled until the peer joins, aborted past
 * timeout_ms. Every later all-gather has the same deadline. */
sd_status sd_nccl_pair_init(sd_nccl_pair **out, const unsigned char id[SD_NCCL_ID_BYTES], int rank, int device,
                            int timeout_ms, sd_error *err);
/* all[0..n) = rank 0's mine, all[n..2n) = rank 1's */
sd_status sd_nccl_pair_allgather(sd_nccl_pair *p, const float *mine, float *all, size_t n, sd_error *err);
void sd_nccl_pair_free(sd_nccl_pair *p);

#endif
