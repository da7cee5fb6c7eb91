#!/bin/sh
# make demo [MODEL=path]: the main job end to end -- synth -> convert -> quantize (GGUF
# mixes, RTN, GPTQ, AWQ) -> prune (Wanda 50%, 2:4) -> teacher logits -> one small task ->
# compare report with task columns and plots. Without
# MODEL, lmpress generates its own default model (synth --preset tiny). Outputs go to
# demo-out/. Evaluation (and calibration) text: TEXT=FILE (make demo MODEL=DIR TEXT=FILE),
# else WikiText-2 from ../shared/fixtures when present, else the model's corpus.txt (only
# generated models have one).
set -eu
BUILD=${BUILD:-build}
L="$BUILD/lmpress"
OUT=demo-out
MODEL=${1:-}
USER_TEXT=${2:-${TEXT:-}}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }
if [ -z "$MODEL" ]; then
    step "lmpress synth --preset tiny -o $OUT/model"
    "$L" synth --preset tiny -o "$OUT/model" --seed 1 --force
    MODEL="$OUT/model"
fi
TEXT="$OUT/eval.txt"
FIX=${LMP_FIXTURES:-../shared/fixtures}
if [ -n "$USER_TEXT" ]; then
    [ -f "$USER_TEXT" ] || { echo "demo: TEXT=$USER_TEXT: no such file" >&2; exit 1; }
    head -c 60000 "$USER_TEXT" > "$TEXT"
elif [ -f "$FIX/text/wiki.test.raw" ]; then head -c 60000 "$FIX/text/wiki.test.raw" > "$TEXT"
elif [ -f "$MODEL/corpus.txt" ]; then for i in 1 2 3 4 5 6; do cat "$MODEL/corpus.txt"; done > "$TEXT"
else echo "demo: no evaluation text: give one with make demo MODEL=$MODEL TEXT=some.txt (plain text, 60 KB used;" \
    "e.g. WikiText-2's wiki.test.raw)" >&2; exit 1; fi

step "lmpress inspect $MODEL"
"$L" inspect "$MODEL" --no-tensors
step "lmpress convert $MODEL -o $OUT/model-f16.gguf --dtype f16"
"$L" convert "$MODEL" -o "$OUT/model-f16.gguf" --dtype f16 --force
"$L" inspect "$OUT/model-f16.gguf" --no-tensors | head -n 8
for t in q8_0 q4_k_m q4_0; do
    step "lmpress quantize $MODEL -o $OUT/model-$t.gguf --type $t"
    "$L" quantize "$MODEL" -o "$OUT/model-$t.gguf" --type "$t" --force 2>&1 | tail -n 3
done
CAL="--calib $TEXT --calib-samples 8 --calib-seqlen 128"
for m in rtn gptq awq; do
    step "lmpress quantize $MODEL -o $OUT/model-$m-4bit --method $m --bits 4 --group-size 128 (calibrated)"
    fmt=gptq; [ $m = awq ] && fmt=awq
    "$L" quantize "$MODEL" -o "$OUT/model-$m-4bit" --method $m --bits 4 --group-size 128 --format $fmt $CAL --force 2>&1 | tail -n 2
done
step "lmpress prune $MODEL --method wanda --sparsity 0.5 / --pattern 2:4 (compressed-tensors bitmask)"
"$L" prune "$MODEL" -o "$OUT/model-wanda50" --method wanda --sparsity 0.5 --format compressed-tensors $CAL --force 2>&1 | tail -n 1
"$L" prune "$MODEL" -o "$OUT/model-wanda-2of4" --method wanda --pattern 2:4 --format compressed-tensors $CAL --force 2>&1 | tail -n 1
step "lmpress distill export $MODEL (teacher top-64 log-probs, 16 x 128 tokens)"
VOCAB=$("$L" inspect "$MODEL" --json --no-tensors | sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p')
FULL=""; [ "${VOCAB:-999999}" -le 32000 ] && FULL=--full  # exact KLD for small vocabularies
"$L" distill export "$MODEL" -f "$TEXT" -o "$OUT/teacher.h5" --ctx 128 --chunks 16 --top-k 64 $FULL --force
# one small task (ARC-Easy from the fixtures, else a few built-in items)
if [ -f "$FIX/tasks/arc_easy.jsonl" ]; then TASK="arc_easy=$FIX/tasks/arc_easy.jsonl"
else
    printf '%s\n' '{"query": "Question: What do cows drink?", "choices": ["water", "stones", "music"], "gold": 0}' \
        '{"query": "Question: Which is hot?", "choices": ["ice", "the sun", "snow"], "gold": 1}' \
        '{"query": "Question: What flies?", "choices": ["a bird", "a rock"], "gold": 0}' > "$OUT/mini-task.jsonl"
    TASK="mini=$OUT/mini-task.jsonl"
fi
step "lmpress tasks $MODEL --task $TASK --limit 40 (accuracy by log-likelihood, lm-eval protocol)"
"$L" tasks "$MODEL" --task "$TASK" --limit 40
step "lmpress compare: perplexity, KLD against the original, size, bits per weight, task accuracy"
"$L" compare "$MODEL" "$OUT/model-f16.gguf" "$OUT/model-q8_0.gguf" "$OUT/model-q4_k_m.gguf" "$OUT/model-q4_0.gguf" \
    "$OUT/model-rtn-4bit" "$OUT/model-gptq-4bit" "$OUT/model-awq-4bit" "$OUT/model-wanda50" "$OUT/model-wanda-2of4" \
    -f "$TEXT" -o "$OUT/report" --protocol llamacpp --ctx 128 --chunks 8 --task "$TASK" --task-limit 20 --force
cat "$OUT/report/report.md"
step "lmpress eval $OUT/model-q4_0.gguf --base $OUT/teacher.h5"
"$L" eval "$OUT/model-q4_0.gguf" --base "$OUT/teacher.h5" | head -n 12
step "lmpress run $OUT/model-q4_k_m.gguf -p 'The river' -n 24"
"$L" run "$OUT/model-q4_k_m.gguf" -p "The river" -n 24
step "done: outputs in $OUT/; the report is $OUT/report/report.md (plots: $OUT/report/*.svg)"
