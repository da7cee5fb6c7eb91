#!/bin/sh
# Builds the quantization results table of docs/results.md for one model: each variant's
# format/type, bits per weight, size, perplexity under two protocols and the change against
# the original. Usage:
#   sh scripts/results.sh MODEL WORKDIR [TYPES] [CALIB]
# TYPES: GGUF types (default "f16 q8_0 q6_k q5_k_m q4_k_m q4_0 q3_k_m q2_k") plus, when
# CALIB (calibration text) is given, gptq/rtn 4-bit g128 folders. Protocols: windows (ctx
# 256, first 20,000 bytes of wikitext2-test.gptq-join.txt, CR stripped) and llamacpp (ctx
# 256 on wiki.test.raw), both on the first PPL_CHUNKS windows (default 16). Size: the GGUF
# file, or a folder's top-level *.safetensors. METHODS (default "rtn gptq") and
# CALIB_SAMPLES x CALIB_SEQLEN (default 32 x 256) choose the calibrated folders; an output
# that already exists in WORKDIR is evaluated as it is (not rebuilt).
set -eu
L=${LMP_BIN:-build/lmpress}
FIX=${LMP_FIXTURES:-../shared/fixtures}
MODEL=$1; W=$2
TYPES=${3:-"f16 q8_0 q6_k q5_k_m q4_k_m q4_0 q3_k_m q2_k"}
CALIB=${4:-}
CH=${PPL_CHUNKS:-16}
METHODS=${METHODS:-"rtn gptq"}
CS=${CALIB_SAMPLES:-32}
CL=${CALIB_SEQLEN:-256}
mkdir -p "$W"
ppl() { # model, protocol args...
    m=$1; shift
    "$L" ppl "$m" "$@" --json 2>/dev/null | sed -n 's/.*"ppl": *\([0-9.eE+-]*\).*/\1/p'
}
row() { # label, path
    p1=$(ppl "$2" -f "$FIX/text/wikitext2-test.gptq-join.txt" --protocol windows --ctx 256 --max-bytes 20000 --strip-cr --chunks "$CH")
    p2=$(ppl "$2" -f "$FIX/text/wiki.test.raw" --protocol llamacpp --ctx 256 --chunks "$CH")
    if [ -d "$2" ]; then bytes=$(cat "$2"/*.safetensors | wc -c); else bytes=$(wc -c < "$2"); fi
    # bits per weight against the original's parameter count (packed tensors of quantized
    # folders would miscount parameters)
    if [ -z "${params:-}" ]; then
        params=$("$L" inspect "$2" --json --no-tensors | sed -n 's/.*"parameters": *\([0-9]*\).*/\1/p')
    fi
    bpw=$(awk -v b="$bytes" -v p="$params" 'BEGIN { printf "%.3f", 8 * b / p }')
    [ -z "${base1:-}" ] && { base1=$p1; base2=$p2; }
    awk -v l="$1" -v b="$bytes" -v w="$bpw" -v p1="$p1" -v p2="$p2" -v b1="$base1" -v b2="$base2" 'BEGIN {
        printf "| %s | %.2f | %.2f MiB | %.4f | %+.2f%% | %.4f | %+.2f%% |\n", l, w, b / 1048576, p1, 100 * (p1 / b1 - 1), p2, 100 * (p2 / b2 - 1) }'
}
echo "| variant | bits/weight | size | ppl windows-256 | change | ppl llamacpp-256 | change |"
echo "|---|---:|---:|---:|---:|---:|---:|"
row "original ($(basename "$MODEL"))" "$MODEL"
for t in $TYPES; do
    out="$W/$(basename "$MODEL")-$t.gguf"
    case $t in
        f16|bf16|f32) [ -f "$out" ] || "$L" convert "$MODEL" -o "$out" --dtype "$t" > /dev/null 2>&1 ;;
        *) [ -f "$out" ] || "$L" quantize "$MODEL" -o "$out" --type "$t" > /dev/null 2>&1 ;;
    esac
    row "GGUF $t" "$out"
done
if [ -n "$CALIB" ]; then
    for m in $METHODS; do
        out="$W/$(basename "$MODEL")-$m-4b-g128"
        [ -d "$out" ] || "$L" quantize "$MODEL" -o "$out" --method "$m" --bits 4 --group-size 128 \
            --calib "$CALIB" --calib-samples "$CS" --calib-seqlen "$CL" > /dev/null 2>&1
        row "$m 4-bit g128 (GPTQ format)" "$out" || true
    done
fi
