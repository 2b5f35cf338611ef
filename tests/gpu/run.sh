#!/usr/bin/env bash
# The one GPU script (issue: the CUDA backend). Three modes:
#
#   tests/gpu/run.sh --prepare   (here, on the CPU machine) build the GPU bundle in .gpu/:
#                                binaries built with BLAS=none (the GPU host has no OpenBLAS),
#                                their Debian libraries, the tiny models and goldens, diffusers'
#                                source (from DIFFUSERS_REPO, a git dir) and the peer script.
#   tests/gpu/run.sh --dry-run   (here) --prepare, then rehearse every step on the CPU backend
#                                (SDXL_GPUCHECK_DEVICE=cpu) with small sizes, so device minutes
#                                go to measuring, not to typos.
#   tests/gpu/run.sh             (on the GPU machine, from the repository root, .gpu carried):
#                                1. every op on the GPU vs the CPU backend (f16, bf16, f32)
#                                2. the tiny goldens on the GPU
#                                3. a full-size random sdxl-base: UNet step at 1024x1024 batch 2,
#                                   VAE decode, text encoders, each vs the floor measured here
#                                4. end to end through sdxl generate; the NCCL CFG split (two
#                                   GPUs) or its refusal (one GPU), tests/gpu/cfg_pair.sh
#                                5. diffusers' UNet and VAE on the same card and settings
#                                Logs and a summary go to $OUT (or /tmp/sdxl-gpu-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
G=.gpu
mode=run
case "${1:-}" in --prepare) mode=prepare ;; --dry-run) mode=dry ;; "") ;; *) echo "usage: $0 [--prepare|--dry-run]"; exit 2 ;; esac

prepare() {
    echo "== preparing $G"
    make -j"$(nproc)" BLAS=none BUILD=build-gpu gpu-tools >/tmp/sdxl-gpu-build.log 2>&1 || { tail -30 /tmp/sdxl-gpu-build.log; return 1; }
    rm -rf "$G" && mkdir -p "$G/bin" "$G/lib" "$G/testdata/golden"
    cp build-gpu/bin/sdxl build-gpu/bin/sdxl-engine build-gpu/bin/sdxl-gpucheck build-gpu/bin/sdxl-worker build-gpu/bin/sdxl-coordinator "$G/bin/"
    # every shared library the binaries need except the C runtime and CUDA's
    # (the GPU host has those); run 5 lacked libzmq when this list was by hand
    ldd build-gpu/bin/sdxl build-gpu/bin/sdxl-engine build-gpu/bin/sdxl-gpucheck build-gpu/bin/sdxl-worker build-gpu/bin/sdxl-coordinator | awk '$3 ~ /^\// {print $3}' | sort -u |
        grep -vE '/(libc|libm|libdl|librt|libpthread|libresolv|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so|cublas|cudart' |
        while read -r lib; do cp -L "$lib" "$G/lib/"; done
    local td=../shared/testdata
    for m in sdxl-tiny sdxl-tiny-refiner; do
        mkdir -p "$G/testdata/$m"
        cp "$td/$m/model_index.json" "$G/testdata/$m/"
        for c in "$td/$m"/*/; do
            c=$(basename "$c")
            mkdir -p "$G/testdata/$m/$c"
            cp "$td/$m/$c"/*.json "$G/testdata/$m/$c/" 2>/dev/null || true
            cp "$td/$m/$c"/*.txt "$G/testdata/$m/$c/" 2>/dev/null || true # the tokenizers' merges
            # fp16 weights (they halve the bundle), and sdxl-tiny's fp32 ones too: the fp32
            # goldens (the upcast VAE, --dtype f32) are checked at 1e-4, past fp16's rounding
            cp "$td/$m/$c"/*.fp16.safetensors "$G/testdata/$m/$c/" 2>/dev/null || true
            [ "$m" = sdxl-tiny ] && { cp "$td/$m/$c"/*[!6].safetensors "$G/testdata/$m/$c/" 2>/dev/null || true; }
        done
    done
    cp "$td"/golden/{text_encoders,unet_base,unet_refiner,vae,e2e_base_cfg5_4steps}.safetensors "$G/testdata/golden/"
    cp tests/gpu/compare_png.py tests/gpu/cfg_pair.sh "$G/"
    cp ../shared/bench/diffusers_peer.py "$G/"
    local repo=${DIFFUSERS_REPO:-/work/.mirror/huggingface+diffusers/repo}
    if [ -d "$repo" ]; then
        git --git-dir="$repo" archive HEAD src/diffusers | xz -6 >"$G/diffusers-src.tar.xz"
        git --git-dir="$repo" log -1 --format='%H %cs' >"$G/diffusers-commit.txt"
    else
        echo "   (no diffusers source at $repo: the peer timing will be skipped)"
    fi
    # binaries and libraries travel as one xz archive (31 MiB -> 8), unpacked by unpack_bins:
    # room for sdxl-tiny's fp32 weights within the limit
    tar -C "$G" -cf - bin lib | xz -T0 -6 >"$G/binlib.tar.xz" && rm -rf "$G/bin" "$G/lib"
    local size
    size=$(du -sm "$G" | cut -f1)
    echo "   bundle: ${size} MiB (limit 64 MiB for everything that travels)"
    [ "$size" -lt 56 ] || { echo "bundle too large"; return 1; }
}

find_cuda_libs() {
    # libcublasLt.so.13 lives with the CUDA toolkit or in PyTorch's wheels
    local d
    for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
        $(python3 -c 'import os, nvidia; print(" ".join(os.path.join(p, "cublas", "lib") for p in nvidia.__path__))' 2>/dev/null); do
        [ -e "$d/libcublasLt.so.13" ] && { echo "$d"; return 0; }
    done
    ldconfig -p 2>/dev/null | awk '/libcublasLt.so.13/ {print $NF; exit}' | xargs -r dirname
}

unpack_bins() {
    [ -x "$G/bin/sdxl-gpucheck" ] || tar -C "$G" -xJf "$G/binlib.tar.xz"
}

if [ "$mode" = prepare ]; then prepare; exit $?; fi

OUTDIR=${OUT:-/tmp/sdxl-gpu-out}
mkdir -p "$OUTDIR"
export LD_LIBRARY_PATH="$PWD/$G/lib:${LD_LIBRARY_PATH:-}"
BIN=$G/bin
status=0
step() { # name, timeout, command...
    local name=$1 t=$2
    shift 2
    echo
    echo "== $name"
    local t0=$SECONDS
    timeout "$t" "$@" 2>&1 | tee "$OUTDIR/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "-- $name: exit $rc, $((SECONDS - t0)) s"
    [ "$rc" = 0 ] || status=1
    return "$rc"
}

if [ "$mode" = dry ]; then
    prepare || exit 1
    unpack_bins || exit 1
    export SDXL_GPUCHECK_DEVICE=cpu
    ldd "$BIN/sdxl-gpucheck" | grep "not found" | grep -v cublasLt && { echo "unresolved libraries"; exit 1; }
    step ops 600 "$BIN/sdxl-gpucheck" ops --quick
    step goldens 120 "$BIN/sdxl-gpucheck" goldens "$G/testdata"
    step model 120 "$BIN/sdxl" random-model --preset tiny --out /tmp/sdxl-gpu-rehearsal --dtype f16
    step bench 300 "$BIN/sdxl-gpucheck" bench /tmp/sdxl-gpu-rehearsal 64 2 30
    step cfg_pair 120 env BIN="$BIN" TINY="$G/testdata/sdxl-tiny" DEVICES="cpu cpu" bash "$G/cfg_pair.sh"
    python3 -m py_compile "$G/diffusers_peer.py" && echo "peer script compiles"
    [ -f "$G/diffusers-src.tar.xz" ] && xz -t "$G/diffusers-src.tar.xz" && echo "diffusers archive intact"
    echo
    echo "dry run: exit $status"
    exit $status
fi

# ---- on the GPU machine ----
[ -f "$G/binlib.tar.xz" ] || [ -x "$BIN/sdxl-gpucheck" ] || { echo "no $G: run tests/gpu/run.sh --prepare here and carry .gpu"; exit 1; }
unpack_bins || { echo "cannot unpack $G/binlib.tar.xz"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUTDIR/gpu.txt"
cl=$(find_cuda_libs)
[ -n "$cl" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$cl"
echo "cuBLASLt from: ${cl:-not found}"
if ldd "$BIN/sdxl-gpucheck" | grep "not found"; then echo "unresolved libraries"; exit 1; fi
"$BIN/sdxl" devices

step ops 150 "$BIN/sdxl-gpucheck" ops
step goldens 60 "$BIN/sdxl-gpucheck" goldens "$G/testdata"
MODEL=/tmp/sdxl-base-f16
step model 100 "$BIN/sdxl" random-model --preset sdxl-base --out "$MODEL" --dtype f16
step bench 150 "$BIN/sdxl-gpucheck" bench "$MODEL" 1024 2 30

# end to end through `sdxl generate` on the GPU: 30 Euler steps at 1024x1024 (twice: the first
# run pays for cuBLASLt's first calls), and the tiny golden case generated on the GPU
step e2e 150 bash -c "for i in 1 2; do $BIN/sdxl generate --model $MODEL --device cuda:0 --steps 30 --seed 0 \
    --prompt 'a photo of an astronaut riding a horse on mars' --out /tmp/e2e.png || exit 1; done"
# the same with the UNet steps relaunched as a CUDA graph (SDXL_CUDA_GRAPH=1): same picture expected
step e2e_graph 100 bash -c "SDXL_CUDA_GRAPH=1 $BIN/sdxl generate --model $MODEL --device cuda:0 --steps 30 --seed 0 \
    --prompt 'a photo of an astronaut riding a horse on mars' --out /tmp/e2e_graph.png && cmp /tmp/e2e.png /tmp/e2e_graph.png &&
    echo 'graph image: byte-equal to the eager one'"
# (fp16 with the VAE upcast to fp32, then everything in fp32: within 1 level of diffusers' fp32)
step e2e_tiny 60 bash -c "$BIN/sdxl generate --model $G/testdata/sdxl-tiny --device cuda:0 --steps 4 --seed 0 \
    --width 64 --height 64 --prompt 'a photo of an astronaut riding a horse on mars' --out /tmp/tiny.png &&
    python3 $G/compare_png.py /tmp/tiny.png $G/testdata/golden/e2e_base_cfg5_4steps.safetensors &&
    $BIN/sdxl generate --model $G/testdata/sdxl-tiny --device cuda:0 --dtype f32 --steps 4 --seed 0 \
    --width 64 --height 64 --prompt 'a photo of an astronaut riding a horse on mars' --out /tmp/tiny32.png &&
    python3 $G/compare_png.py /tmp/tiny32.png $G/testdata/golden/e2e_base_cfg5_4steps.safetensors 1"

# the NCCL CFG split: two GPUs -> a pair against batch mode; one GPU -> a clear refusal
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
devs=$( [ "$ngpu" -ge 2 ] && echo "cuda:0 cuda:1" || echo "cuda:0")
step cfg_pair 150 env BIN="$BIN" TINY="$G/testdata/sdxl-tiny" DEVICES="$devs" bash "$G/cfg_pair.sh"

if [ -f "$G/diffusers-src.tar.xz" ]; then
    mkdir -p /tmp/diffusers && tar -xJf "$G/diffusers-src.tar.xz" -C /tmp/diffusers
    PYTHONUNBUFFERED=1 step peer 200 python3 "$G/diffusers_peer.py" --diffusers-src /tmp/diffusers/src \
        --model-config "$MODEL" --res 1024 --batch 2 --dtype fp16 --gemm --reps 10 --json "$OUTDIR/peer.json"
fi

echo
echo "== summary ($(head -2 "$OUTDIR/gpu.txt" | tail -1))"
grep -E "^ops:|^goldens:" "$OUTDIR"/ops.log "$OUTDIR"/goldens.log 2>/dev/null
grep -E "UNet step|VAE decode|text encoders|one image|TFLOP per step|cudaMalloc|dense matrix|loop step|activation arena" "$OUTDIR/bench.log" 2>/dev/null
grep -E "sdxl generate: item|max difference|graph image" "$OUTDIR/e2e.log" "$OUTDIR/e2e_graph.log" "$OUTDIR/e2e_tiny.log" 2>/dev/null
grep -E "^cfg pair|^pair job" "$OUTDIR/cfg_pair.log" 2>/dev/null
if [ -f "$OUTDIR/peer.json" ]; then
    ours_unet=$(awk '/UNet step/ {print $(NF-4)}' "$OUTDIR/bench.log")
    # diffusers decodes SDXL's VAE in fp32 under fp16 (force_upcast), as ours does
    ours_vae=$(awk '/VAE decode, batch 1, fp32/ {print $(NF-4)}' "$OUTDIR/bench.log")
    python3 - "$OUTDIR/peer.json" "$ours_unet" "$ours_vae" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
ou, ov = float(sys.argv[2]), float(sys.argv[3])
print(f"diffusers {p.get('diffusers','?')} / torch {p.get('torch','?')}: UNet {p['unet_eager_ms']:.1f} ms, VAE {p['vae_decode_ms']:.1f} ms ({p.get('vae_decode_dtype')})")
print(f"ours / diffusers: UNet step {ou / p['unet_eager_ms']:.2f}x the time, VAE decode {ov / p['vae_decode_ms']:.2f}x the time")
PY
fi
echo "gpu run: exit $status"
exit $status
