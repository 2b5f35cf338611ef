#!/usr/bin/env bash
# The main job of the README's first command: a local cluster on loopback (a
# coordinator and one worker of each role) generates a small dataset, shows
# its progress, says where it is, and shuts down.
#   MODEL=DIR    a diffusers SDXL folder or single-file checkpoint (CONFIG=DIR: the file's diffusers
#                folder of configs) (default: the project's own tiny model with random
#                weights, written at build time; its pictures are noise, by design)
#   PROMPTS=FILE prompts, one per line (default: 8 built-in prompts)
#   OUT=DIR      output folder (default out/dataset), DEVICE (cpu or cuda:N), STEPS
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT=build/models/sdxl-tiny-random
MODEL=${MODEL:-}
if [ -z "$MODEL" ]; then
    MODEL=$DEFAULT
    echo "main job: no MODEL given: using the project's default model $MODEL" >&2
    echo "          (tiny SDXL architecture, random weights: the pictures are noise; set MODEL=DIR to a real" >&2
    echo "          stabilityai/stable-diffusion-xl-base-1.0 folder for real images)" >&2
fi
# a diffusers folder, or a single file (CONFIG=DIR: its diffusers folder of configs; else the real SDXL's)
[ -f "$MODEL/model_index.json" ] || [ -f "$MODEL" ] || { echo "main job: no model at $MODEL" >&2; exit 1; }
MODEL_ARGS=(--model "$MODEL")
[ -n "${CONFIG:-}" ] && MODEL_ARGS+=(--config "$CONFIG")
OUT=${OUT:-out/dataset}
RUN=$(mktemp -d /tmp/sdxl-main-XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
EP=tcp://127.0.0.1:$PORT
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap stop EXIT
build/bin/sdxl-coordinator --bind "$EP" --state "$RUN/state" >"$RUN/coordinator.log" 2>&1 &
pids+=($!)
for role in text unet final; do
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} build/bin/sdxl-worker --coordinator "$EP" --role $role "${MODEL_ARGS[@]}" \
        --device "${DEVICE:-cpu}" --id "main-$role" --spool "$RUN/spool" >"$RUN/worker-$role.log" 2>&1 &
    pids+=($!)
done
echo "main job: local cluster on $EP (coordinator + text, unet and final workers)" >&2
if [ -n "${PROMPTS:-}" ]; then cp "$PROMPTS" "$RUN/prompts.txt"; else
    printf '%s\n' "a photo of an astronaut riding a horse on mars" "a red fox in the snow" "a lighthouse at dusk" \
        "a bowl of fruit on a wooden table" "a cat sleeping on a sofa" "a city street at night in the rain" \
        "a mountain lake at sunrise" "a vintage car on a country road" >"$RUN/prompts.txt"
fi
job=$(build/bin/sdxl submit "$RUN/prompts.txt" --out "$OUT" --layout files --steps "${STEPS:-20}" \
      --coordinator "$EP" | awk '{print $NF}')
build/bin/sdxl wait "$job" --coordinator "$EP"
echo "main job: dataset in $OUT ($(ls "$OUT" | grep -c '\.png$') images, metadata in $OUT/metadata.jsonl)" >&2
