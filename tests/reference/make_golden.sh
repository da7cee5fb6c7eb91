#!/bin/sh
# Regenerates golden/*.h5: builds each model with `lmpress synth` (fixed preset, seed and
# dtype), runs the independent float64 PyTorch reference (tests/reference/llama_ref.py) on
# fixed token-id sequences and writes logits and perplexities with the exact synth command
# and seed as attributes. The stories260K golden is computed from the fixture folder
# (LMP_FIXTURES, default ../shared/fixtures); it is skipped when the folder is absent.
#
#   make && sh tests/reference/make_golden.sh        (from the repository root)
#
# Environment: LMPRESS (default build/lmpress), PYTHON (default /usr/bin/python3: Debian's
# python3-torch, numpy, h5py), LMP_FIXTURES. Only `lmpress synth` is used from lmpress:
# the reference shares no code with the engine it checks.
set -eu
cd "$(dirname "$0")/../.."
LMPRESS=${LMPRESS:-build/lmpress}
PYTHON=${PYTHON:-/usr/bin/python3}
FIX=${LMP_FIXTURES:-../shared/fixtures}
REF=tests/reference/llama_ref.py
if [ ! -x "$LMPRESS" ]; then
    echo "make_golden.sh: $LMPRESS not found; run make first (or set LMPRESS)" >&2
    exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/lmp-golden.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p golden

# synth_golden OUT_NAME PRESET SEED DTYPE TOKEN_SEED [extra llama_ref options]
synth_golden() {
    out=$1 preset=$2 seed=$3 dtype=$4 tseed=$5
    shift 5
    dir=$work/$out
    cmd="lmpress synth --preset $preset --seed $seed --dtype $dtype -o DIR"
    "$LMPRESS" synth --preset "$preset" --seed "$seed" --dtype "$dtype" -o "$dir" >/dev/null
    "$PYTHON" "$REF" golden --model "$dir" --out "golden/$out.h5" --name "$preset" \
        --source synth --seed "$seed" --dtype "$dtype" --command "$cmd" \
        --token-seed "$tseed" "$@"
}

ONLY=${ONLY:-}
if [ -n "$ONLY" ]; then # ONLY="tiny-phi3 ..." regenerates just those synth goldens
    for p in $ONLY; do synth_golden "$p" "$p" 21 f32 1021 --n-seqs 2; done
    exit 0
fi

# f32 weights: one file per preset. 72 tokens per sequence: beyond tiny-llama3's
# original_max_position_embeddings (64).
synth_golden tiny tiny 11 f32 1011
synth_golden tiny-qwen2 tiny-qwen2 12 f32 1012
synth_golden tiny-mistral tiny-mistral 13 f32 1013
synth_golden tiny-llama3 tiny-llama3 14 f32 1014
# The same tiny model (seed 11) stored as f16 and bf16: the reference upcasts the stored,
# rounded weights, so the engine is held to f32 accuracy on them too; the test also holds
# them to tiny.h5 (the unrounded weights) within the f16/bf16 tolerance. Same token seed
# as tiny.h5, so the sequences are the first two of tiny.h5's.
synth_golden tiny-f16 tiny 11 f16 1011 --n-seqs 2
synth_golden tiny-bf16 tiny 11 bf16 1011 --n-seqs 2

# issue 16 families (vocab 512, 2 sequences, to keep the files small): 72 positions run
# past each sliding window (16 for gemma2/3, 48 for phi3) and past tiny-phi3's longrope
# original context (32; the ppl windows of 32 tokens use the short factors).
for fam in phi3 gemma gemma2 gemma3 qwen3 smollm3 granite olmo2; do
    synth_golden tiny-$fam tiny-$fam 21 f32 1021 --n-seqs 2
done
# Mixture of experts (tests/reference/moe_ref.py): the tiny presets tie the last expert's
# router row to expert 0's, so some tokens have a routing tie on the top-k boundary (the
# file's routing_boundary_ties attribute counts them).
moe_golden() {
    out=$1 preset=$2 seed=$3 tseed=$4
    dir=$work/$out
    cmd="lmpress synth --preset $preset --seed $seed --dtype f32 -o DIR"
    "$LMPRESS" synth --preset "$preset" --seed "$seed" --dtype f32 -o "$dir" >/dev/null
    "$PYTHON" tests/reference/moe_ref.py golden --model "$dir" --out "golden/$out.h5" --name "$preset" \
        --source synth --seed "$seed" --dtype f32 --command "$cmd" --token-seed "$tseed"
}
moe_golden tiny-mixtral tiny-mixtral 21 1021
moe_golden tiny-qwen3-moe tiny-qwen3-moe 22 1022
moe_golden tiny-granitemoe tiny-granitemoe 23 1023
# Per-expert calibration statistics (tests/unit/test_moe.c test_expert_hessian_ref): block
# 0's FFN-normed inputs, routing and routed down inputs for one 48-token window of the
# model test_moe.c synthesizes (seed 5).
"$LMPRESS" synth --preset tiny-mixtral --seed 5 -o "$work/experts" >/dev/null
"$PYTHON" tests/reference/moe_ref.py experts "$work/experts" golden/tiny-mixtral-experts.h5 \
    $("$PYTHON" -c "print(' '.join(str((37 * i + 11) % 900) for i in range(48)))")

# A real pretrained model from the fixtures (read there at test time, never copied).
if [ -f "$FIX/models/stories260K/model.safetensors" ]; then
    "$PYTHON" "$REF" golden --model "$FIX/models/stories260K" --out golden/stories260K.h5 \
        --name stories260K --source fixture --model-path models/stories260K --dtype f32 \
        --command "" --token-seed 2001 --seq-len 64 --positions 0,1,2,15,31,47,62,63
else
    echo "make_golden.sh: fixtures not found at $FIX: golden/stories260K.h5 left as it is" >&2
fi
ls -l golden/*.h5 >&2
