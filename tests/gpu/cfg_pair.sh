#!/usr/bin/env bash
# The NCCL CFG split on the GPU machine (called by tests/gpu/run.sh; DEVICES
# and BIN from there). With two or more GPUs: a local cluster whose unet
# stage is a --cfg-split nccl pair on cuda:0 and cuda:1 makes the tiny golden
# prompt at 4 seeds, and each picture is compared with `sdxl generate` on
# cuda:0 (--cfg-split batch). With one GPU: both halves on cuda:0 must be
# refused with a clear message. The tiny model travels with fp16 weights only. DEVICES="cpu cpu" rehearses the two-device
# path on the CPU (the pair then exchanges over ZeroMQ).
#
# Tolerance (two GPUs): 8 levels of 255 per pixel. The pair runs each half
# as a batch of 1 and the batch mode as a batch of 2, so cuBLASLt may pick
# other algorithms and fp16 rounding differs; the tiny goldens on the GPU
# already move pixels by a few levels against fp32, and a larger gap would
# mean the halves were mixed up (that flips the guidance: tens of levels).
set -uo pipefail
BIN=${BIN:?}
M=${TINY:?a tiny model folder}
read -r -a dev <<<"${DEVICES:?devices, e.g. 'cuda:0 cuda:1'}"
W=$(mktemp -d /tmp/sdxl-pair-XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$W"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
peer="tcp://127.0.0.1:$(port)"

if [ "${#dev[@]}" -lt 2 ]; then
    "$BIN/sdxl-worker" --role unet --model "$M" --variant fp16 --device "${dev[0]}" --cfg-split nccl --cfg-peer "$peer" --cfg-rank 1 \
        --cfg-timeout-ms 20000 >"$W/follow.log" 2>&1 &
    pids+=($!)
    out=$(timeout 60 "$BIN/sdxl-worker" --coordinator tcp://127.0.0.1:1 --role unet --model "$M" --variant fp16 --device "${dev[0]}" \
        --cfg-split nccl --cfg-peer "$peer" --cfg-rank 0 --cfg-timeout-ms 20000 2>&1)
    rc=$?
    echo "$out" | tail -2
    if [ $rc = 1 ] && grep -q "needs two GPUs" <<<"$out"; then echo "cfg pair: one GPU: refused clearly: ok"; exit 0; fi
    echo "cfg pair: one GPU: expected a refusal naming two GPUs (exit $rc)"
    exit 1
fi

ep="tcp://127.0.0.1:$(port)"
"$BIN/sdxl-coordinator" --bind "$ep" --state "$W/state" >"$W/coordinator.log" 2>&1 &
pids+=($!)
for r in text final; do
    "$BIN/sdxl-worker" --coordinator "$ep" --role $r --model "$M" --variant fp16 --device "${dev[0]}" --id $r >"$W/$r.log" 2>&1 &
    pids+=($!)
done
"$BIN/sdxl-worker" --coordinator "$ep" --role unet --model "$M" --variant fp16 --device "${dev[0]}" --id lead --cfg-split nccl \
    --cfg-peer "$peer" --cfg-rank 0 >"$W/lead.log" 2>&1 &
pids+=($!)
"$BIN/sdxl-worker" --role unet --model "$M" --variant fp16 --device "${dev[1]}" --id follow --cfg-split nccl --cfg-peer "$peer" \
    --cfg-rank 1 >"$W/follow.log" 2>&1 &
pids+=($!)
prompt='a photo of an astronaut riding a horse on mars'
echo "$prompt" >"$W/prompts.txt"
job=$("$BIN/sdxl" submit "$W/prompts.txt" --out "$W/out" --layout files --images-per-prompt 4 --steps 4 \
    --width 64 --height 64 --coordinator "$ep" | awk '{print $NF}')
t0=$(date +%s.%N)
if ! "$BIN/sdxl" wait "$job" --coordinator "$ep" --timeout 90; then
    for f in "$W"/*.log; do echo "-- $f"; tail -n 3 "$f"; done
    exit 1
fi
echo "pair job: 4 images in $(python3 -c "import time; print(f'{time.time() - $t0:.2f}')") s; $(grep -o 'cfg split [a-z]*' "$W/lead.log")"
"$BIN/sdxl" generate --model "$M" --variant fp16 --device "${dev[0]}" --prompt "$prompt" --seed 0 --batch 4 --steps 4 --width 64 \
    --height 64 --out "$W/ref.png" --quiet || exit 1
python3 - "$W" <<'PY'
# the standard library only (the machine running this may lack numpy and
# PIL): our PNGs are 8-bit RGB, not interlaced
import struct, sys, zlib
def pixels(path):
    d = open(path, "rb").read()
    i, idat, w, h = 8, b"", 0, 0
    while i < len(d):
        n, t = struct.unpack(">I4s", d[i:i + 8])
        if t == b"IHDR":
            w, h = struct.unpack(">II", d[i + 8:i + 16])
        elif t == b"IDAT":
            idat += d[i + 8:i + 8 + n]
        i += 12 + n
    raw, out, prev, stride = zlib.decompress(idat), [], bytearray(w * 3), w * 3
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - 3] if x >= 3 else 0
            b, c = prev[x], prev[x - 3] if x >= 3 else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return out
w = sys.argv[1]
worst = 0
for k in range(4):
    a, b = pixels(f"{w}/out/{k:08d}.png"), pixels(f"{w}/ref-{k:03d}.png")
    worst = max([worst] + [abs(x - y) for x, y in zip(a, b)]) if len(a) == len(b) else 255
print(f"cfg pair vs batch: max difference {worst} levels (bound 8)")
sys.exit(0 if worst <= 8 else 1)
PY
