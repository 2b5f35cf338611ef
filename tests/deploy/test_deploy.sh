#!/usr/bin/env bash
# What deploy/ gives operators, checked here: the systemd units pass
# `systemd-analyze verify` with a clean stderr, and the processes speak
# systemd's notification protocol (Type=notify: READY=1 once serving,
# WATCHDOG=1 while their loops turn, STOPPING=1) to a NOTIFY_SOCKET a test
# listens on. Ends with "deploy: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
M=build/models/sdxl-tiny-random
NAME=deploy
. tests/script_util.sh
ROOT=$(mktemp -d /tmp/sdxl-deploy-XXXXXX)
stop_on_exit "$ROOT" KILL

# the units as shipped, their binaries pointed at this build's
for unit in sdxl-coordinator.service sdxl-worker@.service; do
    sed "s#/usr/local/bin/#$PWD/$BIN/#" "deploy/systemd/$unit" >"$ROOT/$unit"
done
if err=$(cd "$ROOT" && systemd-analyze verify --man=no ./sdxl-coordinator.service ./sdxl-worker@gpu0.service 2>&1) &&
    [ -z "$err" ]; then
    ok "systemd-analyze verify: both units clean (no warning, no error)"
else bad "systemd-analyze verify" "$err"; fi

# listens for SECONDS on a fresh socket; the log is ROOT/NAME.notify
listen() { # name seconds
    python3 tests/deploy/notify_listen.py "$ROOT/$1.sock" "$2" >"$ROOT/$1.notify" &
    PIDS+=($!)
    for _ in $(seq 50); do [ -S "$ROOT/$1.sock" ] && return; sleep 0.05; done
}
has() { grep -q "$2" "$ROOT/$1.notify"; }
count() { grep -c "$2" "$ROOT/$1.notify"; }

ep="tcp://127.0.0.1:$(port)"
listen coord 8
NOTIFY_SOCKET="$ROOT/coord.sock" WATCHDOG_USEC=400000 \
    $BIN/sdxl-coordinator --bind "$ep" --state "$ROOT/state" --heartbeat-ms 300 >"$ROOT/coordinator.log" 2>&1 &
coord=$!
PIDS+=($coord)
listen worker 8
# a worker before its coordinator serves: alive, not ready
NOTIFY_SOCKET="$ROOT/worker.sock" WATCHDOG_USEC=400000 \
    $BIN/sdxl-worker --coordinator "tcp://127.0.0.1:9" --role text --model "$M" --heartbeat-ms 300 --id t1 \
    >"$ROOT/worker.log" 2>&1 &
early=$!
PIDS+=($early)
sleep 1.5
if has coord "READY=1" && has coord "STATUS=serving on $ep" && [ "$(count coord WATCHDOG=1)" -ge 2 ]; then
    ok "the coordinator sends READY=1 with its status, then WATCHDOG=1 while it runs"
else bad "coordinator notifications" "$(cat "$ROOT/coord.notify")"; fi
if ! has worker "READY=1" && [ "$(count worker WATCHDOG=1)" -ge 2 ]; then
    ok "a worker whose coordinator does not answer sends WATCHDOG=1 but no READY=1"
else bad "unregistered worker notifications" "$(cat "$ROOT/worker.notify")"; fi
kill $early
wait $early 2>/dev/null
# the same worker with its coordinator: ready once registered
NOTIFY_SOCKET="$ROOT/worker.sock" WATCHDOG_USEC=400000 \
    $BIN/sdxl-worker --coordinator "$ep" --role text --model "$M" --heartbeat-ms 300 --id t1 >>"$ROOT/worker.log" 2>&1 &
w=$!
PIDS+=($w)
for _ in $(seq 50); do has worker "READY=1" && break; sleep 0.1; done
if has worker "STOPPING=1" && has worker "READY=1.*registered with $ep as t1" ; then
    ok "a worker sends STOPPING=1 when told to stop, and READY=1 once registered with its coordinator"
else bad "worker notifications" "$(cat "$ROOT/worker.notify")"; fi
kill $w $coord
wait $w $coord 2>/dev/null
sleep 0.3
if has coord "STOPPING=1"; then
    ok "the coordinator sends STOPPING=1 when told to stop"
else bad "coordinator stopping" "$(cat "$ROOT/coord.notify")"; fi

finish
