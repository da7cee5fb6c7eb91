#!/bin/sh
# Prompt processing (pp512) and generation (tg128) tokens/s with 2 threads for generated
# models shaped like SmolLM2-135M, Qwen2.5-0.5B and TinyLlama-1.1B in f32, f16, bf16, q8_0
# and q4_0, each GGUF run by lmpress (build/bench/bench_engine) and, when LLAMA_BIN points
# at a local llama.cpp build (its bin/ folder, never committed), by llama-bench on the
# same file in the same run: ROUNDS (3) alternating rounds of one repetition each, each
# tool's best round reported. Beside each round, build/bench/bench_placement measures where
# the two threads sit (cache-line handoff in ns: ~30-50 on one CCD of the benchmark VM,
# ~160-210 on two; the last column gives the range over the rounds).
# Usage: LLAMA_BIN=/path/to/llama.cpp/build/bin sh tests/bench/bench_engine.sh [WORKDIR]
# MODELS (synth preset names), TYPES, ROUNDS, THREADS and SYNTH_ARGS (extra `lmpress synth`
# options for the models not yet in WORKDIR, e.g. "--dtype f16 --layers 8") are taken
# from the environment; files already in WORKDIR ($m and $m-$t.gguf) are used as they are.
set -eu
L=${LMP_BIN:-build/lmpress}
BE=${BENCH_ENGINE:-$(dirname "$L")/bench/bench_engine}
BP=${BENCH_PLACEMENT:-$(dirname "$BE")/bench_placement}
W=${1:-${TMPDIR:-/tmp}/lmpress-bench-engine}
T=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
MODELS=${MODELS:-"smollm2-135m qwen2.5-0.5b tinyllama-1.1b"}
TYPES=${TYPES:-"f32 f16 bf16 q8_0 q4_0"}
SYNTH_ARGS=${SYNTH_ARGS:-}
mkdir -p "$W"
printf '%-16s %-5s %12s %12s %12s %12s %8s %8s %10s\n' model type "lmp pp512" "llama pp512" "lmp tg128" "llama tg128" "pp ratio" "tg ratio" "handoff ns"
for m in $MODELS; do
    [ -d "$W/$m" ] || "$L" synth --preset "$m" $SYNTH_ARGS -o "$W/$m" > /dev/null
    for t in $TYPES; do
        g="$W/$m-$t.gguf"
        if [ ! -f "$g" ]; then
            case $t in
                f32|f16|bf16) "$L" convert "$W/$m" -o "$g" --dtype "$t" > /dev/null ;;
                *) "$L" quantize "$W/$m" -o "$g" --type "$t" > /dev/null 2>&1 ;;
            esac
        fi
        # ROUNDS alternating rounds (lmpress, then llama-bench, one repetition each after
        # its own warm-up run), so both tools sample the same stretches of time on a
        # machine whose memory bandwidth drifts; each tool's figure is its best round
        lpp=0; ltg=0; cpp=-; ctg=-; hmin=-; hmax=-
        r=0
        while [ "$r" -lt "$ROUNDS" ]; do
            r=$((r + 1))
            if [ -x "$BP" ]; then
                h=$("$BP" -q | awk '{print $1}')
                hmin=$(awk -v a="$hmin" -v b="$h" 'BEGIN { print (a == "-" || b + 0 < a + 0) ? b : a }')
                hmax=$(awk -v a="$hmax" -v b="$h" 'BEGIN { print (a == "-" || b + 0 > a + 0) ? b : a }')
            fi
            set -- $("$BE" "$g" -t "$T" -r 1 | awk '{print $4, $9}')
            lpp=$(awk -v a="$lpp" -v b="$1" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
            ltg=$(awk -v a="$ltg" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
            if [ -n "${LLAMA_BIN:-}" ] && [ -x "$LLAMA_BIN/llama-bench" ]; then
                out=$("$LLAMA_BIN/llama-bench" -m "$g" -t "$T" -p 512 -n 128 -r 1 -o csv 2>/dev/null || true)
                set -- $(echo "$out" | python3 -c 'import csv,sys
r=list(csv.DictReader(sys.stdin))
pp=[x for x in r if x["n_prompt"]=="512" and x["n_gen"]=="0"]; tg=[x for x in r if x["n_gen"]=="128" and x["n_prompt"]=="0"]
print(pp[0]["avg_ts"] if pp else "-", tg[0]["avg_ts"] if tg else "-")')
                cpp=$(awk -v a="$cpp" -v b="$1" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
                ctg=$(awk -v a="$ctg" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
            fi
        done
        awk -v m="$m" -v t="$t" -v a="$lpp" -v b="$cpp" -v c="$ltg" -v d="$ctg" -v h="$hmin-$hmax" 'BEGIN {
            r1 = (b + 0 > 0) ? sprintf("%.2f", a / b) : "-"; r2 = (d + 0 > 0) ? sprintf("%.2f", c / d) : "-";
            printf "%-16s %-5s %12.1f %12s %12.1f %12s %8s %8s %10s\n", m, t, a, b, c, d, r1, r2, h }'
    done
done
