/* main_worker.c - `sdxl-worker`: a cluster worker (worker_loop.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/dtype.h"
#include "common/parse_number.h"
#include "common/stop_signal.h"
#include "worker/daemon/simulate.h"
#include "worker/daemon/worker_internal.h"
#include "worker/daemon/worker_loop.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sdxl-worker --coordinator ENDPOINT --role text|unet|final --model DIR|FILE [--config DIR]\n"
            "                   [--refiner DIR|FILE [--refiner-config DIR]] [--vae DIR|FILE] [--lora FILE[:SCALE]]...\n"
            "                   [--device cpu|cuda:N] [--dtype f16|bf16|f32] [--capacity N] [--variant fp16]\n"
            "                   [--id NAME] [--heartbeat-ms N] [--hold N] [--spool DIR] [--http HOST:PORT]\n"
            "                   [--cfg-split batch | --cfg-split nccl --cfg-peer ENDPOINT --cfg-rank 0|1]\n"
            "                   [--curve-server-key F --curve-secret F --curve-public F]\n"
            "       sdxl-worker --coordinator ENDPOINT --simulate ROLE=COUNT[@MS],... [--id PREFIX] [--capacity N]\n\n"
            "Serves one stage of the pipeline for a coordinator: text (both text encoders), unet (base\n"
            "denoising), final (refiner steps and VAE decode). Registers its role, capacity, devices and\n"
            "model identity (a hash of configs and weight headers); jobs of another model never reach it.\n"
            "  --model, --config, --refiner, --refiner-config, --vae, --lora: the model, as sdxl generate\n"
            "                      takes it (see sdxl generate --help); all of it is in the identity\n"
            "  --capacity N        items per task (1)\n"
            "  --model-cache N     models held at most (2): its own, and the variants job items ask for\n"
            "                      with their own \"loras\" or \"vae\" (sdxl submit --lora/--vae), loaded\n"
            "                      as the first such item comes and kept, the least recently used dropped\n"
            "  --hold N            text and unet workers: outputs kept in memory for the next stage to\n"
            "                      fetch, at most (256; ~1.3 MB of text conditioning, 256 KB of latents\n"
            "                      each at 1024x1024). They go worker to worker on a data socket of this\n"
            "                      worker's (the address that routes to the coordinator, a free port),\n"
            "                      never through the coordinator. Text conditioning is forgotten once\n"
            "                      fetched (one lost is made again), and the coordinator gives the\n"
            "                      text workers no more to make than their holds keep; latents are\n"
            "                      kept until the coordinator says the image is written\n"
            "  --spool DIR         unet worker: latents are also written here until released, so a\n"
            "                      worker restarted with the same --id and --spool serves them again\n"
            "                      (default /var/tmp/sdxl-spool-UID/ID, removed at exit when --id is not\n"
            "                      given; files older than a day are removed at start)\n"
            "  --http HOST:PORT    answer health probes over HTTP: /healthz (alive: its loop or its compute\n"
            "                      loop turned within --live-timeout-s; alive while the model loads),\n"
            "                      /readyz (ready: model loaded and registered with the coordinator)\n"
            "  --live-timeout-s N  see --http (300: a CPU may take minutes per step)\n"
            "  --cfg-split batch   both guidance halves as one batch of 2 on this device (default)\n"
            "  --cfg-split nccl    a unet worker pair, one guidance half each, exchanging noise\n"
            "                      predictions every step: rank 0 (the unconditional half) binds\n"
            "                      --cfg-peer ENDPOINT and serves the coordinator; rank 1 (the text half)\n"
            "                      connects to the same ENDPOINT and needs no --coordinator. Both load the\n"
            "                      same model. NCCL carries the predictions when both run on cuda:N\n"
            "                      (libnccl.so.2 loaded at run time), the pair's ZeroMQ socket otherwise.\n"
            "                      If either side fails, both stop (restart the pair); the coordinator\n"
            "                      requeues the pair's work.\n"
            "  --cfg-timeout-ms N  how long a pair side waits for the other (300000)\n"
            "  --fault die:N|stall:N|freeze:N|fail   test hooks: at denoising step N SIGKILL itself /\n"
            "                      hang without progress / SIGSTOP itself once; fail: every item\n"
            "                      fails with a reason of its own (the coordinator charges an attempt)\n"
            "  --simulate SPEC     no model: COUNT simulated workers of each ROLE in this process, for\n"
            "                      measuring the coordinator at fleet size (text=5,unet=100,final=25).\n"
            "                      Real messages and tensor sizes for each item's width and height; compute\n"
            "                      is a timer of MS per unet step or per text/final item (default: H200\n"
            "                      figures of bench/RESULTS.md, %.1f / %.1f / %.1f ms; 0: none). Ids are\n"
            "                      PREFIX-ROLE-N (PREFIX: --id, default sim)\n"
            "environment: SDXL_CUDA_GRAPH=1 relaunches UNet steps as a CUDA graph (experimental: not yet run on a GPU)\n"
            "exit codes: 0 stopped by a signal, 1 failure, 2 usage error\n",
            SD_SIM_UNET_STEP_MS, SD_SIM_TEXT_MS, SD_SIM_FINAL_MS);
}

int main(int argc, char **argv)
{
    static char default_id[96];
    sd_worker_opts o = {.device = "cpu", .capacity = 1, .model_cache = 2, .heartbeat_ms = 1000, .hold = 256, .live_timeout_s = 300, .die_at_step = -1,
                        .stall_at_step = -1, .freeze_at_step = -1, .cfg_timeout_ms = 300000, .dtype = SD_DTYPE_COUNT, .stop = &sd_stop_requested};
    int split_pair = 0, rank_given = 0;
    const char *simulate = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        const char *v = sd_flag_value("sdxl-worker", argc, argv, &i);
        if (!v)
            return 2;
        if (!strcmp(a, "--coordinator"))
            o.coordinator = v;
        else if (!strcmp(a, "--role"))
            o.role = v;
        else if (!strcmp(a, "--simulate"))
            simulate = v;
        else if (!strcmp(a, "--model"))
            o.spec.model = v;
        else if (!strcmp(a, "--config"))
            o.spec.model_config = v;
        else if (!strcmp(a, "--refiner"))
            o.spec.refiner = v;
        else if (!strcmp(a, "--refiner-config"))
            o.spec.refiner_config = v;
        else if (!strcmp(a, "--vae"))
            o.spec.vae = v;
        else if (!strcmp(a, "--lora")) {
            sd_error lerr = {0};
            if (sd_model_spec_add_lora(&o.spec, v, &lerr) != SD_OK) {
                fprintf(stderr, "sdxl-worker: --lora: %s\n", lerr.msg);
                return 2;
            }
        }
        else if (!strcmp(a, "--device"))
            o.device = v;
        else if (!strcmp(a, "--variant"))
            o.spec.variant = v;
        else if (!strcmp(a, "--id"))
            o.worker_id = v;
        else if (!strcmp(a, "--capacity")) {
            if (sd_parse_int_flag("sdxl-worker", a, v, 1, 16, &o.capacity))
                return 2;
        } else if (!strcmp(a, "--model-cache")) {
            if (sd_parse_int_flag("sdxl-worker", a, v, 1, WORKER_MODEL_CACHE_MAX, &o.model_cache))
                return 2;
        } else if (!strcmp(a, "--hold")) {
            if (sd_parse_int_flag("sdxl-worker", a, v, 1, 1000000, &o.hold))
                return 2;
        } else if (!strcmp(a, "--http")) {
            o.http = v;
        } else if (!strcmp(a, "--live-timeout-s")) {
            if (sd_parse_int_flag("sdxl-worker", a, v, 1, 86400, &o.live_timeout_s))
                return 2;
        } else if (!strcmp(a, "--spool")) {
            o.spool = v;
        } else if (!strcmp(a, "--heartbeat-ms")) {
            if (sd_parse_int_flag("sdxl-worker", a, v, 10, 86400000, &o.heartbeat_ms))
                return 2;
        } else if (!strcmp(a, "--dtype")) {
            if (sd_dtype_parse_user(v, &o.dtype) != 0) {
                fprintf(stderr, "sdxl-worker: --dtype must be f16, bf16 or f32 (f32 only on the CPU), not '%s'\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--curve-server-key"))
            o.curve_server_key = v;
        else if (!strcmp(a, "--curve-secret"))
            o.curve_secret = v;
        else if (!strcmp(a, "--curve-public"))
            o.curve_public = v;
        else if (!strcmp(a, "--cfg-split")) {
            if (strcmp(v, "batch") && strcmp(v, "nccl")) {
                fprintf(stderr, "sdxl-worker: --cfg-split must be batch or nccl, not '%s'\n", v);
                return 2;
            }
            split_pair = !strcmp(v, "nccl");
        } else if (!strcmp(a, "--cfg-peer"))
            o.cfg_peer = v;
        else if (!strcmp(a, "--cfg-rank")) {
            if (sd_parse_int_flag("sdxl-worker", a, v, 0, 1, &o.cfg_rank))
                return 2;
            rank_given = 1;
        } else if (!strcmp(a, "--cfg-timeout-ms")) {
            if (sd_parse_int_flag("sdxl-worker", a, v, 100, 86400000, &o.cfg_timeout_ms))
                return 2;
        } else if (!strcmp(a, "--fault")) {
            int n;
            if (sscanf(v, "die:%d", &n) == 1)
                o.die_at_step = n;
            else if (sscanf(v, "stall:%d", &n) == 1)
                o.stall_at_step = n;
            else if (sscanf(v, "freeze:%d", &n) == 1)
                o.freeze_at_step = n;
            else if (!strcmp(v, "fail"))
                o.fail_items = 1;
            else {
                fprintf(stderr, "sdxl-worker: --fault must be die:N, stall:N, freeze:N or fail\n");
                return 2;
            }
        } else {
            fprintf(stderr, "sdxl-worker: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (split_pair != !!o.cfg_peer || (split_pair && (!rank_given || !o.role || strcmp(o.role, "unet")))) {
        fprintf(stderr, "sdxl-worker: --cfg-split nccl goes with --cfg-peer ENDPOINT and --cfg-rank 0|1, on a unet "
                        "worker\n");
        return 2;
    }
    int keys = !!o.curve_server_key + !!o.curve_secret + !!o.curve_public;
    if (keys != 0 && keys != 3) {
        fprintf(stderr, "sdxl-worker: CURVE needs all three of --curve-server-key, --curve-secret and "
                        "--curve-public (%d given): refusing to connect in plaintext\n", keys);
        return 2;
    }
    if (simulate) {
        sd_sim_spec spec;
        sd_error serr = {0};
        if (o.role || o.spec.model || split_pair || sd_sim_spec_parse(simulate, &spec, &serr) != SD_OK || !o.coordinator) {
            fprintf(stderr, "sdxl-worker: %s\n", serr.msg[0] ? serr.msg
                                              : !o.coordinator ? "--simulate needs --coordinator ENDPOINT"
                                                               : "--simulate takes no --role, --model or --cfg-split");
            return 2;
        }
        if (!o.worker_id)
            o.worker_id = "sim";
        sd_stop_on_signals();
        if (sd_simulate_run(&o, &spec, &serr) != SD_OK) {
            fprintf(stderr, "sdxl-worker: %s\n", serr.msg);
            return 1;
        }
        return 0;
    }
    int follower = split_pair && o.cfg_rank == 1;
    if ((!o.coordinator && !follower) || !o.role || !o.spec.model || o.capacity < 1 || o.capacity > 16 || o.heartbeat_ms < 10 ||
        (strcmp(o.role, "text") && strcmp(o.role, "unet") && strcmp(o.role, "final"))) {
        usage(stderr);
        return 2;
    }
    if (!o.worker_id) {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(default_id, sizeof default_id, "%s-%s-%ld", host, o.role, (long)getpid());
        o.worker_id = default_id;
        o.spool_is_own = 1;
    }
    sd_stop_on_signals();
    sd_error err = {0};
    if (sd_worker_run(&o, &err) != SD_OK) {
        fprintf(stderr, "sdxl-worker: %s\n", err.msg);
        return 1;
    }
    return 0;
}
