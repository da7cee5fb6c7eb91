#!/bin/sh
# Quantization time and peak RSS: RTN q4_k_m (and q4_0, q8_0) of a TinyLlama-1.1B-shaped
# f16 GGUF by `lmpress quantize`, next to llama.cpp's `llama-quantize` on the same file in
# the same run (LLAMA_BIN = a local llama.cpp build/bin, never committed); then GPTQ 4-bit
# g128 with 32 x 512 calibration tokens on the same model (HF folder).
# Usage: LLAMA_BIN=... sh tests/bench/bench_quantize.sh [WORKDIR]
set -eu
L=${LMP_BIN:-build/lmpress}
W=${1:-${TMPDIR:-/tmp}/lmpress-bench-quantize}
T=${THREADS:-2}
FIX=${LMP_FIXTURES:-../shared/fixtures}
mkdir -p "$W"
[ -d "$W/tl" ] || "$L" synth --preset tinyllama-1.1b --dtype f16 -o "$W/tl" > /dev/null
[ -f "$W/tl-f16.gguf" ] || "$L" convert "$W/tl" -o "$W/tl-f16.gguf" > /dev/null
measure() { # label, command...
    label=$1; shift
    /usr/bin/time -f "%e %M" -o "$W/time.txt" "$@" > /dev/null 2>&1 || { echo "$label: failed"; return; }
    awk -v l="$label" '{ printf "%-44s %8.2f s  peak RSS %8.1f MB\n", l, $1, $2 / 1024 }' "$W/time.txt"
}
for t in q4_k_m q4_0 q8_0; do
    rm -f "$W/out.gguf"
    measure "lmpress quantize $t" "$L" quantize "$W/tl-f16.gguf" -o "$W/out.gguf" --type "$t" -t "$T"
    if [ -n "${LLAMA_BIN:-}" ] && [ -x "$LLAMA_BIN/llama-quantize" ]; then
        rm -f "$W/out.gguf"
        measure "llama-quantize $t" "$LLAMA_BIN/llama-quantize" "$W/tl-f16.gguf" "$W/out.gguf" "$t" "$T"
    fi
done
rm -f "$W/out.gguf"
if [ -f "$FIX/text/wiki.test.raw" ]; then
    rm -rf "$W/gptq"
    measure "lmpress GPTQ 4-bit g128, 32 x 512 calib" "$L" quantize "$W/tl" -o "$W/gptq" --method gptq \
        --bits 4 --group-size 128 --calib "$FIX/text/wiki.test.raw" --calib-samples 32 --calib-seqlen 512 -t "$T"
    rm -rf "$W/gptq"
fi
