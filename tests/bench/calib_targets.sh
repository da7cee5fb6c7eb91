#!/bin/sh
# Issue 15's speed targets for the calibrated methods on the TinyLlama-1.1B shape: GPTQ 4-bit
# g128 (5 minutes), AWQ 4-bit g128 (5 minutes) and SparseGPT 50% (8 minutes) with 32 x 512
# calibration tokens on 2 threads, for the 22 layers of the real model. Runs each method on a
# generated bf16 model cut to LAYERS (2) layers and extrapolates conservatively: 22 / LAYERS
# times the whole command's wall time (the fixed prepare / embedding / write time, about a
# second, counted 11 times). With BASE=path/to/other/lmpress each method also runs on that
# binary right after, for a back-to-back comparison. Run it on an otherwise idle machine.
# Usage: sh tests/bench/calib_targets.sh CALIB_TEXT [WORKDIR]
set -eu
L=${LMP_BIN:-build/lmpress}
C=${1:?usage: calib_targets.sh CALIB_TEXT [WORKDIR]}
W=${2:-${TMPDIR:-/tmp}/lmpress-bench-calib}
T=${THREADS:-2}
LAYERS=${LAYERS:-2}
mkdir -p "$W"
m="$W/tinyllama-1.1b-l$LAYERS"
[ -d "$m" ] || "$L" synth --preset tinyllama-1.1b --layers "$LAYERS" --dtype bf16 -o "$m" > /dev/null
printf '%-10s %-24s %9s %12s %8s %s\n' method binary wall_s "22_layers_min" target met
for meth in gptq awq sparsegpt; do
    case $meth in
    gptq) args="quantize $m -o $W/out --method gptq --bits 4 --group-size 128"; target=5 ;;
    awq) args="quantize $m -o $W/out --method awq --group-size 128"; target=5 ;;
    sparsegpt) args="prune $m -o $W/out --method sparsegpt --sparsity 0.5"; target=8 ;;
    esac
    for bin in "$L" ${BASE:-}; do
        rm -rf "$W/out"
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086
        "$bin" $args --calib "$C" --calib-samples 32 --calib-seqlen 512 -t "$T" > /dev/null 2> "$W/out.err" || {
            echo "$meth: $bin failed (see $W/out.err)" >&2
            exit 1
        }
        s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        awk -v m="$meth" -v b="$bin" -v s="$s" -v l="$LAYERS" -v t="$target" \
            'BEGIN { x = s * 22 / l / 60; printf "%-10s %-24s %9.2f %12.2f %8d %s\n", m, b, s, x, t, x <= t ? "yes" : "no" }'
    done
done
rm -rf "$W/out"
