#!/bin/sh
# The lmpress command: --help everywhere, synth determinism, inspect (text and JSON),
# convert HF -> GGUF -> HF through the CLI, and option errors.
. tests/cli/lib.sh
ok "top-level --help" "$LMP_BIN" --help
for c in $("$LMP_BIN" --help | awk '/^commands:/{f=1;next} f&&!NF{exit} f{print $1}'); do
    ok "$c --help" "$LMP_BIN" "$c" --help
    check "$c --help prints usage" "grep -q 'usage: lmpress $c' '$T/out'"
done
refuses "unknown command" "unknown command" "$LMP_BIN" frobnicate
refuses "unknown option" "unknown option" "$LMP_BIN" inspect --frob x
refuses "bad number" "not an integer" "$LMP_BIN" synth --preset tiny -o "$T/x" --seed 12abc

ok "synth tiny" "$LMP_BIN" synth --preset tiny -o "$T/m1" --seed 7
ok "synth tiny again" "$LMP_BIN" synth --preset tiny -o "$T/m2" --seed 7
ok "synth other seed" "$LMP_BIN" synth --preset tiny -o "$T/m3" --seed 8
check "same seed, same bytes" "cmp -s '$T/m1/model.safetensors' '$T/m2/model.safetensors'"
check "other seed, other bytes" "! cmp -s '$T/m1/model.safetensors' '$T/m3/model.safetensors'"
OMP_NUM_THREADS=1 "$LMP_BIN" synth --preset tiny -o "$T/m4" --seed 7 >/dev/null 2>&1
check "thread count does not change bytes" "cmp -s '$T/m1/model.safetensors' '$T/m4/model.safetensors'"
refuses "synth refuses existing output" "exists" "$LMP_BIN" synth --preset tiny -o "$T/m1"
refuses "synth unknown preset" "unknown preset" "$LMP_BIN" synth --preset nope -o "$T/m9"
ok "synth --list" "$LMP_BIN" synth --list
check "list has tinyllama" "grep -q tinyllama-1.1b '$T/out'"

ok "inspect" "$LMP_BIN" inspect "$T/m1"
check "inspect shows hyper-parameters" "grep -q 'hidden 256, layers 2' '$T/out'"
check "inspect shows a tensor row" "grep -q 'model.layers.1.mlp.down_proj.weight' '$T/out'"
ok "inspect --json" "$LMP_BIN" inspect --json "$T/m1"
check "inspect JSON parses" "$PY -c 'import json,sys; d=json.load(open(\"$T/out\")); assert d[\"config\"][\"n_layers\"]==2 and d[\"n_tensors\"]==21' "

for dt in f32 f16 bf16; do
    ok "convert to gguf $dt" "$LMP_BIN" convert "$T/m1" -o "$T/m1-$dt.gguf" --dtype $dt
    ok "inspect gguf $dt" "$LMP_BIN" inspect "$T/m1-$dt.gguf"
    check "gguf $dt has blk.0.attn_q.weight in $dt" "grep -E 'blk.0.attn_q.weight +$dt' '$T/out' >/dev/null"
done
ok "convert gguf back to HF" "$LMP_BIN" convert "$T/m1-f32.gguf" -o "$T/back"
ok "convert to safetensors file" "$LMP_BIN" convert "$T/back" -o "$T/one.safetensors"
check "HF -> GGUF -> HF -> file is bit-exact" "$PY - '$T/m1/model.safetensors' '$T/one.safetensors' <<'PYEOF'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v['data_offsets'][0]: 8 + n + v['data_offsets'][1]] for k, v in h.items() if k != '__metadata__'}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), 'differs'
PYEOF"
ok "convert --json" "$LMP_BIN" convert "$T/m1" -o "$T/j.gguf" --json
check "convert JSON has gb_per_s" "grep -q gb_per_s '$T/out'"
refuses "convert refuses quantized dtype" "quantize" "$LMP_BIN" convert "$T/m1" -o "$T/q.gguf" --dtype q4_0
refuses "convert needs -o" "need IN" "$LMP_BIN" convert "$T/m1"
finish
