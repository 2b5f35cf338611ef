#!/usr/bin/env bash
# The coordinator at fleet size (issue: scale): sdxl bench --simulate over
#   1. fleets of 10, 100 and 1000 simulated unet workers (text and final in
#      the design's ratio) with the H200 step times at 1024x1024;
#   2. the ceiling: no compute, 400 workers (200 unet, 100 text, 100 final),
#      at 64x64 (the coordinator's own work does not depend on the size: the
#      tensors and images go worker to worker) and at 1024x1024;
#   3. job sizes 10^4 to 10^7 (no compute, 64x64: the control path), a
#      60-second window for jobs larger than that.
# One JSON line per run appended to OUT (bench/sim-runs/DATE.jsonl), then a
# plot of both series (gnuplot, installed if missing) beside it as SVG.
#   tests/bench/sim_scaling.sh [OUT.jsonl]
# SERIES="fleet ceiling jobs" picks series, SIZES="10000 100000" job sizes,
# SIM_PROCS the simulator processes (4: one thread of one process would bound
# the fleet before the coordinator does).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-bench/sim-runs/$(date +%F).jsonl}
mkdir -p "$(dirname "$out")"
bench() { # label args...
    local label=$1
    shift
    echo "== $label: sdxl bench --simulate $*" >&2
    local j
    if j=$(build/bin/sdxl bench --simulate --json --procs "${SIM_PROCS:-4}" "$@"); then
        python3 -c 'import json, sys; j = json.loads(sys.argv[2]); j["label"] = sys.argv[1]; print(json.dumps(j))' \
            "$label" "$j" | tee -a "$out"
    else
        echo "== $label failed" >&2
    fi
}
series=" ${SERIES:-fleet ceiling jobs} "
if [[ $series == *" fleet "* ]]; then
    for n in 10 100 1000; do
        bench "fleet-$n" --unet "$n" --items $((n * 3 > 500 ? n * 3 : 500))
    done
fi
if [[ $series == *" ceiling "* ]]; then
    bench "ceiling-64" --unet 200 --text 100 --final 100 --items 10000 --zero-compute --width 64 --height 64
    bench "ceiling-1024" --unet 200 --text 100 --final 100 --items 4000 --zero-compute
fi
if [[ $series == *" jobs "* ]]; then
    for size in ${SIZES:-10000 100000 1000000 10000000}; do
        bench "job-$size" --unet 100 --items "$size" --zero-compute --width 64 --height 64 --window 60
    done
fi
command -v gnuplot >/dev/null || { apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 || true; }
if command -v gnuplot >/dev/null; then
    dat=${out%.jsonl}
    python3 - "$out" "$dat" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
with open(sys.argv[2] + "-fleet.dat", "w") as f:
    for r in runs:
        if r["label"].startswith("fleet-"):
            f.write("%d %.2f %.2f %.4f\n" % (r["workers"]["unet"], r["steady_images_per_second"],
                                             r["ideal_images_per_second"], r.get("of_ideal", 0)))
with open(sys.argv[2] + "-jobs.dat", "w") as f:
    for r in runs:
        if r["label"].startswith("job-"):
            rate = r["after_submit_images_per_second"] or r["steady_images_per_second"]
            f.write("%d %.2f %.1f %.3f\n" % (r["items"], rate, r["submit_seconds"], 1000 * r["status_seconds"]))
PY
    gnuplot <<GP
set terminal svg size 1000,420 font "sans,12"
set output "${dat}.svg"
set multiplot layout 1,2
set title "Simulated fleet, H200 step times, 1024x1024"
set logscale xy
set xlabel "unet workers"
set ylabel "images/s"
set key left top
plot "${dat}-fleet.dat" using 1:3 with linespoints title "ideal (N x per-worker rate)", \
     "${dat}-fleet.dat" using 1:2 with linespoints title "measured (steady)"
set title "Job size, no compute, 64x64 (control path)"
set xlabel "items in the job"
set ylabel "images/s"
unset logscale y
set logscale x
plot "${dat}-jobs.dat" using 1:2 with linespoints title "images/s once submitted"
unset multiplot
GP
    echo "plot: ${dat}.svg" >&2
fi
