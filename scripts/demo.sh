#!/bin/sh
# make demo [MODEL=path]: the main job end to end. Without MODEL, lmpress generates its
# own default model (synth --preset tiny). Outputs go to demo-out/.
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
step "lmpress inspect $MODEL"
"$L" inspect "$MODEL" --no-tensors
step "lmpress convert $MODEL -o $OUT/model-f16.gguf --dtype f16"
"$L" convert "$MODEL" -o "$OUT/model-f16.gguf" --dtype f16 --force
step "lmpress inspect $OUT/model-f16.gguf"
"$L" inspect "$OUT/model-f16.gguf" --no-tensors | head -n 12
if "$L" --help | grep -q '^  ppl '; then
    TEXT="$OUT/eval.txt"
    if [ -f ../shared/fixtures/text/wiki.test.raw ]; then head -c 60000 ../shared/fixtures/text/wiki.test.raw > "$TEXT";
    else cat "$OUT/model/corpus.txt" "$OUT/model/corpus.txt" > "$TEXT"; fi
    step "lmpress ppl (original and GGUF f16)"
    "$L" ppl "$MODEL" -f "$TEXT" --protocol llamacpp --ctx 128 --chunks 8 || true
    "$L" ppl "$OUT/model-f16.gguf" -f "$TEXT" --protocol llamacpp --ctx 128 --chunks 8 || true
fi
step "done: outputs in $OUT/"
ls -la "$OUT"
