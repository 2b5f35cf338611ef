#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# SECONDS (default 60), or, with RUNS=N, for N executions each (the long
# campaign: RUNS=10000000; TARGETS="image tokenizer" runs only those). New inputs go to a scratch folder; the committed
# seed corpus under tests/fuzz/corpus/ is only read. Prints each target's
# executions and exec/s; exit 0 when no crash.
#   safetensors  model weight files          proto        wire messages
#   json_config  UNet/VAE/CLIP/scheduler configs (Python's -Infinity too)
#   tensor_blob  stored stage results         image        PNG/JPEG init images
#   tokenizer    prompts (the real vocabulary) job_spec    SUBMIT specs and JSONL items
#   prompt_weights  compel's prompt syntax (--long-prompts)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=build-fuzz
mkdir -p "$out"
CFLAGS="-std=c11 -O1 -g -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
CFLAGS="$CFLAGS $(pkg-config --cflags jansson libutf8proc 2>/dev/null || true)"
base="common/error.c common/dtype.c common/fsutil.c"
declare -A src libs
src[safetensors]="$base common/safetensors.c"
src[proto]="$base proto/message.c"
src[json_config]="$base common/json_config.c common/model_folder.c common/safetensors.c common/torch_rng.c common/torch_rng_normal16.c
  common/gen_params.c common/image_io.c common/parse_number.c worker/engine/unet/unet_config.c
  worker/engine/vae/vae_config.c worker/engine/text/clip_config.c worker/engine/schedulers/scheduler.c
  worker/engine/schedulers/scheduler_config.c worker/engine/schedulers/scheduler_solvers.c
  worker/engine/schedulers/brownian_tree.c"
src[tensor_blob]="$base proto/message.c proto/tensor_blob.c"
src[image]="$base common/image_io.c"
src[tokenizer]="$base common/hashmap.c worker/engine/text/clip_tokenizer.c worker/engine/text/clip_vocab.c
  worker/engine/text/clip_vocab_blob.S"
src[job_spec]="$base common/gen_params.c common/image_io.c common/parse_number.c common/job_spec.c common/hashmap.c"
src[prompt_weights]="$base worker/engine/text/prompt_weights.c"
libs[safetensors]="-ljansson"
libs[proto]="-ljansson -lmsgpackc -lzmq"
libs[json_config]="-ljansson -lpng -ljpeg -lwebp -lm"
libs[tensor_blob]="-ljansson -lmsgpackc -lzmq"
libs[image]="-ljansson -lpng -ljpeg -lwebp"
libs[tokenizer]="-ljansson -lutf8proc"
libs[job_spec]="-ljansson -lpng -ljpeg -lwebp -lm"
libs[prompt_weights]="-ljansson -lm"
status=0
all="safetensors proto json_config tensor_blob image tokenizer job_spec prompt_weights"
for target in ${TARGETS:-$all}; do
    case " $all " in *" $target "*) ;; *) echo "fuzz: unknown target '$target' (targets: $all)" >&2; exit 2 ;; esac
    bin="$out/fuzz_$target"
    # shellcheck disable=SC2086
    clang $CFLAGS "tests/fuzz/fuzz_$target.c" ${src[$target]} ${libs[$target]} -o "$bin"
    scratch=$(mktemp -d)
    dict=()
    [ -f "tests/fuzz/$target.dict" ] && dict=(-dict="tests/fuzz/$target.dict")
    limit=(-max_total_time="$secs")
    [ -n "${RUNS:-}" ] && limit=(-runs="$RUNS")
    echo "fuzz_$target: ${RUNS:+$RUNS runs}${RUNS:-${secs}s}"
    if ! "$bin" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/" "${dict[@]}" \
        "$scratch" "tests/fuzz/corpus/$target" >"$out/fuzz_$target.log" 2>&1; then
        echo "fuzz_$target: FAILED (see $out/fuzz_$target.log)"
        tail -40 "$out/fuzz_$target.log"
        status=1
    else
        grep -E "^stat::number_of_executed_units|^stat::average_exec_per_sec" "$out/fuzz_$target.log" |
            sed -E 's/^stat::/   /' | tr '\n' ' '
        echo
    fi
    rm -rf "$scratch"
done
exit $status
