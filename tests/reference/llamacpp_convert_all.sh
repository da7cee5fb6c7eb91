#!/bin/sh
# Regenerates golden/llamacpp/ (README there): every tiny golden model converted by
# llama.cpp's own convert_hf_to_gguf.py (through tests/reference/llamacpp_convert.py), stored
# by llamacpp_convert_pack.py, plus the two references of what the gemma2 / gemma3 files mean.
# From the repository root, after `make`. Needs llama.cpp's checkout ($LLAMACPP, default
# /work/llamacpp), /usr/bin/python3 with torch, numpy, h5py, sentencepiece and tqdm
# (Debian: python3-torch python3-numpy python3-h5py python3-sentencepiece python3-tqdm).
# 15-25 minutes on 2 loaded cores (each converter start imports torch).
set -eu
LMPRESS=${LMPRESS:-build/lmpress}
PYTHON=${PYTHON:-/usr/bin/python3}
export LLAMACPP=${LLAMACPP:-/work/llamacpp}
work=$(mktemp -d "${TMPDIR:-/tmp}/lmp-llamacpp.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
out=golden/llamacpp
mkdir -p "$out"

# NAME SEED [pack options]
one() {
    name=$1 seed=$2
    shift 2
    "$LMPRESS" synth --preset "$name" --seed "$seed" --dtype f32 -o "$work/$name" >/dev/null
    "$PYTHON" tests/reference/llamacpp_convert.py "$work/$name" --outfile "$work/$name.gguf" \
        --outtype f32 >"$work/$name.log" 2>&1 || { tail -5 "$work/$name.log" >&2; exit 1; }
    "$PYTHON" tests/reference/llamacpp_convert_pack.py "$work/$name.gguf" "$work/$name" "$out/$name" \
        --note "llama.cpp $(git -C "$LLAMACPP" rev-parse --short HEAD) convert_hf_to_gguf.py --outtype f32 via tests/reference/llamacpp_convert.py; lmpress synth --preset $name --seed $seed --dtype f32" "$@"
}

# what llama.cpp's file means where it cannot express the preset: the preset's config.json
# with PATCH, float64 reference (llama_ref.py, same token seed as golden/NAME.h5)
meaning() {
    name=$1 patch=$2 why=$3
    d=$work/$name-patched
    mkdir -p "$d"
    for f in "$work/$name"/*; do ln -sf "$f" "$d/"; done
    rm -f "$d/config.json"
    "$PYTHON" -c 'import json,sys; c=json.load(open(sys.argv[1])); c.update(json.loads(sys.argv[2])); json.dump(c, open(sys.argv[3], "w"), indent=1)' \
        "$work/$name/config.json" "$patch" "$d/config.json"
    "$PYTHON" tests/reference/llama_ref.py golden --model "$d" --out "$out/$name.h5" --name "$name" \
        --source synth --seed 21 --dtype f32 --token-seed 1021 --n-seqs 2 \
        --command "lmpress synth --preset $name --seed 21 --dtype f32 -o DIR; config.json $patch ($why)"
}

one tiny 11
one tiny-llama3 14
one tiny-qwen2 12
one tiny-mistral 13
for fam in phi3 gemma qwen3 smollm3 granite olmo2; do one tiny-$fam 21; done
one tiny-mixtral 21
one tiny-granitemoe 23
P2='{"query_pre_attn_scalar": 32}'
W2="the converter writes no query_pre_attn_scalar for gemma2; llama.cpp scales scores by 1/sqrt(key_length) (32) unless the model has 46 layers; the preset uses 24"
one tiny-gemma2 21 --golden llamacpp/tiny-gemma2.h5 --config-patch "$P2" --why "$W2"
meaning tiny-gemma2 "$P2" "$W2"
P3='{"layer_types": ["sliding_attention", "sliding_attention", "sliding_attention"]}'
W3="the converter writes no sliding-window pattern for gemma3; llama.cpp then uses a period of 6 (every 6th layer full), so all 3 layers slide; the preset's layer_types are [s, s, f]"
one tiny-gemma3 21 --golden llamacpp/tiny-gemma3.h5 --config-patch "$P3" --why "$W3"
meaning tiny-gemma3 "$P3" "$W3"
# tiny-qwen3-moe (seed 22) is not converted: the converter stops at its dense layer
# (mlp_only_layers [1]) with "Can not map tensor 'model.layers.1.mlp.down_proj.weight'".
echo "golden/llamacpp regenerated"
