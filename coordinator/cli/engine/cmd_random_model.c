/* cmd_random_model.c - `sdxl random-model`: a diffusers SDXL folder with
 * random weights (see worker/engine/weights/random_model.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "worker/engine/weights/random_model.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: sdxl random-model --preset sdxl-base|sdxl-refiner|tiny --out DIR\n"
                 "                         [--dtype f16|bf16|f32] [--seed N] [--tokenizer DIR] [--configs-only]\n\n"
                 "Writes a complete diffusers folder with random weights: model_index.json, the configs\n"
                 "(the real SDXL 1.0 values for the two SDXL presets), tokenizer files, and safetensors with\n"
                 "diffusers' tensor names and shapes. f16 weights go to *.fp16.safetensors, as on the hub.\n"
                 "  --dtype         weight dtype (default f16)\n"
                 "  --seed N        random seed (default 0)\n"
                 "  --tokenizer DIR copy vocab.json and merges.txt from DIR (default: the embedded CLIP vocabulary)\n"
                 "  --configs-only  write everything but the weights\n"
                 "The sdxl-base preset needs about 7 GB of disk in f16.\n");
}

int cmd_random_model(int argc, char **argv)
{
    sd_random_model_opts o = {.dtype = SD_DTYPE_F16};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (i + 1 < argc && !strcmp(a, "--preset")) {
            o.preset = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--out")) {
            o.out = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--tokenizer")) {
            o.tokenizer_src = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--seed")) {
            char *end;
            o.seed = strtoull(argv[++i], &end, 10);
            if (*end || argv[i][0] == '-' || !argv[i][0]) {
                cli_errorf("random-model", "--seed must be a non-negative integer, not '%s'", argv[i]);
                return 2;
            }
        } else if (i + 1 < argc && !strcmp(a, "--dtype")) {
            if (sd_dtype_parse_user(argv[++i], &o.dtype) != 0) {
                cli_errorf("random-model", "--dtype must be f16, bf16 or f32, not '%s'", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--configs-only")) {
            o.configs_only = 1;
        } else {
            cli_errorf("random-model", "unknown or incomplete option '%s'", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.preset || !o.out) {
        usage(stderr);
        return 2;
    }
    if (!sd_random_model_preset_known(o.preset)) {
        cli_errorf("random-model", "--preset must be sdxl-base, sdxl-refiner or tiny, not '%s'", o.preset);
        return 2;
    }
    sd_error err = {0};
    if (sd_random_model_write(&o, &err) != SD_OK) {
        cli_errorf("random-model", "%s", err.msg);
        return 1;
    }
    fprintf(stderr, "random-model: wrote %s (preset %s, %s, seed %llu)\n", o.out, o.preset, sd_dtype_name(o.dtype),
            (unsigned long long)o.seed);
    return 0;
}
