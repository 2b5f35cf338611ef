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

echo "[suite] CLI checks"
cli_log=$(mktemp "$RUN_TMP/cli-XXXXXX")
BIN=build/bin tests/cli/test_cli.sh | tee "$cli_log"
cli=$(grep '^cli:' "$cli_log" | tail -1)
rm -f "$cli_log"
if [ -n "$cli" ]; then
    passed=$((passed + $(sed -E 's/cli: ([0-9]+) passed.*/\1/' <<<"$cli")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$cli")))
else
    stage_fail "CLI checks printed no summary"
fi

echo "[suite] cluster tests (loopback, tiny model)"
cl_log=$(mktemp "$RUN_TMP/cluster-XXXXXX")
BIN=build/bin timeout 600 tests/cluster/test_cluster.sh | tee "$cl_log"
cl=$(grep '^cluster:' "$cl_log" | tail -1)
rm -f "$cl_log"
if [ -n "$cl" ]; then
    passed=$((passed + $(sed -E 's/cluster: ([0-9]+) passed.*/\1/' <<<"$cl")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$cl")))
else
    stage_fail "cluster tests printed no summary"
fi

echo "[suite] deploy checks (systemd units, the notification protocol)"
dp_log=$(mktemp "$RUN_TMP/deploy-XXXXXX")
BIN=build/bin timeout 300 tests/deploy/test_deploy.sh | tee "$dp_log"
dp=$(grep '^deploy:' "$dp_log" | tail -1)
rm -f "$dp_log"
if [ -n "$dp" ]; then
    passed=$((passed + $(sed -E 's/deploy: ([0-9]+) passed.*/\1/' <<<"$dp")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$dp")))
else
    stage_fail "deploy checks printed no summary"
fi

for t in k8s slurm; do
    echo "[suite] deploy: $t (tests/deploy/test_$t.sh)"
    t_log=$(mktemp "$RUN_TMP/$t-XXXXXX")
    BIN=build/bin timeout 600 "tests/deploy/test_$t.sh" | tee "$t_log"
    line=$(grep "^$t:" "$t_log" | tail -1)
    rm -f "$t_log"
    if [ -n "$line" ]; then
        passed=$((passed + $(sed -E "s/$t: ([0-9]+) passed.*/\\1/" <<<"$line")))
        failed=$((failed + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$line")))
    else
        stage_fail "tests/deploy/test_$t.sh printed no summary"
    fi
done

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
