/* cfg_pair.h - classifier-free guidance split over two workers (DESIGN.md,
 * Multi-GPU): rank 0 computes the unconditional half of every UNet pass,
 * rank 1 the text half, and after every step they exchange their noise
 * predictions so that both hold [uncond, text] and apply the same guidance
 * and scheduler step (same seed, same generator: their latents stay equal).
 *
 * Rank 0 leads: it is the worker the coordinator sees, binds the pair's
 * endpoint, and forwards each task to rank 1, which follows: it connects to
 * that endpoint and never talks to the coordinator. Predictions travel by
 * NCCL (ncclAllGather; the ncclUniqueId goes over the pair's socket) when
 * both sides run on CUDA devices, and over the pair's ZeroMQ socket
 * otherwise (CPU workers, and the tests on machines without two GPUs).
 * Both halves on the same GPU of one host are refused (that is what
 * --cfg-split batch is for). NCCL communicators are non-blocking and polled:
 * a peer that dies makes the survivor abort the communicator past the
 * deadline and fail the task instead of hanging.
 *
 * Deviation from DESIGN.md, which passes the ncclUniqueId through the
 * coordinator: the pair's own socket carries it, so the coordinator treats a
 * pair as one worker and needs no pairing logic; a pair whose follower dies
 * stops making progress and the coordinator's per-task progress deadline
 * requeues its work, as for any stalled worker. */
#ifndef SDXL_WORKER_CFG_PAIR_H
#define SDXL_WORKER_CFG_PAIR_H

#include <stddef.h>

#include "common/error.h"
#include "proto/message.h"

typedef struct sd_cfg_pair sd_cfg_pair;

/* Opens rank's side of the pair at endpoint (rank 0 binds, rank 1
 * connects) and shakes hands: both sides must carry the same model identity;
 * NCCL is set up when both devices are "cuda:N". Waits up to timeout_ms for
 * the peer; every later receive waits up to timeout_ms too. */
sd_status sd_cfg_pair_open(sd_cfg_pair **out, void *zmq_ctx, const char *endpoint, int rank, const char *device,
                           const char *model_identity, int timeout_ms, sd_error *err);
void sd_cfg_pair_close(sd_cfg_pair *p);
int sd_cfg_pair_rank(const sd_cfg_pair *p);
/* "nccl" or "zmq": how predictions travel */
const char *sd_cfg_pair_transport(const sd_cfg_pair *p);

/* mine: this rank's n prediction floats; all: 2n floats, filled with
 * [rank 0's, rank 1's]. Both ranks call it the same number of times; a step
 * counter in every exchange catches two sides out of step. */
sd_status sd_cfg_pair_exchange(sd_cfg_pair *p, const float *mine, float *all, size_t n, sd_error *err);

/* The leader hands a task on (as received); the follower receives it.
 * recv returns SD_ERR_IO after timeout_ms without a task. */
sd_status sd_cfg_pair_send_task(sd_cfg_pair *p, const sd_msg *task, sd_error *err);
sd_status sd_cfg_pair_recv_task(sd_cfg_pair *p, sd_msg *task, sd_error *err);
/* 1 once the peer's connection has closed (a killed peer shows at once;
 * one cut off by the network only through the timeouts) */
int sd_cfg_pair_peer_gone(sd_cfg_pair *p);
/* 1 when a message from the peer is waiting (after up to timeout_ms), else 0 */
int sd_cfg_pair_poll(sd_cfg_pair *p, int timeout_ms);

#endif
