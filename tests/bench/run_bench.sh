#!/usr/bin/env bash
# `make bench`: the CPU benchmarks. Each prints its figure next to a peer or
# floor measured in the same run.
#   tokenizer: prompts/s on one core vs the 20,000/s goal
#   gemm_cpu:  our linear/conv layers vs OpenBLAS sgemm on SDXL shapes
#   lora_merge: merging a LoRA at load vs the sgemm and memcpy floors
#   unet_cpu:  one UNet forward vs the sgemm-rate floor; uses $SDXL_BENCH_MODEL
#              (e.g. a folder written by `sdxl random-model --preset sdxl-base`),
#              else the tiny test model.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build/bin
$B/bench-tokenizer ../shared/testdata/sdxl-tiny/tokenizer
$B/bench-gemm_cpu
model=${SDXL_BENCH_MODEL:-../shared/testdata/sdxl-tiny}
size=${SDXL_BENCH_SIZE:-64}
$B/bench-unet_cpu "$model" --size "$size"
# lora_merge: a rank-32 LoRA merged into the real SDXL base UNet's shapes vs the
# sgemm-rate and memcpy-rate floors
$B/bench-lora_merge ../shared/testdata/real-sdxl/base/unet/keys.json --rank 32
