/* bench lora_merge - what merging a LoRA into the real SDXL base UNet costs
 * at load: a random kohya-style LoRA of the given rank on every layer such
 * LoRAs train (attention q/k/v/out, feed-forward, proj_in/proj_out, and with
 * --locon the resnets' 3x3 convs and time projections), merged by
 * sd_lora_merge (what the loader runs) into weights of the real shapes
 * (../shared/testdata/real-sdxl/base/unet/keys.json). Prints the time next
 * to the floor: the merge's FLOPs at the sgemm rate measured in the same run.
 * usage: bench-lora_merge KEYS.json [--rank 32] [--locon] */
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lora.h"
#include "kernels/cpu/sgemm.h"
#include "tests/bench/bench_util.h"
#include "worker/engine/weights/lora_merge.h"


/* bytes per second memcpy moves (read + write counted) over 256 MB */
static double copy_rate(void)
{
    size_t n = 256u << 20;
    char *a = malloc(n), *b = malloc(n);
    memset(a, 1, n);
    memset(b, 2, n);
    volatile char sink = 0;
    double t0 = sd_now_s();
    for (int i = 0; i < 4; i++) {
        memcpy(i & 1 ? a : b, i & 1 ? b : a, n);
        sink ^= (i & 1 ? a : b)[(size_t)i * 4099 % n]; /* keeps the copies */
    }
    double t = sd_now_s() - t0;
    (void)sink;
    free(a), free(b);
    return 4.0 * 2.0 * (double)n / t;
}

int main(int argc, char **argv)
{
    const char *keys = NULL;
    int rank = 32, locon = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rank") && i + 1 < argc)
            rank = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--locon"))
            locon = 1;
        else
            keys = argv[i];
    }
    if (!keys || rank < 1) {
        fprintf(stderr, "usage: bench-lora_merge KEYS.json [--rank 32] [--locon]\n");
        return 2;
    }
    json_error_t je;
    json_t *k = json_load_file(keys, 0, &je);
    if (!k) {
        fprintf(stderr, "%s: %s\n", keys, je.text);
        return 1;
    }
    regex_t re;
    regcomp(&re,
            locon ? "(attn[12]\\.(to_q|to_k|to_v|to_out\\.0)|ff\\.net\\.(0\\.proj|2)|proj_in|proj_out|resnets\\.[0-9]+\\.("
                    "conv1|conv2|time_emb_proj))\\.weight$"
                  : "(attn[12]\\.(to_q|to_k|to_v|to_out\\.0)|ff\\.net\\.(0\\.proj|2)|proj_in|proj_out)\\.weight$",
            REG_EXTENDED | REG_NOSUB);
    const char *name;
    json_t *e;
    int modules = 0;
    double flops = 0, secs = 0, wbytes = 0;
    unsigned long long lora_params = 0;
    json_object_foreach(k, name, e) {
        if (regexec(&re, name, 0, NULL, 0))
            continue;
        json_t *shape = json_object_get(e, "shape");
        int nd = (int)json_array_size(shape);
        size_t rows = (size_t)json_integer_value(json_array_get(shape, 0)), cols = 1;
        for (int d = 1; d < nd; d++)
            cols *= (size_t)json_integer_value(json_array_get(shape, (size_t)d));
        float *w = malloc(rows * cols * sizeof *w), *up = malloc(rows * (size_t)rank * sizeof *up),
              *down = malloc((size_t)rank * cols * sizeof *down);
        for (size_t i = 0; i < rows * (size_t)rank; i++)
            up[i] = (float)((i * 2654435761u) % 1000) * 1e-4f;
        for (size_t i = 0; i < (size_t)rank * cols; i++)
            down[i] = (float)((i * 40503u) % 1000) * 1e-4f;
        sd_st_tensor tu = {.dtype = SD_DTYPE_F32, .ndim = 2, .shape = {(int64_t)rows, rank}, .data = up};
        sd_st_tensor td = {.dtype = SD_DTYPE_F32, .ndim = 2, .shape = {rank, (int64_t)cols}, .data = down};
        sd_lora_delta d = {.up = &tu, .down = &td, .scale = 0.5f};
        memset(w, 0, rows * cols * sizeof *w); /* the loader's weight is in memory already (converted) */
        wbytes += 2.0 * (double)(rows * cols * sizeof *w);
        sd_error err;
        double t0 = sd_now_s();
        if (sd_lora_merge(w, rows, cols, &d, &err) != SD_OK) {
            fprintf(stderr, "%s: %s\n", name, err.msg);
            return 1;
        }
        secs += sd_now_s() - t0;
        flops += 2.0 * (double)rows * rank * (double)cols;
        lora_params += (unsigned long long)rank * (rows + cols);
        modules++;
        free(w), free(up), free(down);
    }
    double rate = bench_sgemm_rate(1536), bw = copy_rate();
    printf("bench lora_merge: %d modules of the SDXL base UNet, rank %d%s (%.0f M LoRA parameters)\n", modules, rank,
           locon ? " with LoCon convs" : "", (double)lora_params / 1e6);
    printf("  merge: %.2f s (%.1f GFLOP, %.1f GFLOP/s); floor at the sgemm rate (%.1f GFLOP/s): %.2f s; ratio %.2f\n",
           secs, flops / 1e9, flops / 1e9 / secs, rate / 1e9, flops / rate, secs / (flops / rate));
    printf("  memory floor: the weights read and written once (%.1f GB) at the memcpy rate (%.1f GB/s): %.2f s; "
           "ratio %.2f\n",
           wbytes / 1e9, bw / 1e9, wbytes / bw, secs / (wbytes / bw));
    regfree(&re);
    json_decref(k);
    return 0;
}
