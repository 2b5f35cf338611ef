#!/usr/bin/env bash
# The main job of the README's first command. For now (the foundation): read
# a model folder and tokenize prompts with it. MODEL defaults to the tiny
# SDXL in ../shared/testdata.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/testdata/sdxl-tiny}
if [ ! -f "$MODEL/model_index.json" ]; then
    echo "main job: no model at $MODEL (set MODEL=DIR to a diffusers SDXL folder)" >&2
    exit 1
fi
echo "== sdxl inspect $MODEL"
build/bin/sdxl inspect "$MODEL"
echo
echo "== sdxl tokenize (tokenizer 1, then tokenizer_2)"
build/bin/sdxl tokenize --model "$MODEL" "a photo of an astronaut riding a horse on mars"
build/bin/sdxl tokenize --model "$MODEL" --which 2 "a photo of an astronaut riding a horse on mars!"
