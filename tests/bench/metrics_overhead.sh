#!/usr/bin/env bash
# What serving /metrics costs the UNet (issue: observability, point 6): the
# same job on a local cluster twice, every process with --http (metrics
# counted and rendered once a second, scraped every 0.2 s meanwhile) and
# without; prints the mean UNet seconds per item of each (from the items'
# metadata, unet_seconds) and their ratio. ROUNDS alternating pairs (3).
#   tests/bench/metrics_overhead.sh [ITEMS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ITEMS=${1:-16}
STEPS=${2:-20}
BIN=build/bin
NAME=metrics_overhead
. tests/script_util.sh
ROOT=$(mktemp -d /tmp/sdxl-mo-XXXXXX)
stop_on_exit "$ROOT"
for i in $(seq "$ITEMS"); do echo "prompt $i"; done >"$ROOT/prompts.txt"
run() { # with-http(0|1) dir -> mean unet seconds per item
    local d=$ROOT/$2 role scraper=""
    mkdir -p "$d"
    PIDS=()
    export OMP_NUM_THREADS=1
    ep="tcp://127.0.0.1:$(port)"
    local http=()
    [ "$1" = 1 ] && http=(--http "127.0.0.1:$(port)")
    $BIN/sdxl-coordinator --bind "$ep" --state "$d/state" "${http[@]}" >"$d/c.log" 2>&1 &
    PIDS+=($!)
    for role in text unet final; do
        http=()
        [ "$1" = 1 ] && http=(--http "127.0.0.1:$(port)") && echo "${http[1]}" >>"$d/targets"
        $BIN/sdxl-worker --coordinator "$ep" --role $role --model build/models/sdxl-tiny-random --id "mo-$role" \
            --spool "$d/spool" "${http[@]}" >"$d/w-$role.log" 2>&1 &
        PIDS+=($!)
    done
    if [ "$1" = 1 ]; then
        (while true; do for t in $(cat "$d/targets"); do curl -s -o /dev/null "http://$t/metrics"; done; sleep 0.2; done) &
        scraper=$!
    fi
    local job
    job=$($BIN/sdxl submit "$ROOT/prompts.txt" --out "$d/out" --layout files --steps "$STEPS" --coordinator "$ep" |
        awk '{print $NF}')
    $BIN/sdxl wait "$job" --coordinator "$ep" >/dev/null
    [ -n "$scraper" ] && kill "$scraper"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null || true
    python3 -c 'import json,sys; v=[json.loads(l)["unet_seconds"] for l in open(sys.argv[1])]; print(sum(v)/len(v))' \
        "$d/out/metadata.jsonl"
}
with=0 without=0
for r in $(seq "${ROUNDS:-3}"); do
    a=$(run 0 "off-$r")
    b=$(run 1 "on-$r")
    echo "round $r: unet seconds per item without --http $a, with --http and scrapes $b"
    with=$(python3 -c "print($with + $b)")
    without=$(python3 -c "print($without + $a)")
done
python3 -c "w=$with; o=$without; print('mean unet seconds per item: without %.4f, with %.4f; ratio with/without %.3f' % (o/${ROUNDS:-3}, w/${ROUNDS:-3}, w/o))"
