#!/bin/sh
# make demo [MODEL=path]: the main job end to end -- convert, compress, evaluate. Without
# MODEL, lmpress generates its own default model (synth --preset tiny). Outputs go to
# demo-out/. Evaluation text: WikiText-2 from ../shared/fixtures when present, else the
# generated model's corpus.txt.
set -eu
BUILD=${BUILD:-build}
L="$BUILD/lmpress"
OUT=demo-out
MODEL=${1:-}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }
if [ -z "$MODEL" ]; then
    step "lmpress synth --preset tiny -o $OUT/model"
    "$L" synth --preset tiny -o "$OUT/model" --seed 1 --force
    MODEL="$OUT/model"
fi
TEXT="$OUT/eval.txt"
FIX=${LMP_FIXTURES:-../shared/fixtures}
if [ -f "$FIX/text/wiki.test.raw" ]; then head -c 200000 "$FIX/text/wiki.test.raw" > "$TEXT"
elif [ -f "$MODEL/corpus.txt" ]; then for i in 1 2 3 4 5 6; do cat "$MODEL/corpus.txt"; done > "$TEXT"
else echo "demo: no evaluation text (no fixtures, no corpus.txt in $MODEL)" >&2; exit 1; fi

step "lmpress inspect $MODEL"
"$L" inspect "$MODEL" --no-tensors
step "lmpress convert $MODEL -o $OUT/model-f16.gguf --dtype f16"
"$L" convert "$MODEL" -o "$OUT/model-f16.gguf" --dtype f16 --force
"$L" inspect "$OUT/model-f16.gguf" --no-tensors | head -n 8
for t in q8_0 q4_k_m q4_0; do
    step "lmpress quantize $MODEL -o $OUT/model-$t.gguf --type $t"
    "$L" quantize "$MODEL" -o "$OUT/model-$t.gguf" --type "$t" --force 2>&1 | tail -n 3
done
step "perplexity (llama.cpp protocol, ctx 128, 8 chunks) of each variant"
printf '%-22s %10s %12s\n' variant size ppl
for v in "$MODEL" "$OUT/model-f16.gguf" "$OUT/model-q8_0.gguf" "$OUT/model-q4_k_m.gguf" "$OUT/model-q4_0.gguf"; do
    ppl=$("$L" ppl "$v" -f "$TEXT" --protocol llamacpp --ctx 128 --chunks 8 --json | sed -n 's/.*"ppl": *\([0-9.eE+-]*\).*/\1/p')
    size=$(du -sh "$v" | cut -f1)
    printf '%-22s %10s %12s\n' "$(basename "$v")" "$size" "$ppl"
done
step "lmpress run $OUT/model-q4_k_m.gguf -p 'The river' -n 24"
"$L" run "$OUT/model-q4_k_m.gguf" -p "The river" -n 24
step "done: outputs in $OUT/"
