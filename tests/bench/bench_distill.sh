#!/bin/sh
# Distillation-logit export: throughput (tokens/s, model time included) and file size per
# token for top-k 32/64/128 (f16 log-probs) and --full, on a generated smollm2-135m-shaped
# model (vocab 49,152), next to llama.cpp's KLD base file (every log-prob as 16 bits:
# 2 x vocab bytes per token). Then the KLD evaluation speed on the k=64 file.
# Usage: sh tests/bench/bench_distill.sh [WORKDIR]   (~2 GB of free disk)
set -eu
L=${LMP_BIN:-build/lmpress}
W=${1:-${TMPDIR:-/tmp}/lmpress-bench-distill}
CTX=${CTX:-128}
SEQS=${SEQS:-4}
mkdir -p "$W"
[ -d "$W/smollm2" ] || "$L" synth --preset smollm2-135m --dtype bf16 --seed 1 -o "$W/smollm2" > /dev/null
M="$W/smollm2"
TXT="$W/text.txt"
[ -f "$TXT" ] || for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do cat "$M/corpus.txt"; done > "$TXT"
V=$(grep -o '"vocab_size":[[:space:]]*[0-9]*' "$M/config.json" | grep -o '[0-9]*$')
echo "machine: $(nproc) cores; model: smollm2-135m shapes (bf16, vocab $V); $SEQS sequences x $CTX tokens"
printf '%-12s %12s %14s %16s\n' export tokens/s bytes/token "llama.cpp B/tok"
for k in 32 64 128 full; do
    if [ "$k" = full ]; then opt="--top-k 0 --full"; else opt="--top-k $k"; fi
    out="$W/logits-$k.h5"
    # shellcheck disable=SC2086
    "$L" distill export "$M" -f "$TXT" -o "$out" --ctx "$CTX" --chunks "$SEQS" $opt --force --json > "$W/r.json"
    tps=$(sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$W/r.json")
    bpt=$(sed -n 's/.*"bytes_per_token": \([0-9.]*\).*/\1/p' "$W/r.json")
    printf '%-12s %12s %14s %16d\n' "$k" "$tps" "$bpt" $((2 * V))
done
"$L" eval "$M" --base "$W/logits-64.h5" --json > "$W/e.json"
echo "eval (self, top-64): $(sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$W/e.json") tokens/s, KLD $(sed -n 's/.*"kld": \([-0-9.eE+]*\).*/\1/p' "$W/e.json")"
echo "ppl of the same model for the model-time reference:"
"$L" ppl "$M" -f "$TXT" --ctx "$CTX" --chunks "$SEQS" | tail -n 1
