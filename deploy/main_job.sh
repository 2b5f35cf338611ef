#!/usr/bin/env bash
# The main job of the README's first command: generate an image end to end.
#   MODEL=DIR    a diffusers SDXL folder (default: the project's own tiny model with random
#                weights, written at build time; its pictures are noise, by design)
#   REFINER=DIR  optional refiner folder (ensemble of experts)
#   PROMPT, SEED, STEPS, OUT, DEVICE (cpu or cuda:N) as for `sdxl generate`
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT=build/models/sdxl-tiny-random
MODEL=${MODEL:-}
if [ -z "$MODEL" ]; then
    MODEL=$DEFAULT
    echo "main job: no MODEL given: using the project's default model $MODEL" >&2
    echo "          (tiny SDXL architecture, random weights: the picture is noise; set MODEL=DIR to a real" >&2
    echo "          stabilityai/stable-diffusion-xl-base-1.0 folder for real images)" >&2
fi
[ -f "$MODEL/model_index.json" ] || { echo "main job: no model at $MODEL" >&2; exit 1; }
OUT=${OUT:-out/sdxl-main-job.png}
mkdir -p "$(dirname "$OUT")"
args=(--model "$MODEL" --prompt "${PROMPT:-a photo of an astronaut riding a horse on mars}"
      --seed "${SEED:-0}" --out "$OUT" --device "${DEVICE:-cpu}")
[ -n "${STEPS:-}" ] && args+=(--steps "$STEPS")
[ -n "${REFINER:-}" ] && args+=(--refiner "$REFINER")
if [ "$MODEL" = "$DEFAULT" ] && [ -z "${STEPS:-}" ]; then args+=(--steps 30); fi
echo "== sdxl generate ${args[*]}" >&2
build/bin/sdxl generate "${args[@]}"
echo "main job: image written to $OUT" >&2
