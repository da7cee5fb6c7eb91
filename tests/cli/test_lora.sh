#!/bin/sh
# LoRA adapters on the command line: lmpress merge (HF, GGUF, quantized GGUF bases),
# --lora on quantize (q4_k_m, GPTQ 4-bit), prune, distill export, ppl and run (unmerged),
# convert ADAPTER -o adapter.gguf, and the refusals (rank, shapes, modules the base lacks,
# another architecture, alpha 0, DoRA, a GPTQ base) with nothing written.
# The adapter is golden/lora-gutenberg5m, trained on the first 14 lines of
# tinystories-valid-sample.txt (tests/reference/train_lora.py); perplexities are measured
# on the held-out lines 15-19 (windows protocol, ctx 256).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
. tests/cli/lib.sh
B=$LMP_BIN
G=$LMP_FIXTURES/models/gutenberg-5M
TXT=$LMP_FIXTURES/text/tinystories-valid-sample.txt
A=golden/lora-gutenberg5m
if [ ! -d "$G" ] || [ ! -f "$TXT" ]; then
    skip "fixtures gutenberg-5M / tinystories text not found at $LMP_FIXTURES"
    finish; exit $?
fi
mkdir -p "$T/tmp"; export TMPDIR="$T/tmp"   # where --lora's temporary merges go
tail -n +15 "$TXT" > "$T/held.txt"
head -n 14 "$TXT" > "$T/train.txt"
ppl() { "$B" ppl "$@" -f "$T/held.txt" --protocol windows --json 2>/dev/null | sed -n 's/.*"ppl": *\([0-9.]*\).*/\1/p'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && a + 0 < b + 0) }'; }
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { if (a == "" || b == "") exit 1; r = a / b - 1; if (r < 0) r = -r; exit !(r <= t) }'; }

# --- merge, unmerged, perplexity on the fine-tune's held-out text
ok "merge to an HF folder" "$B" merge "$G" --lora "$A" -o "$T/m"
check "merge says what changed" "grep -q '42 changed by 1 adapter' '$T/out'"
ok "merge to GGUF" "$B" merge "$G" --lora "$A" -o "$T/m.gguf" --json
check "merge --json" "grep -q '\"merged\": 42' '$T/out'"
p_base=$(ppl "$G"); p_m=$(ppl "$T/m"); p_mg=$(ppl "$T/m.gguf"); p_u=$(ppl "$G" --lora "$A")
echo "held-out ppl: base $p_base, merged $p_m, merged GGUF $p_mg, unmerged $p_u"
check "perplexity falls after merging ($p_base -> $p_m)" "lt '$p_m' '$p_base'"
check "merged GGUF = merged HF ($p_mg, $p_m)" "close '$p_mg' '$p_m' 1e-5"
check "unmerged = merged ($p_u, $p_m)" "close '$p_u' '$p_m' 1e-5"
p_s0=$(ppl "$G" --lora "$A" --scale 0)
check "--scale 0 is the base ($p_s0, $p_base)" "[ '$p_s0' = '$p_base' ]"
ok "two adapters at --scale 0.5" "$B" merge "$G" --lora "$A" --scale 0.5 --lora "$A" --scale 0.5 -o "$T/h"
p_h=$(ppl "$T/h")
check "0.5 + 0.5 = 1 ($p_h, $p_m)" "close '$p_h' '$p_m' 1e-5"
refuses "--scale before --lora" "--lora" "$B" merge "$G" --scale 2 --lora "$A" -o "$T/x"
ok "run with an unmerged adapter" "$B" run "$G" --lora "$A" -p "Once upon a time" -n 16
"$B" run "$T/m" -p "Once upon a time" -n 16 > "$T/run-m.txt" 2>/dev/null
"$B" run "$G" --lora "$A" -p "Once upon a time" -n 16 > "$T/run-u.txt" 2>/dev/null
ok "run: unmerged text = merged text" cmp "$T/run-u.txt" "$T/run-m.txt"

# --- quantize after merging: q4_k_m and GPTQ 4-bit stay below the base
ok "quantize --lora q4_k_m" "$B" quantize "$G" --lora "$A" -o "$T/mq4.gguf" --type q4_k_m
ok "quantize base q4_k_m" "$B" quantize "$G" -o "$T/bq4.gguf" --type q4_k_m
p_mq4=$(ppl "$T/mq4.gguf"); p_bq4=$(ppl "$T/bq4.gguf")
echo "q4_k_m: base $p_bq4, merged $p_mq4"
check "q4_k_m merged ($p_mq4) < base q4_k_m ($p_bq4)" "lt '$p_mq4' '$p_bq4'"
check "q4_k_m merged ($p_mq4) < base f32 ($p_base)" "lt '$p_mq4' '$p_base'"
ok "convert the base to GGUF" "$B" convert "$G" -o "$T/b.gguf"
ok "quantize --lora from a GGUF base (q8_0)" "$B" quantize "$T/b.gguf" --lora "$A" -o "$T/mq8.gguf" --type q8_0
p_mq8=$(ppl "$T/mq8.gguf")
check "q8_0 of the GGUF base + adapter ($p_mq8) close to merged ($p_m)" "close '$p_mq8' '$p_m' 2e-3"
check "no temporary merge left" "[ -z \"\$(ls '$T/tmp')\" ]"
C="--calib $T/train.txt --calib-samples 8 --calib-seqlen 128"
ok "quantize --lora gptq 4-bit" "$B" quantize "$G" --lora "$A" -o "$T/mg4" --method gptq $C
ok "quantize base gptq 4-bit" "$B" quantize "$G" -o "$T/bg4" --method gptq $C
p_mg4=$(ppl "$T/mg4"); p_bg4=$(ppl "$T/bg4"); p_ug4=$(ppl "$T/bg4" --lora "$A")
echo "gptq 4-bit: base $p_bg4, merged $p_mg4, base gptq + unmerged adapter $p_ug4"
check "gptq merged ($p_mg4) < base gptq ($p_bg4)" "lt '$p_mg4' '$p_bg4'"
check "gptq merged ($p_mg4) < base f32 ($p_base)" "lt '$p_mg4' '$p_base'"
check "adapter unmerged on the GPTQ base ($p_ug4) < base gptq ($p_bg4)" "lt '$p_ug4' '$p_bg4'"

# --- quantized bases
ok "merge onto a q4_k_m GGUF base" "$B" merge "$T/bq4.gguf" --lora "$A" -o "$T/bq4m.gguf" --json
check "re-quantized tensors reported" "grep -q '\"requantized\": 42' '$T/out'"
"$B" inspect "$T/bq4.gguf" --json | tr '{' '\n' | sed -n 's/.*"dtype": "\([^"]*\)".*/\1/p' > "$T/t1"
"$B" inspect "$T/bq4m.gguf" --json | tr '{' '\n' | sed -n 's/.*"dtype": "\([^"]*\)".*/\1/p' > "$T/t2"
ok "the base's own types kept" cmp "$T/t1" "$T/t2"
p_bq4m=$(ppl "$T/bq4m.gguf")
check "q4_k_m base + merge ($p_bq4m) < q4_k_m base ($p_bq4)" "lt '$p_bq4m' '$p_bq4'"
refuses "merge onto a GPTQ base" "integer-group" "$B" merge "$T/bg4" --lora "$A" -o "$T/x"
check "nothing written (gptq base)" "[ ! -e '$T/x' ]"

# --- prune, distill export with --lora
ok "prune --lora magnitude 30%" "$B" prune "$G" --lora "$A" -o "$T/pr" --method magnitude --sparsity 0.3
ok "prune base magnitude 30%" "$B" prune "$G" -o "$T/pb" --method magnitude --sparsity 0.3
p_pr=$(ppl "$T/pr"); p_pb=$(ppl "$T/pb")
check "pruned merged ($p_pr) < pruned base ($p_pb)" "lt '$p_pr' '$p_pb'"
ok "distill export --lora" "$B" distill export "$G" --lora "$A" -f "$T/held.txt" -o "$T/t.h5" --ctx 128 --chunks 2

# --- adapter GGUF for llama.cpp
ok "convert adapter to GGUF" "$B" convert "$A" -o "$T/a.gguf" --base "$G"
"$B" inspect "$T/a.gguf" --json > "$T/ai.json" 2>/dev/null
check "adapter GGUF keys" "grep -q '\"general.type\": \"adapter\"' '$T/ai.json' && grep -q '\"adapter.type\": \"lora\"' '$T/ai.json'"
check "adapter GGUF tensors" "grep -q 'blk.0.attn_q.weight.lora_a' '$T/ai.json' && grep -q 'blk.5.ffn_down.weight.lora_b' '$T/ai.json'"
check "inspect names an adapter GGUF" "'$B' inspect '$T/a.gguf' --no-tensors | grep -q 'llama LoRA adapter'"
refuses "adapter without --base" "--base" "$B" convert "$A" -o "$T/y.gguf"
check "nothing written (no --base)" "[ ! -e '$T/y.gguf' ]"

# --- bad adapters: clear errors naming the file, nothing written
bad() { # name: a copy of the adapter in $T/bad-NAME
    rm -rf "$T/bad-$1"; mkdir -p "$T/bad-$1"; cp "$A/adapter_model.safetensors" "$A/adapter_config.json" "$T/bad-$1/"
}
bad rank; sed 's/"r": 8/"r": 16/' "$A/adapter_config.json" > "$T/bad-rank/adapter_config.json"
refuses "rank mismatch" "rank 16" "$B" merge "$G" --lora "$T/bad-rank" -o "$T/x"
check "nothing written (rank)" "[ ! -e '$T/x' ]"
bad alpha; sed 's/"lora_alpha": 16.0/"lora_alpha": 0/' "$A/adapter_config.json" > "$T/bad-alpha/adapter_config.json"
refuses "alpha 0" "lora_alpha is 0" "$B" merge "$G" --lora "$T/bad-alpha" -o "$T/x"
refuses "alpha 0 (ppl)" "adapter_config.json" "$B" ppl "$G" --lora "$T/bad-alpha" -f "$T/held.txt"
bad dora; sed 's/"use_dora": false/"use_dora": true/' "$A/adapter_config.json" > "$T/bad-dora/adapter_config.json"
refuses "DoRA refused" "DoRA" "$B" merge "$G" --lora "$T/bad-dora" -o "$T/x"
check "nothing written (alpha, DoRA)" "[ ! -e '$T/x' ]"
refuses "not an adapter" "adapter_config.json" "$B" merge "$G" --lora "$G" -o "$T/x"
# shapes: the same adapter on another model (synth tiny: hidden 64)
ok "synth tiny" "$B" synth --preset tiny -o "$T/tiny"
refuses "shapes of another model" "adapter_model.safetensors" "$B" merge "$T/tiny" --lora "$A" -o "$T/x"
check "shape error names both shapes" "grep -q 'trained for another model' '$T/err'"
refuses "shapes (unmerged)" "trained for another model" "$B" ppl "$T/tiny" --lora "$A" -f "$T/held.txt"
# modules the base lacks: gutenberg-5M's shapes with 4 layers instead of 6
sed 's/"num_hidden_layers": 6/"num_hidden_layers": 4/' "$G/config.json" > "$T/cfg4.json"
ok "synth 4-layer base" "$B" synth --config "$T/cfg4.json" -o "$T/l4"
refuses "module the base lacks" "model.layers.4" "$B" merge "$T/l4" --lora "$A" -o "$T/x"
check "names the base" "grep -q 'does not have' '$T/err'"
# an adapter for another architecture: GPT-2 module names (transformer.h.N.attn.c_attn)
bad arch
$PY - "$A/adapter_model.safetensors" "$T/bad-arch/adapter_model.safetensors" <<'PYEOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
rn = {'model.layers.': 'transformer.h.', 'self_attn.q_proj': 'attn.c_attn', 'self_attn.k_proj': 'attn.k_attn',
      'self_attn.v_proj': 'attn.v_attn', 'self_attn.o_proj': 'attn.c_proj', 'mlp.gate_proj': 'mlp.c_gate',
      'mlp.up_proj': 'mlp.c_fc', 'mlp.down_proj': 'mlp.c_down'}
out = {}
for k, v in h.items():
    for a, c in rn.items():
        k = k.replace(a, c)
    out[k] = v
hj = json.dumps(out).encode()
hj += b' ' * ((8 - len(hj) % 8) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hj)) + hj + b[8 + n:])
c = json.load(open(sys.argv[1].replace('adapter_model.safetensors', 'adapter_config.json')))
c['rank_pattern'], c['alpha_pattern'] = {'attn.c_proj': 4}, {'c_down': 8}
c['target_modules'] = ['c_attn', 'k_attn', 'v_attn', 'c_proj', 'c_gate', 'c_fc', 'c_down']
json.dump(c, open(sys.argv[2].replace('adapter_model.safetensors', 'adapter_config.json'), 'w'))
PYEOF
refuses "adapter for another architecture" "another model" "$B" merge "$G" --lora "$T/bad-arch" -o "$T/x"
check "names the module" "grep -q 'transformer.h.0' '$T/err'"
refuses "another architecture (GGUF adapter)" "transformer.h" "$B" convert "$T/bad-arch" -o "$T/x.gguf" --base "$G"
check "nothing written (shapes, modules, architecture)" "[ ! -e '$T/x' ] && [ ! -e '$T/x.gguf' ]"
refuses "quantize --lora with a bad adapter" "rank 16" "$B" quantize "$G" --lora "$T/bad-rank" -o "$T/x.gguf" --type q8_0
check "nothing written (quantize)" "[ ! -e '$T/x.gguf' ]"
ok "merge --help" "$B" merge --help
check "no temporary merge left after prune, distill export and failures" "[ -z \"\$(ls '$T/tmp')\" ]"
finish
