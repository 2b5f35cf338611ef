#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# SECONDS (default 60). New inputs go to a scratch folder; the committed seed
# corpus under tests/fuzz/corpus/ is only read. Exit 0 when no crash.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=build-fuzz
mkdir -p "$out"
CFLAGS="-std=c11 -O1 -g -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
CFLAGS="$CFLAGS $(pkg-config --cflags jansson 2>/dev/null || true)"
common="common/safetensors.c common/error.c common/dtype.c common/fsutil.c proto/message.c"
status=0
for target in safetensors proto; do
    bin="$out/fuzz_$target"
    clang $CFLAGS "tests/fuzz/fuzz_$target.c" $common -ljansson -lmsgpackc -lzmq -o "$bin"
    scratch=$(mktemp -d)
    echo "fuzz_$target: ${secs}s"
    if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
        -dict=tests/fuzz/$target.dict "$scratch" "tests/fuzz/corpus/$target" >"$out/fuzz_$target.log" 2>&1; then
        echo "fuzz_$target: FAILED (see $out/fuzz_$target.log)"
        tail -40 "$out/fuzz_$target.log"
        status=1
    else
        grep -E "^Done|#[0-9]+.*DONE" "$out/fuzz_$target.log" | tail -1 || true
    fi
    rm -rf "$scratch"
done
exit $status
