#!/usr/bin/env bash
# check_layers.sh LIBDIR NAME:DIR:DEP+DEP ... - the layering of DESIGN.md,
# enforced at build time (the Makefile runs it before linking any binary).
#
# Each argument names a layer, the folder that holds its sources ("DIR/"
# only the files directly in it, "DIR/*" the whole tree below) and the layers
# it may use. Two checks, each failing with the file or symbol at fault:
#   1. includes: a "x/y.h" include of a layer's source or header must name a
#      header of that layer or of one it may use; kernels/cpu/, kernels/cuda/
#      and kernels/backend_impl.h are private to the kernels layer;
#   2. calls: every symbol a layer's library leaves undefined that one of our
#      libraries defines must come from the layer itself or one it may use
#      (LIBDIR/libsdxl_NAME.a).
set -euo pipefail
cd "$(dirname "$0")/.."
libdir=$1
shift
declare -A dir deps
names=()
for spec in "$@"; do
    IFS=: read -r n d p <<<"$spec"
    names+=("$n")
    dir[$n]=$d
    deps[$n]=" $n ${p//+/ } "
done

# the layer a file path belongs to: the longest folder that holds it
owner() {
    local f=$1 best="" bestlen=0 n d
    for n in "${names[@]}"; do
        d=${dir[$n]}
        if [[ $d == *'*' ]]; then
            d=${d%\*}
            [[ $f == "$d"* ]] || continue
        else
            [[ $f == "$d"* && ${f#"$d"} != */* ]] || continue
        fi
        if [ ${#d} -gt $bestlen ]; then
            best=$n
            bestlen=${#d}
        fi
    done
    echo "$best"
}

bad=0
for n in "${names[@]}"; do
    d=${dir[$n]}
    if [[ $d == *'*' ]]; then
        mapfile -t files < <(find "${d%\*}" -name '*.[ch]' -o -name '*.cu' | sort)
    else
        mapfile -t files < <(find "$d" -maxdepth 1 \( -name '*.[ch]' -o -name '*.cu' \) | sort)
    fi
    for f in "${files[@]}"; do
        [ "$(owner "$f")" = "$n" ] || continue
        while IFS=: read -r line inc; do
            [[ $inc == */* ]] || continue # a header beside the file
            o=$(owner "$inc")
            [ -n "$o" ] || continue
            if [[ ${deps[$n]} != *" $o "* ]]; then
                echo "layering: $f:$line includes $inc (layer $o); layer $n may use only${deps[$n]}" >&2
                bad=1
            elif [ "$n" != kernels ] && [[ $inc == kernels/cpu/* || $inc == kernels/cuda/* || $inc == kernels/backend_impl.h ]]; then
                echo "layering: $f:$line includes $inc, private to the kernels layer (use kernels/ops.h, backend_info.h)" >&2
                bad=1
            fi
        done < <(grep -no '^#include "[^"]*"' "$f" | sed -E 's/^([0-9]+):#include "(.*)"$/\1:\2/')
    done
done

# symbols: which of our libraries defines each
declare -A def
for n in "${names[@]}"; do
    while read -r s; do
        def[$s]=$n
    done < <(nm -g --defined-only "$libdir/libsdxl_$n.a" 2>/dev/null | awk 'NF == 3 {print $3}')
done
for n in "${names[@]}"; do
    while read -r s; do
        o=${def[$s]:-}
        if [ -n "$o" ] && [[ ${deps[$n]} != *" $o "* ]]; then
            echo "layering: libsdxl_$n.a calls $s of layer $o; layer $n may use only${deps[$n]}" >&2
            bad=1
        fi
    done < <(nm -u "$libdir/libsdxl_$n.a" | awk 'NF == 2 {print $2}' | sort -u)
done
exit $bad
