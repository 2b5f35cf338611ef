#!/usr/bin/env bash
# CLI checks of the built binaries: exit codes, output shapes, error messages.
# Prints one line per check and ends with "cli: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
DATA=${SDXL_TESTDATA:-../shared/testdata}
pass=0
fail=0
check() { # name, then a command that must succeed
    local name=$1
    shift
    if out=$("$@" 2>&1); then
        pass=$((pass + 1))
        echo "  ok   $name"
    else
        fail=$((fail + 1))
        echo "  FAIL $name"
        echo "$out" | head -20 | sed 's/^/       /'
    fi
}
expect_rc() { # expected rc, command...
    local want=$1
    shift
    "$@" >/tmp/sdxl-cli-out.$$ 2>&1
    local rc=$?
    [ "$rc" = "$want" ] || { echo "exit $rc, expected $want:"; cat /tmp/sdxl-cli-out.$$; return 1; }
}
out_has() { # needle, command...
    local needle=$1
    shift
    local o
    o=$("$@" 2>&1)
    grep -qF -- "$needle" <<<"$o" || { echo "output lacks '$needle':"; echo "$o"; return 1; }
}

# Sum of parameter counts over a safetensors header, read independently of
# our reader (Python's standard library only).
param_sum() {
    python3 - "$1" <<'PY'
import json, struct, sys
with open(sys.argv[1], 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    h = json.loads(f.read(n))
total = 0
for k, v in h.items():
    if k == '__metadata__':
        continue
    p = 1
    for d in v['shape']:
        p *= d
    total += p
print(total)
PY
}

inspect_params_match() {
    local json comp want got
    json=$($BIN/sdxl inspect "$DATA/sdxl-tiny" --json) || return 1
    for comp in unet vae text_encoder text_encoder_2; do
        case $comp in unet|vae) f=diffusion_pytorch_model.safetensors ;; *) f=model.safetensors ;; esac
        want=$(param_sum "$DATA/sdxl-tiny/$comp/$f")
        got=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print([c for c in d["components"] if c["name"]==sys.argv[1]][0]["parameters"])' "$comp" <<<"$json")
        [ "$want" = "$got" ] || { echo "$comp: inspect says $got parameters, header sums to $want"; return 1; }
    done
}

tokenize_shape() {
    local o
    o=$($BIN/sdxl tokenize --model "$DATA/sdxl-tiny" "a photo of a cat" "second prompt") || return 1
    python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 2, lines
for l in lines:
    ids = json.loads(l)
    assert len(ids) == 77 and ids[0] == 49406, ids
' <<<"$o"
}

check "sdxl --help exits 0" expect_rc 0 $BIN/sdxl --help
check "sdxl unknown command exits 2" expect_rc 2 $BIN/sdxl frobnicate
check "sdxl-coordinator --help exits 0" expect_rc 0 $BIN/sdxl-coordinator --help
check "sdxl-worker --help exits 0" expect_rc 0 $BIN/sdxl-worker --help
check "inspect lists the unet" out_has "UNet2DConditionModel" $BIN/sdxl inspect "$DATA/sdxl-tiny"
check "inspect shows memory per stage" out_has "memory estimate per stage" $BIN/sdxl inspect "$DATA/sdxl-tiny"
check "inspect parameter counts equal the header sums" inspect_params_match
check "inspect --variant fp16 reads F16" out_has '"F16"' $BIN/sdxl inspect "$DATA/sdxl-tiny" --variant fp16 --json
check "inspect marks the refiner's null text_encoder" out_has "null in model_index.json" $BIN/sdxl inspect "$DATA/sdxl-tiny-refiner"
check "inspect of a missing folder exits 1 naming it" out_has "/no/such/model" $BIN/sdxl inspect /no/such/model
check "inspect of a missing folder exits 1" expect_rc 1 $BIN/sdxl inspect /no/such/model
check "inspect without DIR is a usage error" expect_rc 2 $BIN/sdxl inspect
check "tokenize prints 77 ids per prompt" tokenize_shape
check "tokenize --which 2 maps '!' to 0" out_has "[49406,0,49407,0" $BIN/sdxl tokenize --model "$DATA/sdxl-tiny" --which 2 "!"
check "tokenize rejects invalid UTF-8" out_has "UTF-8" $BIN/sdxl tokenize --model "$DATA/sdxl-tiny" $'bad\xff'
check "tokenize on the refiner's missing tokenizer names it" out_has "'tokenizer'" $BIN/sdxl tokenize --model "$DATA/sdxl-tiny-refiner" "x"
check "tokenize --which 3 is a usage error" expect_rc 2 $BIN/sdxl tokenize --model "$DATA/sdxl-tiny" --which 3 x

rm -f /tmp/sdxl-cli-out.$$
echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
