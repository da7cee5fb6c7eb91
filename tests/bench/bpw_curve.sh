#!/bin/sh
# KLD against size: uniform GGUF recipes vs --target-bpw plans (issue 21, docs/results.md).
# usage: tests/bench/bpw_curve.sh MODEL WORKDIR [CTX] [CHUNKS]
# Importance matrix and the plans' KLD probes from TinyStories (calibration), KLD on
# wiki.test.raw (held out), both
# from ../shared/fixtures/text. Prints one line per file: name bytes bpw kld.
set -eu
M=$1; W=$2; CTX=${3:-256}; CHUNKS=${4:-8}
B=${LMP_BIN:-build/lmpress}
T=${LMP_FIXTURES:-../shared/fixtures}/text
mkdir -p "$W"
[ -f "$W/base.gguf" ] || $B convert "$M" -o "$W/base.gguf" --dtype f32 >/dev/null
[ -f "$W/teacher.h5" ] || $B distill export "$W/base.gguf" -f "$T/wiki.test.raw" -o "$W/teacher.h5" \
    --ctx "$CTX" --chunks "$CHUNKS" ${FULL:---full} >/dev/null
[ -f "$W/imatrix.dat" ] || $B quantize "$W/base.gguf" -o "$W/imx-q8.gguf" --type q8_0 \
    --imatrix-calib "$T/tinystories-valid-sample.txt" --calib-samples ${IMX_SAMPLES:-16} --calib-seqlen "$CTX" \
    --imatrix-out "$W/imatrix.dat" --force >/dev/null 2>&1
one() { # name, quantize args...
    n=$1; shift
    $B quantize "$W/base.gguf" -o "$W/$n.gguf" --imatrix "$W/imatrix.dat" --force --json "$@" > "$W/$n.q.json" 2>/dev/null
    k=$($B eval "$W/$n.gguf" --base "$W/teacher.h5" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kld"])') ||
    k=$($B eval "$W/$n.gguf" --base "$W/teacher.h5" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kld"])')
    # bits per weight as the target counts them: tensor bytes x 8 / parameters (the JSON's
    # "bpw" is issue 18's file-level figure, header and vocabulary included)
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], d["bytes_out"], "%.4f" % (8 * d["bytes_out"] / d["parameters"]), sys.argv[3])' "$W/$n.q.json" "$n" "$k"
}
for t in ${TYPES:-q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k iq1_s iq1_m iq2_xxs iq2_xs iq2_s iq2_m iq3_xxs iq3_xs iq3_s iq3_m iq4_xs iq4_nl}; do one "$t" --type "$t"; done
# the plans' KLD probes run on the calibration text too (8 x 128 tokens of it), never on wiki
for b in ${TARGETS:-2.5 3.5 4.5}; do one "mix$b" --target-bpw "$b" --target-calib "$T/tinystories-valid-sample.txt"; done
