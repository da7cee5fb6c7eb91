#!/bin/sh
# GPTQ per-layer phase times (forward, statistics, solve, error report) on the TinyLlama-1.1B
# shape: a generated bf16 model cut to LAYERS (2) layers, layer 0 quantized as
# `lmpress quantize --method gptq` does it (4-bit, g128, act-order, true-sequential) with
# WINDOWS x SEQLEN (32 x 512) calibration tokens on THREADS (2) threads, and the per-layer
# time extrapolated to the 22 layers of the real model. Each phase is given as wall time
# and as CPU time / threads (on a loaded machine the second is closer to what idle cores
# would take). The output digest is the next block's inputs: the same for any THREADS.
# Usage: sh tests/bench/bench_gptq.sh [WORKDIR]
set -eu
L=${LMP_BIN:-build/lmpress}
BG=${BENCH_GPTQ:-$(dirname "$L")/bench/bench_gptq}
W=${1:-${TMPDIR:-/tmp}/lmpress-bench-gptq}
T=${THREADS:-2}
N=${WINDOWS:-32}
S=${SEQLEN:-512}
LAYERS=${LAYERS:-2}
mkdir -p "$W"
m="$W/tinyllama-1.1b-l$LAYERS"
[ -d "$m" ] || "$L" synth --preset tinyllama-1.1b --layers "$LAYERS" --dtype bf16 -o "$m" > /dev/null
"$BG" "$m" -n "$N" -l "$S" -t "$T" -x 22
