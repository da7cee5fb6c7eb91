#!/bin/sh
# Decoding (tg) and prompt processing (pp) tokens/s of given GGUF files, lmpress
# (build/bench/bench_engine) against llama-bench on the same file, THREADS (2) threads,
# ROUNDS (3) alternating rounds of one repetition each (lmpress, then llama-bench), each
# tool's best round reported with the ratio lmpress / llama.cpp (> 1: lmpress faster).
# Meant for the low-bit types (issue 21: IQ4_XS, IQ3_S, IQ2_XS files; docs/benchmarks.md
# gives the files and the commands that made them).
# Usage: LLAMA_BIN=/path/to/llama.cpp/build/bin [PP=512] [TG=128] sh tests/bench/bench_lowbit.sh FILE.gguf ...
set -eu
BE=${BENCH_ENGINE:-build/bench/bench_engine}
LB=${LLAMA_BIN:?LLAMA_BIN: the bin/ folder of a llama.cpp build}/llama-bench
T=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
PP=${PP:-512}
TG=${TG:-128}
[ -x "$BE" ] || { echo "bench_lowbit.sh: $BE missing (make build/bench/bench_engine)" >&2; exit 1; }
[ -x "$LB" ] || { echo "bench_lowbit.sh: $LB missing" >&2; exit 1; }
printf '%-28s %10s %10s %10s %10s %8s %8s\n' file "lmp pp$PP" "llama pp" "lmp tg$TG" "llama tg" "pp ratio" "tg ratio"
for g in "$@"; do
    [ -f "$g" ] || { echo "bench_lowbit.sh: $g: no such file" >&2; exit 1; }
    lpp=0; ltg=0; cpp=0; ctg=0
    r=0
    while [ "$r" -lt "$ROUNDS" ]; do
        r=$((r + 1))
        set -- $("$BE" "$g" -t "$T" -p "$PP" -n "$TG" -r 1 | awk '{print $4, $9}')
        lpp=$(awk -v a="$lpp" -v b="$1" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
        ltg=$(awk -v a="$ltg" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
        out=$("$LB" -m "$g" -t "$T" -p "$PP" -n "$TG" -r 1 -o csv 2>/dev/null || true)
        set -- $(echo "$out" | python3 -c 'import csv,sys
r=list(csv.DictReader(sys.stdin)); p=sys.argv[1]; n=sys.argv[2]
pp=[x for x in r if x["n_prompt"]==p and x["n_gen"]=="0"]; tg=[x for x in r if x["n_gen"]==n and x["n_prompt"]=="0"]
print(pp[0]["avg_ts"] if pp else 0, tg[0]["avg_ts"] if tg else 0)' "$PP" "$TG")
        cpp=$(awk -v a="$cpp" -v b="$1" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
        ctg=$(awk -v a="$ctg" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
        [ -n "${VERBOSE:-}" ] && echo "  round $r: lmpress pp $lpp tg $ltg, llama pp $cpp tg $ctg (best so far)" >&2
    done
    awk -v f="$(basename "$g")" -v a="$lpp" -v b="$cpp" -v c="$ltg" -v d="$ctg" 'BEGIN {
        r1 = (b + 0 > 0) ? sprintf("%.2f", a / b) : "-"; r2 = (d + 0 > 0) ? sprintf("%.2f", c / d) : "-";
        printf "%-28s %10.1f %10.1f %10.1f %10.1f %8s %8s\n", f, a, b, c, d, r1, r2 }'
done
