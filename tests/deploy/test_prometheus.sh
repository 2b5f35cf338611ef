#!/usr/bin/env bash
# /metrics against the real thing: a local cluster (a coordinator and a
# worker of each role, all with --http) makes a job; every endpoint's text
# passes `promtool check metrics` (lint clean), and Debian's Prometheus
# server, started here on loopback and stopped by its PID, scrapes them all:
# its HTTP API says every target is up, the done items equal the job's
# count, and the workers' items add up to three stages of it.
# Ends with "prometheus: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
NAME=prometheus
. tests/script_util.sh
deploy/bootstrap.sh prometheus >/dev/null || { bad "bootstrap prometheus"; finish; }
ROOT=$(mktemp -d /tmp/sdxl-prom-XXXXXX)
# deploy/prometheus: the rules, their unit test and both layouts' configs
# (the Slurm one with its targets file where the batch script writes it)
mkdir -p "$ROOT/conf"
cp deploy/prometheus/* "$ROOT/conf/"
printf '[{"targets": ["127.0.0.1:9100"]}]\n' >"$ROOT/conf/targets.json"
sed -i "s#/shared/sdxl/run1/prometheus-targets.json#$ROOT/conf/targets.json#" "$ROOT/conf/prometheus-slurm.yml"
if out=$(cd "$ROOT/conf" && promtool check rules rules.yml 2>&1 && promtool test rules rules_test.yml 2>&1 &&
    promtool check config prometheus-slurm.yml 2>&1 && promtool check config prometheus-k8s.yml 2>&1) &&
    ! grep -qi "warning" <<<"$out"; then
    ok "deploy/prometheus: promtool check rules, test rules (an alert and a recording) and check config of both layouts"
else bad "deploy/prometheus" "$out"; fi
stop_on_exit "$ROOT"
local_cluster "$ROOT" p
targets="'${TARGETS// /\', \'}'"
pp=$(port)
cat >"$ROOT/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sdxl
    static_configs:
      - targets: [$targets]
CONF
prometheus --config.file="$ROOT/prometheus.yml" --storage.tsdb.path="$ROOT/tsdb" --web.listen-address="127.0.0.1:$pp" \
    >"$ROOT/prometheus.log" 2>&1 &
PIDS+=($!)

printf 'a cat\na dog\na fox\n' >"$ROOT/prompts.txt"
job=$($BIN/sdxl submit "$ROOT/prompts.txt" --out "$ROOT/out" --images-per-prompt 2 --steps 3 --coordinator "$ep" | awk '{print $NF}')
out=$(timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1) || bad "the job" "$out"
sleep 1.5 # a render after the last result
lint=""
for t in $TARGETS; do
    curl -s --max-time 5 "http://$t/metrics" >"$ROOT/m.txt"
    grep -q '^sdxl_' "$ROOT/m.txt" || lint="$lint $t: no sdxl_ metric;"
    promtool check metrics <"$ROOT/m.txt" >"$ROOT/lint.txt" 2>&1 || lint="$lint $t: $(cat "$ROOT/lint.txt");"
    [ -s "$ROOT/lint.txt" ] && lint="$lint $t: $(cat "$ROOT/lint.txt");"
done
if [ -z "$lint" ]; then ok "promtool check metrics: the coordinator's and all three workers' /metrics lint clean"
else bad "promtool check metrics" "$lint"; fi

query() { # PromQL -> the first value, or ""
    curl -s --max-time 5 "http://127.0.0.1:$pp/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
}
up="" done_n="" items=""
for _ in $(seq 60); do
    up=$(query 'sum(up{job="sdxl"})')
    done_n=$(query 'sum(sdxl_items{state="done"})')
    items=$(query 'sum(sdxl_worker_items_total)')
    [ "$up" = 4 ] && [ "$done_n" = 6 ] && [ "$items" = 18 ] && break
    sleep 0.5
done
if [ "$up" = 4 ] && [ "$done_n" = 6 ] && [ "$items" = 18 ]; then
    ok "Prometheus scrapes the 4 endpoints (all up): 6 items done, as the job's count; the workers' items add up to 3 x 6"
else bad "what Prometheus saw" "up $up, done $done_n, worker items $items; $(tail -n 5 "$ROOT/prometheus.log")"; fi
mem=$(query 'count(sdxl_worker_device_memory_bytes > 0)')
bytes=$(query 'sum(sdxl_coordinator_tensor_bytes_total)')
steps=$(query 'sum(sdxl_worker_unet_steps_total)')
moved=$(query 'sum(sdxl_worker_data_bytes_total{direction="fetched"}) == sum(sdxl_worker_data_bytes_total{direction="served"}) and sum(sdxl_worker_data_bytes_total{direction="fetched"}) > 0')
if [ "$mem" = 3 ] && [ "$bytes" = 0 ] && [ "$steps" = 18 ] && [ -n "$moved" ]; then
    ok "and: every worker's device memory; 18 denoising steps (6 items x 3); the bytes fetched worker to worker equal those served, and none through the coordinator (images written by the final worker)"
else bad "device memory, steps and bytes" "memory on $mem workers, $steps steps, $bytes tensor bytes through the coordinator, fetched = served: '$moved'"; fi
finish
