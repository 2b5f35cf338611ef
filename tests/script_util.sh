# script_util.sh - what the shell test scripts share (sourced): pass/fail
# counting with diagnostics, a free loopback port. A script sets NAME and
# calls finish at its end: "NAME: N passed, N failed", exit 0 only when none
# failed (tests/run_suite.sh adds that line's counts).
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
# a failing check shows its diagnostics: the first 60 lines
bad() { fail=$((fail + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "$2" | head -60 | sed 's/^/       /'; }
finish() { echo "$NAME: $pass passed, $fail failed"; [ "$fail" = 0 ]; exit; }
# What a script starts goes in PIDS; at exit, however it exits, each is
# stopped by its PID (SIGNAL, TERM unless told), waited for, and ROOT removed.
stop_on_exit() { # root [signal]
    PIDS=()
    STOP_ROOT=$1 STOP_SIGNAL=${2:-TERM}
    trap 'for p in "${PIDS[@]}"; do kill -"$STOP_SIGNAL" "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$STOP_ROOT"' EXIT
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A local cluster for a test, under ROOT: a coordinator (its --http on a free
# port) and one worker of each role with the tiny model, ids PREFIX-ROLE, each
# with its own --http too. Sets ep (the coordinator), ch (its http port),
# TARGETS (every http address, space-separated); its processes go in PIDS
# (stop_on_exit stops them).
local_cluster() { # root prefix
    local root=$1 prefix=$2 role wp
    export OMP_NUM_THREADS=1
    ep="tcp://127.0.0.1:$(port)"
    ch=$(port)
    ${BIN:-build/bin}/sdxl-coordinator --bind "$ep" --state "$root/state" --heartbeat-ms 300 --http "127.0.0.1:$ch" \
        >"$root/c.log" 2>&1 &
    PIDS+=($!)
    TARGETS="127.0.0.1:$ch"
    for role in text unet final; do
        wp=$(port)
        ${BIN:-build/bin}/sdxl-worker --coordinator "$ep" --role $role --model build/models/sdxl-tiny-random \
            --heartbeat-ms 300 --id "$prefix-$role" --http "127.0.0.1:$wp" --spool "$root/spool" >"$root/w-$role.log" 2>&1 &
        PIDS+=($!)
        TARGETS="$TARGETS 127.0.0.1:$wp"
    done
}
