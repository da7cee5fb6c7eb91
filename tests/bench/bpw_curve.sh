#!/bin/sh
# KLD against size: uniform GGUF recipes vs --target-bpw plans (issue 21, docs/results.md).
# usage: tests/bench/bpw_curve.sh MODEL WORKDIR [CTX] [CHUNKS]
# env: TYPES (uniform recipes), TARGETS (plan bits per weight), REFINE (--target-refine rounds
# of each plan, e.g. "2 0" for with and without the refinement; default 2),
# INT_METHODS (e.g. "rtn gptq": integer-group folders, uniform 4/3-bit g128 against the
# --target-bpw plan at exactly their packed size; default none), PLAN_TOKENS (--target-tokens of
# the plans, default 1024), EXTRA (more quantize options for the plans, e.g. "--target-context 3"
# for the block weights in context, docs/results.md "2026-12-08 (planctx)"), CAL_EVAL=1 (each file's
# KLD also on the plans' probe windows, the first 4 x CTX tokens of the calibration text, and on
# its held-out second half: two more columns, docs/results.md "why the plans lose per byte").
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
if [ "${CAL_EVAL:-0}" = 1 ]; then
    [ -f "$W/teacher-cal.h5" ] || $B distill export "$W/base.gguf" -f "$T/tinystories-valid-sample.txt" \
        -o "$W/teacher-cal.h5" --ctx "$CTX" --chunks 4 --full >/dev/null
    [ -f "$W/ts-half.txt" ] || python3 -c 'import sys; s=open(sys.argv[1]).read(); open(sys.argv[2],"w").write(s[len(s)//2:])' \
        "$T/tinystories-valid-sample.txt" "$W/ts-half.txt"
    [ -f "$W/teacher-ts.h5" ] || $B distill export "$W/base.gguf" -f "$W/ts-half.txt" -o "$W/teacher-ts.h5" \
        --ctx "$CTX" --chunks "$CHUNKS" --full >/dev/null
fi
kld() { # file, teacher
    $B eval "$1" --base "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kld"])'
}
one() { # name, quantize args...
    n=$1; shift
    $B quantize "$W/base.gguf" -o "$W/$n.gguf" --imatrix "$W/imatrix.dat" --force --json "$@" > "$W/$n.q.json" 2> "$W/$n.err"
    k=$($B eval "$W/$n.gguf" --base "$W/teacher.h5" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kld"])') ||
    k=$($B eval "$W/$n.gguf" --base "$W/teacher.h5" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kld"])')
    # bits per weight as the target counts them: tensor bytes x 8 / parameters (the JSON's
    # "bpw" is issue 18's file-level figure, header and vocabulary included)
    [ "${CAL_EVAL:-0}" = 1 ] && k="$k cal $(kld "$W/$n.gguf" "$W/teacher-cal.h5") ts-half $(kld "$W/$n.gguf" "$W/teacher-ts.h5")"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], d["bytes_out"], "%.4f" % (8 * d["bytes_out"] / d["parameters"]), sys.argv[3])' "$W/$n.q.json" "$n" "$k"
}
for t in ${TYPES:-q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k iq1_s iq1_m iq2_xxs iq2_xs iq2_s iq2_m iq3_xxs iq3_xs iq3_s iq3_m iq4_xs iq4_nl}; do one "$t" --type "$t"; done
# the plans' KLD probes run on the calibration text too (PLAN_TOKENS of it in windows of 256,
# the refinement's validation on as many after them), never on wiki
for b in ${TARGETS:-2.5 3.5 4.5}; do
    for r in ${REFINE:-2}; do
        one "mix$b-r$r" --target-bpw "$b" --target-calib "$T/tinystories-valid-sample.txt" --target-refine "$r" \
            --target-tokens "${PLAN_TOKENS:-1024}" ${EXTRA:-}
    done
done
# integer-group folders: KLD of the folder against the same teacher; the plan's --target-bpw
# is the uniform setting's packed bits per weight (4.25 / 3.2421875 for gutenberg-5M's GPTQ
# v1 layout), its KLD probes on the --calib windows (TinyStories)
intone() { # name, quantize args...
    n=$1; shift
    $B quantize "$M" -o "$W/$n" --calib "$T/tinystories-valid-sample.txt" --force --json "$@" > "$W/$n.q.json" 2>/dev/null
    k=$($B eval "$W/$n" --base "$W/teacher.h5" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kld"])')
    echo "$n $k"
    rm -rf "${W:?}/$n"
}
for meth in ${INT_METHODS:-}; do
    if [ "$meth" = gptq ]; then cs="--calib-samples 16 --calib-seqlen 128"; else cs="--calib-samples 8 --calib-seqlen 64"; fi
    for u in "4 4.25" "3 3.2421875"; do
        set -- $u
        intone "$meth-$1bit-g128" --method "$meth" --bits "$1" --group-size 128 $cs
        intone "$meth-plan$2" --method "$meth" --target-bpw "$2" $cs
    done
done
