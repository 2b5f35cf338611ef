/* simulate.h - `sdxl-worker --simulate SPEC`: many workers of any role in one
 * process, without a model, for measuring the coordinator and the data path
 * at fleet sizes this machine has no GPUs for.
 *
 * Each simulated worker is a real peer of the coordinator: its own socket and
 * worker id, REGISTER, heartbeats (task heartbeats while it "computes"),
 * RESULT kept until confirmed and sent again after a coordinator restart,
 * re-registration when asked. Compute is a timer; what it sends has the real
 * names, dtypes and sizes of the stage's outputs at the item's width and
 * height (text: SDXL's conditioning, 2x77x2048 + 2x1280 fp32 with guidance;
 * unet: the latents, 4 x H/8 x W/8 fp32; final: a PNG of the image's size
 * with about the entropy of a photo, made once per size).
 *
 * SPEC: ROLE=COUNT[@MS] joined by commas, e.g. "text=5,unet=100,final=25";
 * MS is the time per denoising step for unet workers and per item for text
 * and final ones (0: no compute). The defaults are the H200 figures of
 * bench/RESULTS.md (1024x1024, fp16): text encoders 3.4 ms, a UNet step with
 * CFG 56 ms, the VAE decode 71 ms. Workers are named PREFIX-ROLE-N. */
#ifndef SDXL_WORKER_DAEMON_SIMULATE_H
#define SDXL_WORKER_DAEMON_SIMULATE_H

#include "common/error.h"
#include "worker/daemon/worker_loop.h"

#define SD_SIM_TEXT_MS 3.4
#define SD_SIM_UNET_STEP_MS 56.0
#define SD_SIM_FINAL_MS 71.0
#define SD_SIM_MAX_WORKERS 4096

typedef struct {
    int count[3];     /* text, unet, final */
    double ms[3];     /* per item (text, final) or per step (unet) */
} sd_sim_spec;

/* Parses SPEC (see above) into *s; errors name the part at fault. */
sd_status sd_sim_spec_parse(const char *spec, sd_sim_spec *s, sd_error *err);
/* Runs the simulated workers until *o->stop. o gives the coordinator, the
 * id prefix (worker_id), capacity, heartbeat and CURVE keys. */
sd_status sd_simulate_run(const sd_worker_opts *o, const sd_sim_spec *s, sd_error *err);

#endif
