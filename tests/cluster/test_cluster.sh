#!/usr/bin/env bash
# Cluster tests on loopback with the project's tiny default model: a
# coordinator and workers as separate processes, killed, stopped and
# restarted on purpose. Arguments name scenarios to run (default: all). Each scenario prints ok/FAIL; the script ends with
# "cluster: N passed, N failed". Every process it starts is stopped at exit.
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
M=build/models/sdxl-tiny-random
HB=300
# several workers share 2 cores here: one OpenMP thread each keeps them fair
export OMP_NUM_THREADS=1
NAME=cluster
. tests/script_util.sh
ROOT=$(mktemp -d /tmp/sdxl-cluster-XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    umount "$ROOT/fulldisk/out" 2>/dev/null
    umount "$ROOT/fullspool/spool-u1" 2>/dev/null
    [ -n "${KEEP:-}" ] && echo "kept $ROOT" || rm -rf "$ROOT"
}
trap cleanup EXIT

start_coordinator() { # dir endpoint [extra args]
    local d=$1 ep=$2
    shift 2
    $BIN/sdxl-coordinator --bind "$ep" --state "$d/state" --heartbeat-ms $HB --progress-timeout-ms 3000 "$@" \
        >>"$d/coordinator.log" 2>&1 &
    COORD=$!
    PIDS+=($COORD)
}
start_worker() { # dir endpoint role id [extra args]
    local d=$1 ep=$2 role=$3 id=$4
    shift 4
    # a unet worker's spool (held latents) in the scenario's folder: never
    # shared with another run's worker of the same id
    [ "$role" = unet ] && set -- --spool "$d/spool-$id" "$@"
    $BIN/sdxl-worker --coordinator "$ep" --role "$role" --model "$M" --heartbeat-ms $HB --id "$id" "$@" \
        >>"$d/worker-$id.log" 2>&1 &
    LAST_WORKER=$!
    PIDS+=($LAST_WORKER)
}
start_stages() { # dir endpoint: one worker per stage (t1, u1, f1)
    start_worker "$1" "$2" text t1
    start_worker "$1" "$2" unet u1
    start_worker "$1" "$2" final f1
}
prompts() { printf 'a cat on a sofa\na dog in the park\na red fox in snow\nan astronaut on mars\na lighthouse at dusk\na bowl of fruit\n' >"$1"; }
submit() { # dir endpoint extra... -> prints job id
    local d=$1 ep=$2
    shift 2
    $BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --images-per-prompt 4 --steps 4 --coordinator "$ep" "$@" |
        awk '{print $NF}'
}
# the 24 items equal `sdxl generate` with the same parameters, byte for byte
same_as_generate() { # dir
    local d=$1 p=0
    mkdir -p "$d/ref"
    while IFS= read -r prompt; do
        $BIN/sdxl generate --model "$M" --prompt "$prompt" --seed $((4 * p)) --steps 4 --batch 4 \
            --out "$d/ref/p$p.png" --quiet >/dev/null || return 1
        for k in 0 1 2 3; do
            cmp -s "$d/ref/p$p-00$k.png" "$d/out/$(printf %08d $((4 * p + k))).png" || {
                echo "item $((4 * p + k)) differs from generate"
                return 1
            }
        done
        p=$((p + 1))
    done <"$d/prompts.txt"
}
exactly_once() { # dir: 24 images, 24 json, metadata lines unique and complete
    local d=$1
    local n_png n_json n_meta n_keys
    n_png=$(ls "$d/out"/*.png 2>/dev/null | wc -l)
    n_json=$(ls "$d/out"/[0-9]*.json 2>/dev/null | wc -l)
    n_meta=$(wc -l <"$d/out/metadata.jsonl")
    n_keys=$(python3 -c 'import json,sys; print(len({json.loads(l)["key"] for l in open(sys.argv[1])}))' "$d/out/metadata.jsonl")
    [ "$n_png" = 24 ] && [ "$n_json" = 24 ] && [ "$n_meta" = 24 ] && [ "$n_keys" = 24 ] ||
        { echo "png $n_png json $n_json metadata lines $n_meta unique keys $n_keys"; return 1; }
}

scenario_basic() {
    local d=$ROOT/basic ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_worker "$d" "$ep" text t1
    start_worker "$d" "$ep" unet u1
    start_worker "$d" "$ep" unet u2
    start_worker "$d" "$ep" final f1
    local job
    job=$(submit "$d" "$ep" --layout files)
    if ! out=$(timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1); then bad "basic job completes" "$out"; return; fi
    ok "1 text, 2 unet, 1 final worker complete a 24-item job"
    if out=$(same_as_generate "$d" 2>&1); then ok "every cluster image equals sdxl generate's, byte for byte"; else bad "images equal generate" "$out"; fi
    if out=$(exactly_once "$d" 2>&1); then ok "files layout: each item exactly once, metadata.jsonl complete"; else bad "exactly once" "$out"; fi
    local res
    res=$($BIN/sdxl results "$job" --json --coordinator "$ep" 2>&1)
    if [ "$(wc -l <<<"$res")" = 24 ] && [ "$(python3 -c 'import json,sys; print(sorted(json.loads(l)["idx"] for l in sys.stdin) == list(range(24)))' <<<"$res")" = True ]; then
        ok "sdxl results lists the 24 done items, each once"
    else bad "results" "$res"; fi
    local w
    w=$($BIN/sdxl workers --coordinator "$ep" --json)
    if python3 -c 'import json,sys; w=json.loads(sys.argv[1])["workers"]; u=[x for x in w if x["role"]=="unet"]; assert len(w)==4 and all(x["items_done"]>0 for x in u), w' "$w" 2>/dev/null; then
        ok "both unet workers took work (credit-based batching spreads it)"
    else bad "both unet workers took work" "$w"; fi
    # resubmitting the same spec to the same output skips what is done
    local again
    again=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --images-per-prompt 4 --steps 4 --coordinator "$ep" --layout files)
    if grep -q "resumed" <<<"$again" && timeout 20 $BIN/sdxl wait "$(awk '{print $NF}' <<<"$again")" --coordinator "$ep" >/dev/null; then
        ok "resubmitting the same job resumes it (nothing redone)"
    else bad "resubmission" "$again"; fi
    # an image gone from the folder is made again on resubmission, the same bytes
    cp "$d/out/00000005.png" "$d/kept-5.png"
    rm "$d/out/00000005.png" "$d/out/00000009.json"
    again=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --images-per-prompt 4 --steps 4 --coordinator "$ep" --layout files)
    if timeout 60 $BIN/sdxl wait "$(awk '{print $NF}' <<<"$again")" --coordinator "$ep" >/dev/null &&
        cmp -s "$d/kept-5.png" "$d/out/00000005.png" && [ -f "$d/out/00000009.json" ] &&
        grep -q "2 missing outputs made again" "$d/coordinator.log"; then
        ok "resubmitting after two outputs were deleted makes exactly those two again"
    else bad "remake missing outputs" "$again; $(grep resubmitted "$d/coordinator.log")"; fi
    # garbage and truncated messages get errors while the coordinator goes on
    if out=$(python3 tests/cluster/send_garbage.py "$ep" 2>&1) && $BIN/sdxl status --coordinator "$ep" >/dev/null; then
        ok "garbage, truncated and wrong-version messages are refused with reasons; the coordinator keeps serving"
    else bad "garbage messages" "$out"; fi
    kill $COORD
}

# A 24-item job whose only unet worker carries a fault hook (--fault $2),
# started under id $3; returns once the worker's log shows the hook fired
# ($4). A healthy unet worker is started by the caller only then, so on a
# slow machine it cannot take every task before the faulty one holds one.
# Sets D, EP, JOB and FAULTY (the faulty worker's pid).
faulty_unet_job() { # name fault id hook-log-line
    D=$ROOT/$1 EP="tcp://127.0.0.1:$(port)"
    mkdir -p "$D"
    prompts "$D/prompts.txt"
    start_coordinator "$D" "$EP"
    start_worker "$D" "$EP" text t1
    start_worker "$D" "$EP" unet "$3" --fault "$2"
    FAULTY=$LAST_WORKER
    start_worker "$D" "$EP" final f1
    JOB=$(submit "$D" "$EP" --layout files)
    local i
    for i in $(seq 600); do grep -q "$4" "$D/worker-$3.log" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

scenario_killed_worker() {
    faulty_unet_job kill die:2 u-doomed "dying at step"
    start_worker "$D" "$EP" unet u2
    if out=$(timeout 120 $BIN/sdxl wait "$JOB" --coordinator "$EP" 2>&1) && exactly_once "$D" >/dev/null &&
        grep -q "dying at step" "$D/worker-u-doomed.log" && grep -q "u-doomed (unet) is dead" "$D/coordinator.log"; then
        ok "a unet worker killed by SIGKILL mid-task: the job completes, each item exactly once"
    else bad "killed worker" "$out $(tail -n 3 "$D/coordinator.log")"; fi
    kill $COORD
}

scenario_restarted_coordinator() {
    local d=$ROOT/restart ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_stages "$d" "$ep"
    local job
    job=$(submit "$d" "$ep" --layout webdataset --shard-size 10)
    local i=0
    until [ "$(ls "$d/out/.staging" 2>/dev/null | wc -l)" -ge 6 ] || [ $i -ge 200 ]; do sleep 0.05; i=$((i + 1)); done
    kill -9 $COORD
    # what a coordinator killed mid-write leaves (the kill above may or may not hit one)
    touch "$d/out/.staging/00000005.json.tmp.999999" "$d/out/000001.tar.tmp.999999"
    sleep 0.3
    start_coordinator "$d" "$ep"
    if out=$(timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1); then
        local members
        members=$(for t in "$d"/out/*.tar; do tar tf "$t"; done | sort)
        if [ "$(wc -l <<<"$members")" = 48 ] && [ "$(uniq <<<"$members" | wc -l)" = 48 ] && [ -f "$d/out/000002.tar" ]; then
            ok "coordinator killed with SIGKILL and restarted: the job resumes; 3 tar shards, 24 samples once each"
        else bad "restart: shards" "$members"; fi
        # shards come out while the job runs, not all at its end (one item per
        # final task here, so shard 0 ends while later items have not)
        if grep -Eq "shard 000000 written \(items 0-9\); [1-9][0-9]* items of the job not yet ended" "$d/coordinator.log" &&
            [ -z "$(ls -A "$d/out/.staging" 2>/dev/null)" ] && ! ls -A "$d/out" | grep -q '\.tmp\.'; then
            ok "a shard is written as soon as its items have ended; no staged or half-written file is left at the end"
        else bad "progressive shards" "$(grep shard "$d/coordinator.log"; ls -A "$d/out/.staging" "$d/out")"; fi
    else bad "restart: job completes" "$out"; fi
    kill $COORD
}

# A unet worker frozen by SIGSTOP while it holds a task. The worker stops
# itself at its 2nd denoising step (--fault freeze:2): a `kill -STOP` from
# here raced the tiny model, which on a fast machine can finish the whole job
# before a poll of `sdxl workers` sees the task in flight (CI once did).
# The frozen one's task must be requeued to the second unet worker, and the
# frozen worker, resumed after the job ends, must not write anything twice.
scenario_stopped_worker() {
    local state=""
    if faulty_unet_job stop freeze:2 u-frozen "freezing (SIGSTOP)"; then
        for _ in $(seq 50); do state=$(ps -o stat= -p "$FAULTY" | cut -c1); [ "$state" = T ] && break; sleep 0.1; done
    fi
    if [ "$state" != T ]; then
        bad "stopped worker: the worker froze while holding a task" "$(tail -n 3 "$D/worker-u-frozen.log")"
        kill -CONT "$FAULTY"; kill $COORD; return
    fi
    start_worker "$D" "$EP" unet u-fresh
    if out=$(timeout 120 $BIN/sdxl wait "$JOB" --coordinator "$EP" 2>&1); then
        kill -CONT "$FAULTY"
        sleep 1.5 # the resumed worker finishes its stale task and reports it
        if exactly_once "$D" >/dev/null && grep -q "u-frozen (unet) is dead" "$D/coordinator.log" &&
            grep -q "resumed after the freeze" "$D/worker-u-frozen.log"; then
            ok "a unet worker frozen by SIGSTOP mid-task is declared dead, the job completes, nothing is written twice on resume"
        else bad "stopped worker" "$(exactly_once "$D") $(tail -n 5 "$D/coordinator.log")"; fi
    else bad "stopped worker: job completes" "$out"; fi
    kill $COORD
}

# A unet worker whose process stays alive (its liveness thread heartbeats)
# but whose compute hangs (--fault stall:2): only the coordinator's progress
# deadline (3 s here) can tell, and it must requeue the task to another
# worker.
scenario_stalled_worker() {
    faulty_unet_job stall stall:2 u-stuck "stalling at step"
    start_worker "$D" "$EP" unet u-live
    if out=$(timeout 120 $BIN/sdxl wait "$JOB" --coordinator "$EP" 2>&1) && exactly_once "$D" >/dev/null &&
        grep -q "u-stuck.*made no progress on its task" "$D/coordinator.log"; then
        ok "a unet worker alive but stuck mid-task loses its task at the progress deadline; each item exactly once"
    else bad "stalled worker" "$out $(exactly_once "$D") $(tail -n 5 "$D/coordinator.log")"; fi
    kill $COORD
}

scenario_curve() {
    local d=$ROOT/curve ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    python3 tests/cluster/curve_keys.py "$d" || { bad "CURVE keys" ""; return; }
    start_coordinator "$d" "$ep" --curve-secret "$d/server.secret" --allow "$d/allowed"
    local good bad_out
    good=$(SDXL_CURVE_SERVER_KEY=$d/server.public SDXL_CURVE_SECRET=$d/client.secret SDXL_CURVE_PUBLIC=$d/client.public \
        timeout 20 $BIN/sdxl workers --coordinator "$ep" 2>&1)
    bad_out=$(SDXL_CURVE_SERVER_KEY=$d/server.public SDXL_CURVE_SECRET=$d/stranger.secret SDXL_CURVE_PUBLIC=$d/stranger.public \
        timeout 20 $BIN/sdxl workers --coordinator "$ep" 2>&1)
    local rc=$?
    if grep -q "worker" <<<"$good" && [ $rc -ne 0 ] && grep -q "refused a peer" "$d/coordinator.log"; then
        ok "with CURVE, a client with an allowed key is served and one with an unknown key is refused"
    else bad "CURVE" "good: $good / stranger (rc $rc): $bad_out"; fi
    if out=$($BIN/sdxl-coordinator --bind "tcp://0.0.0.0:$(port)" --state "$d/s2" 2>&1); then bad "no CURVE binds loopback only" "$out"
    else grep -q "loopback" <<<"$out" && ok "without CURVE keys the coordinator refuses a non-loopback bind" || bad "loopback" "$out"; fi
    # a client refused by CURVE is told so (the ZAP handshake), not 'did not answer'
    if grep -q "refused this client's CURVE key" <<<"$bad_out"; then
        ok "a client with an unknown key is told the coordinator refused its CURVE key"
    else bad "client refusal message" "$bad_out"; fi
    # partial CURVE settings and a public key given as the secret are errors, never plaintext
    local partial swapped
    partial=$(SDXL_CURVE_SERVER_KEY=$d/server.public SDXL_CURVE_SECRET=$d/client.secret timeout 10 $BIN/sdxl workers --coordinator "$ep" 2>&1)
    swapped=$(SDXL_CURVE_SERVER_KEY=$d/server.public SDXL_CURVE_SECRET=$d/client.public SDXL_CURVE_PUBLIC=$d/client.public \
        timeout 10 $BIN/sdxl workers --coordinator "$ep" 2>&1)
    if grep -q "all three" <<<"$partial" && grep -q "not the secret key" <<<"$swapped"; then
        ok "partial CURVE settings and a public key given as the secret are refused"
    else bad "partial/swapped CURVE keys" "$partial / $swapped"; fi
    # each worker key registers only the ids it is allowed; an unknown key makes the worker give up, saying why
    local keys=(--curve-server-key "$d/server.public" --curve-secret "$d/worker.secret" --curve-public "$d/worker.public")
    start_worker "$d" "$ep" text w-1 "${keys[@]}"
    start_worker "$d" "$ep" text intruder "${keys[@]}"
    local stranger_out
    stranger_out=$(timeout 30 $BIN/sdxl-worker --coordinator "$ep" --role text --model "$M" --heartbeat-ms $HB --id w-9 \
        --curve-server-key "$d/server.public" --curve-secret "$d/stranger.secret" --curve-public "$d/stranger.public" 2>&1)
    local stranger_rc=$?
    sleep 1
    if grep -q "worker w-1 registered" "$d/coordinator.log" && ! grep -q "worker intruder registered" "$d/coordinator.log" &&
        grep -q "refused REGISTER of worker intruder" "$d/coordinator.log"; then
        ok "a worker key registers only the worker ids the allow file gives it"
    else bad "worker ids per key" "$(grep -i "regist" "$d/coordinator.log")"; fi
    if [ $stranger_rc = 1 ] && grep -q "refused this worker's CURVE key" <<<"$stranger_out"; then
        ok "a worker whose CURVE key is refused says so and exits 1"
    else bad "refused worker" "rc $stranger_rc: $stranger_out"; fi
    # the loopback rule reads the address bound, and tcp://localhost binds
    local lp
    lp=$(port)
    $BIN/sdxl-coordinator --bind "tcp://localhost:$lp" --state "$d/s3" >"$d/localhost.log" 2>&1 &
    local lpid=$!
    PIDS+=($lpid)
    if timeout 10 $BIN/sdxl status --coordinator "tcp://127.0.0.1:$lp" >/dev/null 2>&1; then
        ok "--bind tcp://localhost:PORT binds loopback and serves"
    else bad "localhost bind" "$(cat "$d/localhost.log")"; fi
    kill $lpid
    kill $COORD
}

# A job of 100,000 prompts (gzip-compressed) streams in pieces: counted
# exactly, an interrupted submit run again sends only the rest, status
# answers from kept counts, and cancel covers every item. No worker runs it.
scenario_large_job() {
    local d=$ROOT/large ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    start_coordinator "$d" "$ep"
    python3 -c "
import gzip
with gzip.open('$d/prompts.txt.gz', 'wt') as f:
    for i in range(100000): f.write('prompt %d: a lighthouse on a cliff\\n' % i)"
    $BIN/sdxl submit "$d/prompts.txt.gz" --out "$d/out" --coordinator "$ep" >"$d/submit1.log" 2>&1 &
    local sub=$! received=0 job
    PIDS+=($sub)
    # kill the client mid-stream: once some items arrived and before the last
    for _ in $(seq 400); do
        received=$($BIN/sdxl status --json --coordinator "$ep" 2>/dev/null |
            python3 -c 'import json,sys; j=json.load(sys.stdin); print(j[0]["received"] if j else 0)' 2>/dev/null)
        [ "${received:-0}" -gt 0 ] && break
        sleep 0.05
    done
    kill -9 $sub 2>/dev/null
    wait $sub 2>/dev/null
    local at_kill
    at_kill=$($BIN/sdxl status --json --coordinator "$ep" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["received"])')
    local out
    out=$(/usr/bin/time -f "%M KB" $BIN/sdxl submit "$d/prompts.txt.gz" --out "$d/out" --coordinator "$ep" 2>&1)
    job=$(grep -o 'job job-[0-9a-f]*' <<<"$out" | awk '{print $2}')
    local st
    st=$($BIN/sdxl status "$job" --json --coordinator "$ep")
    if [ "$at_kill" -gt 0 ] && [ "$at_kill" -lt 100000 ] && grep -q "interrupted submission completed" <<<"$out" &&
        python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(not (j["total"] == j["received"] == j["pending"] == 100000))' "$st"; then
        ok "a 100,000-item job: a submit killed after $at_kill items, run again, completes it; every item counted once"
    else bad "large job submit" "at kill: $at_kill; $out; $st"; fi
    local kb
    kb=$(grep -o '[0-9]* KB' <<<"$out" | awk '{print $1}')
    if [ -n "$kb" ] && [ "$kb" -lt 100000 ]; then ok "submit of 100,000 items peaks at $kb KB (under 100 MB)"
    else bad "submit memory" "$out"; fi
    local t0 t1
    t0=$(date +%s%N)
    $BIN/sdxl status "$job" --coordinator "$ep" >/dev/null
    t1=$(date +%s%N)
    if [ $(((t1 - t0) / 1000000)) -lt 1000 ]; then ok "status of a 100,000-item job answers in $(((t1 - t0) / 1000000)) ms"
    else bad "status latency" "$(((t1 - t0) / 1000000)) ms"; fi
    # cancel marks the job at once and its items in slices between messages:
    # status answers throughout and ends with every item cancelled
    $BIN/sdxl cancel "$job" --coordinator "$ep" >/dev/null
    local slow=0 t t0
    for _ in $(seq 300); do
        t0=$(date +%s%N)
        st=$($BIN/sdxl status "$job" --json --coordinator "$ep")
        t=$((($(date +%s%N) - t0) / 1000000))
        [ $t -gt $slow ] && slow=$t
        python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(not (j["state"] == "cancelled" and j["cancelled"] == 100000 and j["pending"] == 0))' "$st" && break
        sleep 0.1
    done
    if python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(not (j["state"] == "cancelled" and j["cancelled"] == 100000 and j["pending"] == 0))' "$st"; then
        ok "cancelling it cancels all 100,000 items (status answered within $slow ms meanwhile)"
    else bad "large cancel" "$st"; fi
    kill $COORD
}

# Text conditioning goes worker to worker: the text worker holds it, the unet
# worker fetches it, the coordinator stores none of it. A text worker killed
# while it holds finished items loses them: the unet workers say so, the
# items go back to the text stage without an attempt charged, and the images
# still equal sdxl generate's.
scenario_held_outputs() {
    local d=$ROOT/held ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_worker "$d" "$ep" text t1
    local t1=$LAST_WORKER job
    job=$(submit "$d" "$ep" --layout files)
    local encoded=0
    for _ in $(seq 300); do
        encoded=$($BIN/sdxl status "$job" --json --coordinator "$ep" | python3 -c 'import json,sys; print(json.load(sys.stdin)["encoded"])')
        [ "$encoded" = 24 ] && break
        sleep 0.1
    done
    local blobs
    blobs=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from items where blob is not null").fetchone()[0])' "$d/state/coordinator.sqlite")
    if [ "$encoded" = 24 ] && [ "$blobs" = 0 ]; then
        ok "24 items encoded and held by their text worker: the coordinator stores no conditioning"
    else bad "held conditioning" "$encoded encoded, $blobs blobs stored"; fi
    kill -9 $t1
    start_worker "$d" "$ep" text t2
    start_worker "$d" "$ep" unet u1
    start_worker "$d" "$ep" final f1
    local out
    out=$(timeout 180 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)
    local rc=$?
    if [ $rc = 0 ] && grep -q "no longer held" "$d/coordinator.log" && grep -q '"text_worker": *"t2"\|"text_worker":"t2"' "$d/out/00000000.json"; then
        ok "the text worker killed while holding 24 items: they are made again on another, none failed"
    else bad "held outputs lost" "wait rc $rc: $out; $(grep -c "no longer held" "$d/coordinator.log") losses; $(tail -n 5 "$d/coordinator.log")"; fi
    if out=$(same_as_generate "$d" 2>&1); then ok "their images equal sdxl generate's, byte for byte"; else bad "held: images" "$out"; fi
    kill $COORD
}

# Latents stay with the unet worker that made them (memory and its spool)
# until the image is written, never in the coordinator's database. Killed
# and restarted with the same id and spool, it serves them again: no UNet
# work is redone. Gone for good, its items wait --hold-grace-ms, then are
# made again elsewhere.
wait_state() { # state-name count job ep
    local n=0
    for _ in $(seq 600); do
        n=$($BIN/sdxl status "$3" --json --coordinator "$4" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1")
        [ "$n" = "$2" ] && return 0
        sleep 0.1
    done
    echo "$n $1"
    return 1
}
scenario_held_latents() {
    local d=$ROOT/latents ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep" --hold-grace-ms 4000
    start_worker "$d" "$ep" text t1
    start_worker "$d" "$ep" unet u1
    local u1=$LAST_WORKER job out blobs spooled
    job=$(submit "$d" "$ep" --layout files)
    out=$(wait_state denoised 24 "$job" "$ep")
    blobs=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from items where blob is not null").fetchone()[0])' "$d/state/coordinator.sqlite")
    spooled=$(find "$d/spool-u1" -type f | wc -l)
    if [ -z "$out" ] && [ "$blobs" = 0 ] && [ "$spooled" = 24 ]; then
        ok "24 items denoised: their latents are in u1's spool, none in the coordinator's database"
    else bad "held latents" "$out; $blobs blobs stored, $spooled spooled"; fi
    kill -9 $u1
    sleep 1.5 # declared dead (3 heartbeats of 0.3 s)
    start_worker "$d" "$ep" unet u1
    local u1b=$LAST_WORKER
    start_worker "$d" "$ep" final f1
    local f1=$LAST_WORKER
    out=$(timeout 180 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)
    local rc=$? losses
    # any item made again would have been charged a loss (store_item_lost_input)
    losses=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select sum(losses) from items where job=?", (sys.argv[2],)).fetchone()[0])' "$d/state/coordinator.sqlite" "$job")
    spooled=$(find "$d/spool-u1" -type f | wc -l)
    if [ $rc = 0 ] && ! grep -q "holder u1 is gone" "$d/coordinator.log" && [ "$spooled" = 0 ] &&
        [ "$(grep -c '"unet_worker"' "$d/out/metadata.jsonl")" = 24 ] && [ "$losses" = 0 ]; then
        ok "u1 killed while holding 24 latents, restarted on its spool: the final worker fetched all 24, nothing redone, the spool emptied by the releases"
    else bad "latents after a restart" "wait rc $rc: $out; $losses losses, $spooled left in the spool; $(tail -n 8 "$d/coordinator.log")"; fi
    if out=$(same_as_generate "$d" 2>&1); then ok "held latents: images equal sdxl generate's, byte for byte"; else bad "held latents: images" "$out"; fi
    # gone for good: a second job's latents are made again after the grace
    mkdir -p "$d/two"
    printf 'a green door\na blue kite\n' >"$d/two/prompts.txt"
    kill -9 $f1 # the second job's latents wait in u1
    sleep 1.5   # f1 declared dead: it takes no final task of the second job
    job=$($BIN/sdxl submit "$d/two/prompts.txt" --out "$d/two/out" --layout files --steps 2 --coordinator "$ep" | awk '{print $NF}')
    out=$(wait_state denoised 2 "$job" "$ep")
    kill -9 $u1b
    start_worker "$d" "$ep" unet u2
    # f2 sees another folder at the job's path (a tmpfs in a mount namespace
    # of its own): no marker there, so it sends the images to the coordinator
    mkdir -p "$d/two/out"
    unshare -m sh -c 'mount -t tmpfs none "$1" && shift && exec "$@"' sh "$d/two/out" \
        $BIN/sdxl-worker --coordinator "$ep" --role final --model "$M" --heartbeat-ms $HB --id f2 >>"$d/worker-f2.log" 2>&1 &
    PIDS+=($!)
    local t0=$SECONDS
    out="$out$(timeout 180 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)"
    rc=$?
    if [ $rc = 0 ] && grep -q "holder u1 is gone past --hold-grace-ms" "$d/coordinator.log" &&
        [ "$(grep -c '"unet_worker": *"u2"' "$d/two/out/metadata.jsonl")" = 2 ] && [ $((SECONDS - t0)) -ge 3 ]; then
        ok "a holder gone for good: its 2 items wait the grace (4 s), then are made again on u2"
    else bad "latents of a holder gone for good" "wait rc $rc after $((SECONDS - t0)) s: $out; $(grep -c '"unet_worker": *"u2"' "$d/two/out/metadata.jsonl") by u2; $(tail -n 12 "$d/coordinator.log")"; fi
    if grep -q "is the coordinator's here: this worker writes" "$d/worker-f1.log" &&
        grep -q "is not the coordinator's here" "$d/worker-f2.log" && [ -s "$d/two/out/00000001.png" ] &&
        ! ls -A "$d/two/out" | grep -q '^\.sdxl-job'; then
        ok "the final worker sharing the folder wrote the images itself; one that does not (a private mount) sent them to the coordinator; no marker left"
    else bad "direct writes" "$(grep -h "coordinator's here" "$d"/worker-f*.log); $(ls -A "$d/two/out")"; fi
    kill $COORD
}

# --max-ahead: with no final worker, the unet worker stops once the job has
# N latents spooled (not the whole job), the text worker once N plus the
# unet stage's capacity are encoded; a final worker then drains it all.
job_count() { # state job ep
    $BIN/sdxl status "$2" --json --coordinator "$3" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
scenario_bounded_ahead() {
    local d=$ROOT/ahead ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep" --max-ahead 3
    start_worker "$d" "$ep" text t1
    start_worker "$d" "$ep" unet u1
    local job out encoded denoised spooled
    job=$(submit "$d" "$ep" --layout files --steps 2)
    out=$(wait_state denoised 3 "$job" "$ep")
    sleep 3 # time for 2 more tiny UNet runs, were they allowed
    encoded=$(job_count encoded "$job" "$ep")
    denoised=$(job_count denoised "$job" "$ep")
    spooled=$(find "$d/spool-u1" -type f | wc -l)
    local human
    human=$($BIN/sdxl status "$job" --coordinator "$ep" 2>&1)
    # at most 3 + the unet stage's capacity (1) encoded; exactly 3 latents
    if [ -z "$out" ] && [ "$denoised" = 3 ] && [ "$spooled" = 3 ] && [ "$encoded" -le 4 ] && [ "$encoded" -ge 1 ] &&
        grep -q "the unet stage waits: 3 latents wait for the final stage (--max-ahead 3 plus its capacity 0)" <<<"$human"; then
        ok "--max-ahead 3 and no final worker: 3 latents spooled, $encoded items encoded, the other 20 wait their turn; status says why"
    else bad "bounded look-ahead" "$out; $denoised denoised, $spooled spooled, $encoded encoded; status: $human"; fi
    start_worker "$d" "$ep" final f1
    out=$(timeout 180 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)
    local rc=$?
    if [ $rc = 0 ] && [ "$(ls "$d/out"/*.png | wc -l)" = 24 ] && [ "$(find "$d/spool-u1" -type f | wc -l)" = 0 ]; then
        ok "a final worker arrives: the job drains to 24 images, the spool empties"
    else bad "bounded look-ahead: drain" "wait rc $rc: $out; $(tail -n 5 "$d/coordinator.log")"; fi
    kill $COORD
    # two jobs at once, each within its --max-ahead, never make a text worker
    # hold more than its --hold: none of its conditioning is dropped, so no
    # unet task finds it gone and no item is charged a loss for it
    local e=$d/hold ep2="tcp://127.0.0.1:$(port)" j1 j2 sum
    mkdir -p "$e/a" "$e/b"
    prompts "$e/a/prompts.txt"
    prompts "$e/b/prompts.txt"
    start_coordinator "$e" "$ep2"
    start_worker "$e" "$ep2" text t1 --hold 3
    j1=$(submit "$e/a" "$ep2" --layout files --steps 2)
    j2=$(submit "$e/b" "$ep2" --layout files --steps 2 --seed 5)
    sleep 3
    sum=$(($(job_count encoded "$j1" "$ep2") + $(job_count encoded "$j2" "$ep2")))
    start_worker "$e" "$ep2" unet u1
    start_worker "$e" "$ep2" final f1
    out=$(timeout 180 $BIN/sdxl wait "$j1" --coordinator "$ep2" 2>&1 && timeout 180 $BIN/sdxl wait "$j2" --coordinator "$ep2" 2>&1)
    rc=$?
    local losses
    losses=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select sum(losses) from items").fetchone()[0])' "$e/state/coordinator.sqlite")
    if [ "$sum" -le 3 ] && [ "$sum" -ge 1 ] && [ $rc = 0 ] && [ "$losses" = 0 ]; then
        ok "two jobs and a text worker holding 3: $sum encoded at once, then both complete with no loss charged"
    else bad "look-ahead within the text workers' hold" "$sum encoded, wait rc $rc: $out; $losses losses"; fi
    kill $COORD
}

# Health probes (--http): what Kubernetes' httpGet probes and an operator's
# curl see. /readyz: the coordinator once it serves, a worker once its model
# is loaded and it is registered (not while its coordinator is gone);
# /healthz: fails once a worker's loops stop turning (the stall hook).
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1"; }
wait_code() { # code url: within 10 s
    for _ in $(seq 100); do [ "$(http_code "$2")" = "$1" ] && return 0; sleep 0.1; done
    echo "$2 answered $(http_code "$2"), not $1"
    return 1
}
scenario_health_probes() {
    local d=$ROOT/health ep="tcp://127.0.0.1:$(port)" ch wh out
    mkdir -p "$d"
    ch=$(port)
    wh=$(port)
    printf 'a cat\n' >"$d/prompts.txt"
    start_coordinator "$d" "$ep" --http "127.0.0.1:$ch"
    start_worker "$d" "$ep" text t1
    start_worker "$d" "$ep" unet u1 --http "127.0.0.1:$wh" --live-timeout-s 2 --fault stall:1
    local u1=$LAST_WORKER
    if out="$(wait_code 200 "http://127.0.0.1:$ch/healthz")$(wait_code 200 "http://127.0.0.1:$ch/readyz")$(wait_code 200 "http://127.0.0.1:$wh/readyz")$(wait_code 200 "http://127.0.0.1:$wh/healthz")" &&
        [ "$(http_code "http://127.0.0.1:$ch/metrics-nope")" = 404 ]; then
        ok "the coordinator and a registered worker answer /healthz and /readyz with 200; an unknown path 404"
    else bad "probes of a healthy cluster" "$out"; fi
    $BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --steps 4 --coordinator "$ep" >/dev/null
    if out=$(wait_code 503 "http://127.0.0.1:$wh/healthz") && curl -s "http://127.0.0.1:$wh/healthz" | grep -q "has not turned"; then
        ok "a worker stalled in its compute loop fails /healthz (503, saying why) once --live-timeout-s passed"
    else bad "stalled worker's probe" "$out"; fi
    kill -9 $u1
    start_worker "$d" "$ep" unet u2 --http "127.0.0.1:$wh"
    wait_code 200 "http://127.0.0.1:$wh/readyz" >/dev/null
    kill -9 $COORD
    if out=$(wait_code 503 "http://127.0.0.1:$wh/readyz") && curl -s "http://127.0.0.1:$wh/readyz" | grep -q "coordinator" &&
        [ "$(http_code "http://127.0.0.1:$wh/healthz")" = 200 ]; then
        ok "with its coordinator gone a worker is not ready (503, saying why) but still alive"
    else bad "worker readiness without a coordinator" "$out"; fi
    out=$($BIN/sdxl-worker --coordinator "$ep" --role text --model "$M" --http nonsense 2>&1)
    local rc=$?
    if [ $rc = 1 ] && echo "$out" | grep -q -- "--http nonsense"; then
        ok "a bad --http value is refused, naming it"
    else bad "bad --http" "rc $rc: $out"; fi
}

# sdxl top against a cluster at work: in a pseudo-terminal (script) it
# redraws in place; piped (--once) it prints one plain snapshot.
scenario_top() {
    local d=$ROOT/top ep="tcp://127.0.0.1:$(port)" job out
    mkdir -p "$d"
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_stages "$d" "$ep"
    job=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --images-per-prompt 2 --steps 12 --coordinator "$ep" | awk '{print $NF}')
    script -qec "timeout 3 $BIN/sdxl top --interval 0.5 --coordinator $ep" "$d/typescript" >/dev/null 2>&1
    local redraws
    redraws=$(grep -o $'\033\\[H\033\\[2J' "$d/typescript" | wc -l)
    if [ "$redraws" -ge 3 ] && grep -q "$job" "$d/typescript" && grep -q "u1 .*unet" "$d/typescript" &&
        grep -q "^final " "$d/typescript"; then
        ok "sdxl top in a pseudo-terminal redraws in place ($redraws times in 3 s): the job, the stages, the workers"
    else bad "sdxl top in a terminal" "$redraws redraws; $(tail -c 600 "$d/typescript")"; fi
    out=$($BIN/sdxl top --once --coordinator "$ep")
    if grep -q "$job" <<<"$out" && ! grep -q $'\033' <<<"$out" && grep -q "^unet " <<<"$out"; then
        ok "sdxl top --once, piped: one plain snapshot"
    else bad "sdxl top --once" "$out"; fi
    timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" >/dev/null 2>&1
    kill $COORD
}

# A simulated fleet (sdxl-worker --simulate: real messages and tensor sizes,
# no model) of 60 workers in one process, through `sdxl bench --simulate`:
# the bench's count is the truth (every item done exactly once, each image
# and metadata line once), and the bench prints the coordinator's figures.
scenario_simulated() {
    local d=$ROOT/simulated
    mkdir -p "$d"
    local out
    out=$(timeout 300 $BIN/sdxl bench --simulate --unet 48 --text 2 --final 10 --items 600 --steps 4 --step-ms 5 \
        --text-ms 1 --final-ms 2 --width 64 --height 64 --heartbeat-ms 300 --json --keep "$d/run" 2>&1)
    local n_png n_meta n_keys
    n_png=$(ls "$d/run/out"/*.png 2>/dev/null | wc -l)
    n_meta=$(wc -l <"$d/run/out/metadata.jsonl" 2>/dev/null)
    n_keys=$(python3 -c 'import json,sys; print(len({json.loads(l)["key"] for l in open(sys.argv[1])}))' \
        "$d/run/out/metadata.jsonl" 2>/dev/null)
    local workers
    workers=$(python3 -c 'import json,sys; print(len({json.loads(l)["unet_worker"] for l in open(sys.argv[1])}))' \
        "$d/run/out/metadata.jsonl" 2>/dev/null)
    if python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(not (j["done"] == j["items"] == 600 and j["images_per_second"] > 0 and j["db_rows_per_image"] > 0))' "$out" 2>/dev/null &&
        [ "$n_png" = 600 ] && [ "$n_meta" = 600 ] && [ "$n_keys" = 600 ] && [ "${workers:-0}" -ge 2 ]; then
        ok "a simulated fleet of 60 workers: the bench counts 600 images, each made exactly once ($workers unet workers took part)"
    else bad "simulated fleet" "bench: $out; $n_png images, $n_meta metadata lines, $n_keys keys, $workers unet workers; $(tail -n 5 "$d/run/coordinator.log" "$d/run/workers.log")"; fi
}

# A coordinator behind a TCP proxy (as a load balancer or Service puts it):
# while it is down the proxy still accepts, and every CURVE handshake breaks
# off, which from a worker looks like a wrong server key. That must not kill a
# worker (a network fault is no reason to exit) nor fail a client that the
# coordinator has answered: both ride out the outage and the restart.
scenario_curve_proxy() {
    local d=$ROOT/curve-proxy cport rport
    cport=$(port)
    rport=$(port)
    local ep="tcp://127.0.0.1:$cport" via="tcp://127.0.0.1:$rport"
    mkdir -p "$d"
    python3 tests/cluster/curve_keys.py "$d" || { bad "CURVE keys" ""; return; }
    python3 tests/cluster/chaos/relay.py --no-commands --to "127.0.0.1:$cport" --listen "proxy=127.0.0.1:$rport" \
        >"$d/relay.log" 2>&1 &
    PIDS+=($!)
    local keys=(--curve-server-key "$d/server.public" --curve-secret "$d/worker.secret" --curve-public "$d/worker.public")
    local cenv=(env SDXL_CURVE_SERVER_KEY="$d/server.public" SDXL_CURVE_SECRET="$d/client.secret"
        SDXL_CURVE_PUBLIC="$d/client.public")
    sleep 0.5
    start_worker "$d" "$via" text w-t "${keys[@]}"
    local wt=$LAST_WORKER
    local t0=$SECONDS out rc
    out=$("${cenv[@]}" timeout 20 $BIN/sdxl workers --coordinator "$via" 2>&1)
    rc=$?
    if [ $rc = 1 ] && grep -q "CURVE handshake with $via failed" <<<"$out" && [ $((SECONDS - t0)) -le 6 ]; then
        ok "behind a proxy with no coordinator, a client that was never answered says the handshake fails, within 6 s"
    else bad "client behind a proxy, no coordinator" "rc $rc after $((SECONDS - t0)) s: $out"; fi
    sleep 3 # past the 3 s a refused key is given
    if kill -0 $wt 2>/dev/null && grep -q "handshake with the coordinator at $via failed.*retrying" "$d/worker-w-t.log"; then
        ok "a worker whose handshakes break off (coordinator down behind a proxy) says so once and keeps trying"
    else bad "worker behind a proxy" "$(cat "$d/worker-w-t.log")"; fi
    start_coordinator "$d" "$ep" --curve-secret "$d/server.secret" --allow "$d/allowed"
    start_worker "$d" "$via" unet w-u "${keys[@]}"
    start_worker "$d" "$via" final w-f "${keys[@]}"
    printf 'a proxy\na load balancer\na restart\n' >"$d/prompts.txt"
    local job
    job=$("${cenv[@]}" timeout 60 $BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --steps 6 --images-per-prompt 4 \
        --layout files --coordinator "$via" | awk '{print $NF}')
    "${cenv[@]}" timeout 120 $BIN/sdxl wait "$job" --timeout 110 --coordinator "$via" >"$d/wait.log" 2>&1 &
    local waiter=$!
    # the kill lands mid-job: after the first image, before the last
    for _ in $(seq 300); do ls "$d/out"/*.png >/dev/null 2>&1 && break; sleep 0.1; done
    local before
    before=$(ls "$d/out"/*.png 2>/dev/null | wc -l)
    kill -9 $COORD
    sleep 2
    start_coordinator "$d" "$ep" --curve-secret "$d/server.secret" --allow "$d/allowed"
    wait $waiter
    rc=$?
    if [ $rc = 0 ] && [ "$before" -ge 1 ] && [ "$before" -lt 12 ] && [ "$(ls "$d/out"/*.png | wc -l)" = 12 ] &&
        grep -q "worker w-t registered" "$d/coordinator.log"; then
        ok "through a proxy, the coordinator killed and restarted mid-job: workers and a waiting client ride it out"
    else bad "proxy restart" "wait rc $rc, $before images at the kill: $(cat "$d/wait.log"; ls "$d/out"; cat "$d/coordinator.log" "$d"/worker-*.log)"; fi
    kill $COORD
}

# --cfg-split nccl: a unet pair, one guidance half each, exchanging predictions
# every step (over ZeroMQ here: NCCL needs two GPUs). The pictures must equal
# the single-device batch of 2 byte for byte, and a pair that loses its
# follower must not lose items: its task is requeued to another unet worker.
scenario_cfg_pair() {
    local d=$ROOT/pair ep="tcp://127.0.0.1:$(port)" peer="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_worker "$d" "$ep" text t1
    start_worker "$d" "$ep" unet lead --cfg-split nccl --cfg-peer "$peer" --cfg-rank 0 --cfg-timeout-ms 20000
    LAST_WORKER_LEAD=$LAST_WORKER
    $BIN/sdxl-worker --role unet --model "$M" --id follow --cfg-split nccl --cfg-peer "$peer" --cfg-rank 1 \
        --cfg-timeout-ms 20000 >>"$d/worker-follow.log" 2>&1 &
    local follower=$!
    PIDS+=($follower)
    start_worker "$d" "$ep" final f1
    local job
    job=$(submit "$d" "$ep" --layout files)
    if ! out=$(timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1); then
        bad "cfg pair job completes" "$out$(tail -n 5 "$d"/worker-*.log)"; kill $COORD; return
    fi
    if out=$(same_as_generate "$d" 2>&1) && grep -q "following" "$d/worker-follow.log" &&
        grep -q "cfg split zmq" "$d/worker-lead.log"; then
        ok "a --cfg-split nccl unet pair (one half each) makes every image byte-equal to generate's"
    else bad "cfg pair images equal generate" "$out$(tail -n 3 "$d"/worker-lead.log "$d"/worker-follow.log)"; fi
    # the follower killed while the pair is idle: the leader notices the closed
    # connection at once and stops, rather than take work it cannot finish
    kill -9 $follower
    local gone=no
    for _ in $(seq 50); do kill -0 $LAST_WORKER_LEAD 2>/dev/null || { gone=yes; break; }; sleep 0.1; done
    if [ $gone = yes ] && grep -q "follower disconnected" "$d/worker-lead.log"; then
        ok "an idle leader whose follower is killed stops within 5 s, saying why"
    else bad "idle leader notices its follower's death" "$(tail -n 3 "$d/worker-lead.log")"; fi
    # two halves of different models refuse to pair, naming both
    local peer3="tcp://127.0.0.1:$(port)" lead_out
    $BIN/sdxl-worker --role unet --model "${SDXL_TESTDATA:-../shared/testdata}/sdxl-tiny" --cfg-split nccl \
        --cfg-peer "$peer3" --cfg-rank 1 --cfg-timeout-ms 5000 >"$d/mismatch-follow.log" 2>&1 &
    PIDS+=($!)
    lead_out=$(timeout 30 $BIN/sdxl-worker --coordinator "$ep" --role unet --model "$M" --cfg-split nccl \
        --cfg-peer "$peer3" --cfg-rank 0 --cfg-timeout-ms 5000 2>&1)
    if [ $? = 1 ] && grep -q "the follower has model" <<<"$lead_out"; then
        ok "a cfg pair of two different models is refused, naming both identities"
    else bad "cfg pair model mismatch" "$lead_out"; fi
    # a new pair whose follower dies at its 2nd step: the leader stops, its work goes to a new unet worker
    kill -9 $LAST_WORKER_LEAD $follower 2>/dev/null
    local peer2="tcp://127.0.0.1:$(port)"
    start_worker "$d" "$ep" unet lead2 --cfg-split nccl --cfg-peer "$peer2" --cfg-rank 0 --cfg-timeout-ms 3000
    $BIN/sdxl-worker --role unet --model "$M" --id follow2 --cfg-split nccl --cfg-peer "$peer2" --cfg-rank 1 \
        --fault die:2 >>"$d/worker-follow2.log" 2>&1 &
    PIDS+=($!)
    rm -rf "$d/out"
    job=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --images-per-prompt 4 --steps 4 --seed 100 \
        --coordinator "$ep" --layout files | awk '{print $NF}')
    for _ in $(seq 100); do grep -q "stopping" "$d/worker-lead2.log" && break; sleep 0.3; done
    start_worker "$d" "$ep" unet u3
    if out=$(timeout 150 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1) && out=$(exactly_once "$d" 2>&1) &&
        grep -q "task [0-9]* failed: cfg pair: rank 1 disconnected" "$d/worker-lead2.log"; then
        ok "when the pair's follower dies the leader stops and every item is still made exactly once"
    else bad "cfg pair follower death" "$out$(tail -n 4 "$d"/worker-lead2.log)"; fi
    kill $COORD
}

# The coordinator alone killed (SIGKILL) and restarted three times while a
# job runs, no worker touched: no item may fail or be charged an attempt,
# each worker registers at most once per restart, and the job completes with
# every item exactly once.
scenario_coordinator_restarts() {
    local d=$ROOT/crestarts ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_stages "$d" "$ep"
    local job r
    job=$(submit "$d" "$ep" --layout files --steps 24) # long enough that every kill finds tasks in flight
    for r in 1 2 3; do
        sleep 1
        kill -9 $COORD
        wait $COORD 2>/dev/null
        sleep 0.5
        start_coordinator "$d" "$ep"
    done
    local out
    if ! out=$(timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1); then
        bad "coordinator restarts: the job completes with no item failed" "$out $(tail -n 5 "$d/coordinator.log")"
        kill $COORD; return
    fi
    local regs worst
    regs=$(grep -o "worker [a-z0-9]* registered" "$d/coordinator.log" | sort | uniq -c)
    worst=$(awk '{print $1}' <<<"$regs" | sort -n | tail -1)
    if grep -q " 0 failed" <<<"$out" && exactly_once "$d" >/dev/null && [ "${worst:-9}" -le 4 ] &&
        ! grep -q "failed attempt\|registered again" "$d/coordinator.log" && grep -q "of the last run" "$d/coordinator.log"; then
        ok "3 coordinator restarts mid-job: no item failed or charged, at most one REGISTER per worker and restart"
    else bad "coordinator restarts" "$out / registrations: $regs / $(grep -c 'failed attempt\|registered again' "$d/coordinator.log")"; fi
    # a second coordinator on the same state dir refuses, naming the holder
    local second
    second=$(timeout 10 $BIN/sdxl-coordinator --bind "tcp://127.0.0.1:$(port)" --state "$d/state" 2>&1)
    if [ $? = 1 ] && grep -q "pid $COORD" <<<"$second"; then
        ok "a second coordinator on the same state dir refuses, naming the first one's pid"
    else bad "one coordinator per state dir" "$second"; fi
    kill $COORD
}

# Done means present: items that failed of their own (a worker whose every
# item fails, --fault fail) fail after 3 attempts and wait exits 1; `sdxl
# retry` with a healthy worker makes them; a cancelled job resubmitted makes
# what was cancelled; cancelling a finished job changes nothing.
scenario_job_lifecycle() {
    local d=$ROOT/lifecycle ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    printf 'a cat\na dog\n' >"$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_worker "$d" "$ep" text t1
    start_worker "$d" "$ep" unet u-bad --fault fail
    local bad_unet=$LAST_WORKER
    start_worker "$d" "$ep" final f1
    local job out rc
    job=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --steps 2 --layout files --coordinator "$ep" | awk '{print $NF}')
    out=$(timeout 60 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)
    rc=$?
    if [ $rc = 1 ] && grep -q "2 failed" <<<"$out" && grep -q "fault hook: this item fails" <<<"$out"; then
        ok "items failing of their own fail after their attempts, with the reason; wait exits 1"
    else bad "own failures" "rc $rc: $out"; fi
    kill $bad_unet
    start_worker "$d" "$ep" unet u-good
    if $BIN/sdxl retry "$job" --coordinator "$ep" >/dev/null && out=$(timeout 60 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1) &&
        [ -f "$d/out/00000000.png" ] && [ -f "$d/out/00000001.png" ]; then
        ok "sdxl retry makes the failed items; wait exits 0 once every image is there"
    else bad "retry" "$out"; fi
    local before after
    before=$($BIN/sdxl status "$job" --json --coordinator "$ep")
    $BIN/sdxl cancel "$job" --coordinator "$ep" >/dev/null
    after=$($BIN/sdxl status "$job" --json --coordinator "$ep")
    if python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert a["state"]==b["state"]=="done" and a["done"]==b["done"]==2, (a,b)' "$before" "$after"; then
        ok "cancelling a finished job changes nothing"
    else bad "cancel a finished job" "$before / $after"; fi
    # cancel mid-job, then resubmit: what was cancelled is made, wait exits 0
    printf 'one\ntwo\nthree\nfour\nfive\nsix\n' >"$d/more.txt"
    kill -STOP $LAST_WORKER
    job=$($BIN/sdxl submit "$d/more.txt" --out "$d/more" --steps 2 --layout files --coordinator "$ep" | awk '{print $NF}')
    sleep 1
    $BIN/sdxl cancel "$job" --coordinator "$ep" >/dev/null
    kill -CONT $LAST_WORKER
    out=$($BIN/sdxl submit "$d/more.txt" --out "$d/more" --steps 2 --layout files --coordinator "$ep")
    if out=$(timeout 60 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1) && [ "$(ls "$d/more"/*.png | wc -l)" = 6 ]; then
        ok "a cancelled job submitted again makes what was cancelled; wait exits 0 with all 6 images"
    else bad "resubmit after cancel" "$out $(ls "$d/more")"; fi
    # the same in WebDataset shards: a shard written when the job was cancelled
    # takes the items made later (it was once left as it was, their images
    # dropped, while wait said done)
    kill -STOP $LAST_WORKER
    job=$($BIN/sdxl submit "$d/more.txt" --out "$d/shards" --steps 2 --shard-size 2 --coordinator "$ep" | awk '{print $NF}')
    sleep 1
    $BIN/sdxl cancel "$job" --coordinator "$ep" >/dev/null
    kill -CONT $LAST_WORKER
    $BIN/sdxl submit "$d/more.txt" --out "$d/shards" --steps 2 --shard-size 2 --coordinator "$ep" >/dev/null
    out=$(timeout 60 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)
    local members
    members=$(python3 -c '
import sys, tarfile, glob
names = sorted(m for t in glob.glob(sys.argv[1] + "/*.tar") for m in tarfile.open(t).getnames())
print(len(names), len(set(names)))' "$d/shards")
    if [ "$members" = "12 12" ] && [ ! -d "$d/shards/.staging" ]; then
        ok "a cancelled WebDataset job submitted again: its shards hold all 6 samples once each"
    else bad "resubmit after cancel (shards)" "$out; members (all, unique): $members; $(ls -a "$d/shards" "$d/shards/.staging" 2>&1)"; fi
    kill $COORD
}

# A coordinator killed at each step of writing a shard (--fault shard:N: its
# temp file created, written, renamed, its first staged file removed), then
# restarted: every job ends with complete shards, each sample once, and
# nothing left in .staging or as a temp file.
scenario_shard_kills() {
    local n
    for n in 1 2 3 4; do
        local d=$ROOT/shardkill$n ep="tcp://127.0.0.1:$(port)"
        mkdir -p "$d"
        printf 'a cat\na dog\n' >"$d/prompts.txt"
        start_coordinator "$d" "$ep" --fault shard:$n
        local doomed=$COORD
        start_stages "$d" "$ep"
        local job
        job=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --images-per-prompt 4 --steps 2 --layout webdataset \
            --shard-size 4 --coordinator "$ep" | awk '{print $NF}')
        for _ in $(seq 300); do kill -0 $doomed 2>/dev/null || break; sleep 0.1; done
        start_coordinator "$d" "$ep"
        local out members
        out=$(timeout 90 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)
        members=$(for t in "$d"/out/*.tar; do tar tf "$t"; done | sort)
        if grep -q "dying at shard step $n" "$d/coordinator.log" && [ "$(wc -l <<<"$members")" = 16 ] &&
            [ "$(uniq <<<"$members" | wc -l)" = 16 ] && [ ! -e "$d/out/.staging" ] && ! ls -A "$d/out" | grep -q '\.tmp\.'; then
            ok "coordinator killed at shard step $n and restarted: 2 complete shards, 8 samples once, no leftovers"
        else bad "shard kill at step $n" "$out / $(ls -A "$d/out" "$d/out/.staging" 2>&1) / $members"; fi
        kill $COORD
    done
}

# A full disk pauses a job's outputs instead of failing its items: the output
# folder is a 40 KiB tmpfs, the job stalls with status saying why, and once
# the filesystem grows the job completes with every item and none failed.
scenario_full_disk() {
    local d=$ROOT/fulldisk ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d/out"
    if ! mount -t tmpfs -o size=40k tmpfs "$d/out" 2>"$d/mount.err"; then
        bad "full disk: mounting a small tmpfs (needs root, as CI has)" "$(cat "$d/mount.err")"; return
    fi
    printf 'a cat\na dog\na fox\n' >"$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_stages "$d" "$ep"
    local job st paused=no
    job=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/out" --images-per-prompt 4 --steps 2 --layout files \
        --coordinator "$ep" | awk '{print $NF}')
    for _ in $(seq 200); do
        st=$($BIN/sdxl status "$job" --json --coordinator "$ep" 2>/dev/null)
        grep -q '"paused"' <<<"$st" && { paused=yes; break; }
        sleep 0.2
    done
    mount -o remount,size=4m "$d/out"
    local out
    out=$(timeout 90 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)
    local rc=$?
    if [ $paused = yes ] && grep -q "No space left" <<<"$st" && [ $rc = 0 ] && grep -q " 0 failed" <<<"$out" &&
        [ "$(ls "$d/out"/*.png | wc -l)" = 12 ]; then
        ok "a full disk pauses the job's outputs (status says why) and the job completes when space returns, no item failed"
    else bad "full disk" "paused $paused, rc $rc: $out / $st"; fi
    kill $COORD
    umount "$d/out" 2>/dev/null
}

# A unet worker whose spool disk is full holds its latents in memory only:
# the job completes, nothing charged or failed, and the worker says why.
scenario_full_spool() {
    local d=$ROOT/fullspool ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d/spool-u1"
    # 12 KB: three 4 KB pages, so the fourth latent on finds the disk full
    if ! mount -t tmpfs -o size=12k tmpfs "$d/spool-u1" 2>"$d/mount.err"; then
        bad "full spool: mounting a small tmpfs (needs root, as CI has)" "$(cat "$d/mount.err")"; return
    fi
    prompts "$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_stages "$d" "$ep"
    local job out rc
    job=$(submit "$d" "$ep" --layout files --steps 2)
    out=$(timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1)
    rc=$?
    if [ $rc = 0 ] && grep -q " 0 failed" <<<"$out" && [ "$(ls "$d/out"/*.png | wc -l)" = 24 ] &&
        grep -q "cannot be written: outputs held in memory only" "$d/worker-u1.log" &&
        ! grep -q "task .* failed" "$d/worker-u1.log"; then
        ok "a full spool disk: latents held in memory only (the worker says so), the job completes, no item failed"
    else bad "full spool" "rc $rc: $out; $(grep -m3 "spool\|failed" "$d/worker-u1.log")"; fi
    kill $COORD
    umount "$d/spool-u1" 2>/dev/null
}

# the scenarios of which model a job runs on (pinned models, items' own LoRAs and VAEs)
. tests/cluster/scenarios_models.sh
. tests/cluster/scenarios_prompts.sh

# all scenarios, or the ones named on the command line (e.g. cfg_pair curve)
for s in "${@:-basic cfg_pair pinned_model killed_worker restarted_coordinator stopped_worker stalled_worker curve curve_proxy large_job held_outputs held_latents bounded_ahead health_probes top simulated coordinator_restarts job_lifecycle shard_kills full_disk full_spool item_models long_prompts}"; do
    for one in $s; do "scenario_$one"; done
done
finish
