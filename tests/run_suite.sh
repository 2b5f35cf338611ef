#!/usr/bin/env bash
# The whole test suite (what `make test` and CI run):
#   1. build everything and the Criterion tests (plain), run them;
#   2. the same under AddressSanitizer + UBSan (build-asan/);
#   3. a short libFuzzer run of every fuzz target;
#   4. CLI checks of the built binaries, the cluster tests (coordinator and
#      workers on loopback: killed, stopped, restarted; garbage; CURVE) and a
#      short fault campaign (kills, pauses, partitions, loss and delay between
#      network namespaces); the deploy checks (systemd units and sd_notify);
#   5. the tokenizer speed floor (20,000 prompts/s on one core).
# Ends with one line "N passed, N failed" (every Criterion test, CLI check and
# stage counted once); exit status 0 only when nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
passed=0
failed=0
# every temporary path is this run's own: two suites at once on one machine
# (two clones) do not share a file
RUN_TMP=$(mktemp -d /tmp/sdxl-suite-XXXXXX)
trap 'rm -rf "$RUN_TMP"' EXIT

stage_ok() { passed=$((passed + 1)); echo "[suite] ok: $1"; }
stage_fail() { failed=$((failed + 1)); echo "[suite] FAILED: $1"; }

if [ ! -f ../shared/testdata/golden/manifest.json ] && [ -z "${SDXL_TESTDATA:-}" ]; then
    echo "[suite] FATAL: ../shared/testdata is missing (the golden data lives beside the project root)"
    echo "0 passed, 1 failed"
    exit 1
fi

# Runs a Criterion binary and adds its counts.
run_criterion() {
    local label=$1 bin=$2 log
    log=$(mktemp "$RUN_TMP/criterion-XXXXXX")
    SDXL_BIN_DIR=${label_bin_dir:-build/bin} "$bin" --jobs "$JOBS" 2>&1 | tee "$log" | grep -vE '^\[----\]   $' | grep -E 'FAIL|CRASH|Synthesis|Assertion|----' || true
    local syn
    syn=$(grep 'Synthesis:' "$log" | tail -1)
    if [ -z "$syn" ]; then
        stage_fail "$label: no Criterion summary (crashed?)"
        tail -30 "$log"
        rm -f "$log"
        return
    fi
    local t p f c
    t=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$syn")
    p=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$syn")
    f=$(sed -E 's/.*Failing: ([0-9]+).*/\1/' <<<"$syn")
    c=$(sed -E 's/.*Crashing: ([0-9]+).*/\1/' <<<"$syn")
    passed=$((passed + p))
    failed=$((failed + f + c))
    echo "[suite] $label: $t tested, $p passing, $f failing, $c crashing"
    rm -f "$log"
}

echo "[suite] building (plain)"
if make -j"$JOBS" tests-bin >"$RUN_TMP/build.log" 2>&1; then
    stage_ok "build"
    run_criterion "unit+golden" build/bin/sdxl-tests
else
    stage_fail "build"
    tail -40 "$RUN_TMP/build.log"
fi

echo "[suite] building (ASan + UBSan)"
if make -j"$JOBS" SANITIZE=1 tests-bin >"$RUN_TMP/build-asan.log" 2>&1; then
    stage_ok "build under ASan+UBSan"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        label_bin_dir=build-asan/bin run_criterion "unit+golden (ASan+UBSan)" build-asan/bin/sdxl-tests
else
    stage_fail "build under ASan+UBSan"
    tail -40 "$RUN_TMP/build-asan.log"
fi

echo "[suite] fuzzing ${FUZZ_SECONDS}s per target"
if tests/fuzz/run_fuzz.sh "$FUZZ_SECONDS"; then stage_ok "fuzz"; else stage_fail "fuzz"; fi

# Runs a test script that ends with "NAME: N passed, N failed" and adds its counts.
run_counted() { # name seconds command...
    local name=$1 limit=$2 log line
    shift 2
    log=$(mktemp "$RUN_TMP/$name-XXXXXX")
    BIN=build/bin timeout "$limit" "$@" | tee "$log"
    line=$(grep "^$name:" "$log" | tail -1)
    rm -f "$log"
    if [ -n "$line" ]; then
        passed=$((passed + $(sed -E "s/^$name: ([0-9]+) passed.*/\\1/" <<<"$line")))
        failed=$((failed + $(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")))
    else
        stage_fail "$* printed no summary"
    fi
}

echo "[suite] CLI checks"
run_counted cli 600 tests/cli/test_cli.sh
echo "[suite] cluster tests (loopback, tiny model)"
run_counted cluster 600 tests/cluster/test_cluster.sh
echo "[suite] deploy checks: systemd units and their notifications, Kubernetes manifests, a real Slurm, a container"
run_counted deploy 300 tests/deploy/test_deploy.sh
run_counted k8s 600 tests/deploy/test_k8s.sh
run_counted slurm 600 tests/deploy/test_slurm.sh
run_counted container 900 tests/deploy/test_container.sh
run_counted prometheus 300 tests/deploy/test_prometheus.sh
run_counted status_page 300 tests/deploy/test_status_page.sh

echo "[suite] fault campaign (tests/cluster/chaos: 12 process and network faults; make chaos TRIALS=N for a long one)"
if timeout 600 python3 tests/cluster/chaos/chaos.py --bin build/bin --model build/models/sdxl-tiny-random --trials 12 \
    --seed "${CHAOS_SEED:-1}"; then
    stage_ok "fault campaign: nothing lost, duplicated, torn or failed"
else
    stage_fail "fault campaign"
fi

echo "[suite] tokenizer speed floor"
if build/bin/bench-tokenizer ../shared/testdata/sdxl-tiny/tokenizer --min 20000; then
    stage_ok "tokenizer >= 20000 prompts/s"
else
    stage_fail "tokenizer speed"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
