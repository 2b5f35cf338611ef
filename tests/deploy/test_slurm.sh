#!/usr/bin/env bash
# deploy/slurm on a real Slurm: munged, slurmctld and two slurmd (nodes n1
# and n2, both on 127.0.0.1, two fake GPUs each: character devices made with
# mknod, named in gres.conf) started here as root, then the batch script
# with the tiny model on the CPU. A job submitted through it from "the login
# node" (this shell, with the env file the script publishes) completes with
# each item exactly once and equal to `sdxl generate`, although one worker
# step is killed mid-job; then the cluster is told to stop and every daemon
# started here is stopped by its PID. Ends with "slurm: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
M=$PWD/build/models/sdxl-tiny-random
NAME=slurm
. tests/script_util.sh
deploy/bootstrap.sh slurm >/dev/null || { bad "bootstrap slurm (slurm-wlm, munge)"; finish; }

ROOT=$(mktemp -d /tmp/sdxl-slurm-XXXXXX)
chmod 755 "$ROOT"
DAEMONS=()
cleanup() {
    [ -n "${JOB:-}" ] && scancel "$JOB" 2>/dev/null && sleep 1
    for p in "${DAEMONS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${DAEMONS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    # the steps' processes, if a slurmd died before them
    pkill -9 -f -- "--id s${JOB:-none}-" 2>/dev/null
    [ -n "${KEEP:-}" ] && echo "kept $ROOT" || rm -rf "$ROOT"
}
trap cleanup EXIT

# munge: its own key, socket and files under ROOT
dd if=/dev/urandom bs=1 count=1024 of="$ROOT/munge.key" 2>/dev/null
chmod 400 "$ROOT/munge.key"
mkdir -m 700 "$ROOT/munge"
munged --force --key-file="$ROOT/munge.key" --socket="$ROOT/munge/socket" --pid-file="$ROOT/munge/pid" \
    --log-file="$ROOT/munge/log" --seed-file="$ROOT/munge/seed" --foreground >>"$ROOT/munge/out" 2>&1 &
DAEMONS+=($!)
for _ in $(seq 50); do [ -S "$ROOT/munge/socket" ] && break; sleep 0.1; done

# fake GPUs: character devices (as /dev/null's numbers), two per node
mkdir "$ROOT/dev"
for i in 0 1 2 3; do mknod "$ROOT/dev/gpu$i" c 1 3; done
CTLD=$(port)
P1=$(port)
P2=$(port)
for n in n1 n2; do mkdir -p "$ROOT/spool-$n"; done
mkdir "$ROOT/ctld"
cat >"$ROOT/slurm.conf" <<CONF
ClusterName=sdxltest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$ROOT/munge/socket
StateSaveLocation=$ROOT/ctld
SlurmdSpoolDir=$ROOT/spool-%n
SlurmctldPidFile=$ROOT/ctld.pid
SlurmdPidFile=$ROOT/slurmd-%n.pid
SlurmctldLogFile=$ROOT/ctld.log
SlurmdLogFile=$ROOT/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
# the nodes as configured, whatever this machine has (two "nodes" share its cores)
SlurmdParameters=config_overrides
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$P1 CPUs=4 Gres=gpu:2 State=UNKNOWN
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$P2 CPUs=4 Gres=gpu:2 State=UNKNOWN
PartitionName=test Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$ROOT/gres.conf" <<CONF
NodeName=n1 Name=gpu File=$ROOT/dev/gpu[0-1]
NodeName=n2 Name=gpu File=$ROOT/dev/gpu[2-3]
CONF
export SLURM_CONF=$ROOT/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >>"$ROOT/ctld.out" 2>&1 &
DAEMONS+=($!)
for n in n1 n2; do
    slurmd -D -N "$n" -f "$SLURM_CONF" >>"$ROOT/slurmd-$n.out" 2>&1 &
    DAEMONS+=($!)
done
up=0
for _ in $(seq 100); do
    [ "$(sinfo -h -N -o '%t' 2>/dev/null | grep -c idle)" = 2 ] && { up=1; break; }
    sleep 0.2
done
if [ $up = 1 ]; then ok "munged, slurmctld and two slurmd with two fake GPUs each are up"
else bad "slurm did not come up" "$(sinfo -N 2>&1; tail -n 5 "$ROOT/ctld.log" "$ROOT"/slurmd-n*.log 2>&1)"; finish; fi

# the cluster: 2 nodes x 2 GPUs = 1 text, 2 unet, 1 final
RUN=$ROOT/run
JOB=$(sbatch --parsable -N 2 --gpus-per-node=2 -o "$ROOT/batch.out" deploy/slurm/sdxl-cluster.sbatch \
    --model "$M" --dir "$RUN" --device cpu --bin "$PWD/$BIN" --port "$(port)" --spool "$ROOT/spool")
for _ in $(seq 300); do [ -f "$RUN/env" ] && break; sleep 0.2; done
ntargets=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))[0]["targets"]))' "$RUN/prometheus-targets.json" 2>/dev/null)
if [ -f "$RUN/env" ] && grep -q "1 text, 2 unet, 1 final workers on 2 nodes" "$ROOT/batch.out" && [ "$ntargets" = 5 ]; then
    ok "sbatch --parsable: job $JOB publishes its endpoint, keys and 5 Prometheus targets; 1 text, 2 unet, 1 final worker by the stage ratios"
else bad "the batch script did not publish its cluster" "$(cat "$ROOT/batch.out" 2>&1; ls "$RUN" 2>&1)"; finish; fi

# the login node: submit through the published settings
printf 'a cat on a sofa\na dog in the park\na red fox in snow\n' >"$ROOT/prompts.txt"
(
    . "$RUN/env"
    $BIN/sdxl submit "$ROOT/prompts.txt" --out "$ROOT/out" --layout files --images-per-prompt 4 --steps 4 | awk '{print $NF}'
) >"$ROOT/jobid"
sjob=$(cat "$ROOT/jobid")
# one unet worker step killed mid-job (SIGKILL of its process): the loop starts it again
killed=0
for _ in $(seq 300); do
    n=$(. "$RUN/env"; $BIN/sdxl status "$sjob" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["done"])' 2>/dev/null)
    if [ "${n:-0}" -ge 2 ]; then pkill -9 -f -- "--id s$JOB-unet0 " && killed=1; break; fi
    sleep 0.2
done
out=$(. "$RUN/env"; timeout 180 $BIN/sdxl wait "$sjob" 2>&1)
rc=$?
n_png=$(ls "$ROOT/out"/*.png 2>/dev/null | wc -l)
n_meta=$(wc -l <"$ROOT/out/metadata.jsonl" 2>/dev/null)
uniq=$(python3 -c 'import json,sys; print(len({json.loads(l)["file_name"] for l in open(sys.argv[1])}))' "$ROOT/out/metadata.jsonl" 2>/dev/null)
if [ $rc = 0 ] && [ $killed = 1 ] && [ "$n_png" = 12 ] && [ "$n_meta" = 12 ] && [ "$uniq" = 12 ] &&
    grep -q "worker s$JOB-unet0 (unet on" "$RUN/logs/cluster.log"; then
    ok "a 12-item job through the cluster completes, each item exactly once, though a unet step was killed (and started again)"
else bad "the job through Slurm" "wait rc $rc killed $killed: $out; $n_png png, $n_meta metadata lines ($uniq distinct); $(cat "$RUN/logs/cluster.log" 2>&1 | tail -3)"; fi
metrics_ok=1
# (within 20 s: the killed unet step may still be starting again)
for t in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))[0]["targets"]))' "$RUN/prometheus-targets.json"); do
    served=0
    for _ in $(seq 100); do
        curl -s --max-time 5 "http://$t/metrics" | grep -q '^sdxl_' && { served=1; break; }
        sleep 0.2
    done
    [ $served = 1 ] || metrics_ok=0
done
if [ $metrics_ok = 1 ]; then ok "every process of the allocation serves /metrics at its published target"
else bad "metrics of the Slurm cluster" "$(cat "$RUN/prometheus-targets.json")"; fi
same=1
for p in 0 1 2; do
    prompt=$(sed -n "$((p + 1))p" "$ROOT/prompts.txt")
    $BIN/sdxl generate --model "$M" --prompt "$prompt" --seed $((4 * p)) --steps 4 --batch 4 --out "$ROOT/ref$p.png" \
        --quiet >/dev/null || same=0
    for k in 0 1 2 3; do
        cmp -s "$ROOT/ref$p-00$k.png" "$ROOT/out/$(printf %08d $((4 * p + k))).png" || same=0
    done
done
if [ $same = 1 ]; then ok "its images equal sdxl generate's, byte for byte"; else bad "images differ from sdxl generate"; fi

# told to stop: the script ends, and the allocation with it
touch "$RUN/stop"
gone=0
for _ in $(seq 100); do
    [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && { gone=1; break; }
    sleep 0.2
done
if [ $gone = 1 ] && grep -q "stopping" "$ROOT/batch.out"; then
    ok "told to stop (RUN/stop), the batch script ends and its allocation with it"
else bad "the cluster did not stop" "$(squeue 2>&1; tail -3 "$ROOT/batch.out")"; fi
# a run given its job list, with the unet workers as a CFG pair (two fake
# GPUs of one node, one step of two tasks): it submits, waits, and ends
RUN2=$ROOT/run2
printf '%s\n' "$ROOT/prompts.txt --out $ROOT/out2 --layout files --steps 3" >"$ROOT/jobs.txt"
JOB=$(sbatch --parsable -N 2 --gpus-per-node=2 -o "$ROOT/batch2.out" deploy/slurm/sdxl-cluster.sbatch \
    --model "$M" --dir "$RUN2" --device cpu --bin "$PWD/$BIN" --port "$(port)" --spool "$ROOT/spool2" --cfg-pairs \
    --jobs "$ROOT/jobs.txt")
gone=0
for _ in $(seq 900); do
    [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && { gone=1; break; }
    sleep 0.2
done
n2=$(ls "$ROOT/out2"/*.png 2>/dev/null | wc -l)
if [ $gone = 1 ] && [ "$n2" = 3 ] && grep -q "1 text, 1 unet pairs, 1 final" "$ROOT/batch2.out" &&
    grep -q "jobs of $ROOT/jobs.txt are done (exit 0)" "$ROOT/batch2.out" && grep -q "following the cfg pair" "$RUN2/logs/s$JOB-unet0.log"; then
    ok "--jobs FILE with --cfg-pairs: the unet pair on two GPUs of a node, the job list done, the script ends by itself"
else bad "the job-list run" "gone $gone, $n2 images; $(tail -n 5 "$ROOT/batch2.out"; tail -n 3 "$RUN2/logs/"*.log 2>&1)"; fi
JOB=""
finish
