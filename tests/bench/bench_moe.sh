#!/bin/sh
# Mixture-of-experts decoding against llama-bench on the same GGUF (issue 16): real expert
# shapes cut in depth, `lmpress synth --preset qwen3-30b-a3b --layers 2` and `--preset
# mixtral-8x7b --layers 1` (f16, random weights), quantized by `lmpress quantize --type
# q4_0|q4_k_m`; each file run by lmpress (build/bench/bench_engine -p PP -n TG -r 1) and by
# llama-bench (-p PP -n TG -r 1 -fa off) in ROUNDS alternating rounds, each tool's best round
# reported with its ratio; `uptime` is printed before and after every file's rounds (the
# machine is shared: say its load next to any figure recorded).
# Usage: LLAMA_BIN=/path/to/llama.cpp/build/bin sh tests/bench/bench_moe.sh [WORKDIR]
# MODELS ("qwen3-30b-a3b:2 mixtral-8x7b:1": preset:layers), TYPES ("q4_0 q4_k_m"), ROUNDS
# (3), THREADS (2), PP (64), TG (32) from the environment; files already in WORKDIR
# ($name and $name-$type.gguf, name = preset-Ln) are used as they are.
set -eu
L=${LMP_BIN:-build/lmpress}
BE=${BENCH_ENGINE:-$(dirname "$L")/bench/bench_engine}
W=${1:-${TMPDIR:-/tmp}/lmpress-bench-moe}
T=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
PP=${PP:-64}
TG=${TG:-32}
MODELS=${MODELS:-"qwen3-30b-a3b:2 mixtral-8x7b:1"}
TYPES=${TYPES:-"q4_0 q4_k_m"}
mkdir -p "$W"
for ml in $MODELS; do
    m=${ml%%:*}
    n=${ml#*:}
    d="$W/$m-L$n"
    [ -d "$d" ] || "$L" synth --preset "$m" --layers "$n" --dtype f16 -o "$d" > /dev/null
    for t in $TYPES; do
        g="$d-$t.gguf"
        [ -f "$g" ] || "$L" quantize "$d" -o "$g" --type "$t" -t "$T" > /dev/null 2>&1
        echo "# $m-L$n $t: $(uptime)"
        lpp=0; ltg=0; cpp=-; ctg=-; r=0
        while [ "$r" -lt "$ROUNDS" ]; do
            r=$((r + 1))
            set -- $("$BE" "$g" -t "$T" -p "$PP" -n "$TG" -r 1 | awk '{print $4, $9}')
            echo "#   round $r lmpress pp$PP $1 tg$TG $2"
            lpp=$(awk -v a="$lpp" -v b="$1" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
            ltg=$(awk -v a="$ltg" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
            if [ -n "${LLAMA_BIN:-}" ] && [ -x "$LLAMA_BIN/llama-bench" ]; then
                out=$("$LLAMA_BIN/llama-bench" -m "$g" -t "$T" -p "$PP" -n "$TG" -r 1 -fa off -o csv 2>/dev/null || true)
                set -- $(echo "$out" | python3 -c 'import csv,sys
pp, tg = sys.argv[1], sys.argv[2]
r=list(csv.DictReader(sys.stdin))
a=[x for x in r if x["n_prompt"]==pp and x["n_gen"]=="0"]; b=[x for x in r if x["n_gen"]==tg and x["n_prompt"]=="0"]
print(a[0]["avg_ts"] if a else "-", b[0]["avg_ts"] if b else "-")' "$PP" "$TG")
                echo "#   round $r llama-bench pp$PP $1 tg$TG $2"
                cpp=$(awk -v a="$cpp" -v b="$1" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
                ctg=$(awk -v a="$ctg" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
            fi
        done
        echo "# after: $(uptime)"
        awk -v m="$m-L$n" -v t="$t" -v a="$lpp" -v b="$cpp" -v c="$ltg" -v d="$ctg" 'BEGIN {
            r1 = (b + 0 > 0) ? sprintf("%.2f", a / b) : "-"; r2 = (d + 0 > 0) ? sprintf("%.2f", c / d) : "-";
            printf "%-20s %-7s lmpress pp %8.1f  llama pp %8s  ratio %5s   lmpress tg %7.2f  llama tg %7s  ratio %5s\n",
                   m, t, a, b, r1, c, d, r2 }'
    done
done
