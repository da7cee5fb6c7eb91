#!/bin/sh
# lmpress quantize: GGUF types and llama.cpp mixes on a synth model (types per tensor,
# file type, determinism across thread counts, HF and GGUF inputs agree), --tensor-type
# and --keep, the stories260K fallbacks (172-column ffn_down), and refused inputs
# (unknown type, NaN weights, existing output, quantized input without
# --allow-requantize, bad patterns).
. tests/cli/lib.sh
if ! "$LMP_BIN" quantize --help >/dev/null 2>&1; then
    skip "lmpress quantize is not registered in this build (tools/main.c)"
    finish; exit $?
fi
# type_of FILE TENSOR: the dtype column of `lmpress inspect`
type_of() { "$LMP_BIN" inspect "$1" 2>/dev/null | awk -v n="$2" '$1 == n {print $2; exit}'; }
kv_of() { "$LMP_BIN" inspect "$1" 2>/dev/null | awk -v k="$2" '$1 == k {print $2; exit}'; }

ok "synth tiny" "$LMP_BIN" synth --preset tiny -o "$T/m" --seed 3
for ty in q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_m q4_k_m q5_k_m q6_k f16 bf16; do
    ok "quantize tiny $ty" "$LMP_BIN" quantize "$T/m" -o "$T/m-$ty.gguf" --type $ty
done
# q4_k_m on 2 layers: use_more_bits gives layer 1 (>= 7n/8) q6_K attn_v/ffn_down
f="$T/m-q4_k_m.gguf"
check "q4_k_m blk.0.attn_v q4_k" "[ \"\$(type_of $f blk.0.attn_v.weight)\" = q4_k ]"
check "q4_k_m blk.1.attn_v q6_k" "[ \"\$(type_of $f blk.1.attn_v.weight)\" = q6_k ]"
check "q4_k_m blk.0.ffn_down q4_k" "[ \"\$(type_of $f blk.0.ffn_down.weight)\" = q4_k ]"
check "q4_k_m blk.1.ffn_down q6_k" "[ \"\$(type_of $f blk.1.ffn_down.weight)\" = q6_k ]"
check "q4_k_m output q6_k" "[ \"\$(type_of $f output.weight)\" = q6_k ]"
check "q4_k_m token_embd q4_k" "[ \"\$(type_of $f token_embd.weight)\" = q4_k ]"
check "q4_k_m norms f32" "[ \"\$(type_of $f blk.0.attn_norm.weight)\" = f32 ]"
check "q4_k_m file type 15" "[ \"\$(kv_of $f general.file_type)\" = 15 ]"
check "quantization version 2" "[ \"\$(kv_of $f general.quantization_version)\" = 2 ]"
f="$T/m-q3_k_m.gguf"
check "q3_k_m attn_v layer 0 q5_k" "[ \"\$(type_of $f blk.0.attn_v.weight)\" = q5_k ]"
check "q3_k_m attn_output q4_k" "[ \"\$(type_of $f blk.1.attn_output.weight)\" = q4_k ]"
check "q3_k_m ffn_up q3_k" "[ \"\$(type_of $f blk.1.ffn_up.weight)\" = q3_k ]"
check "q3_k_m file type 12" "[ \"\$(kv_of $f general.file_type)\" = 12 ]"
f="$T/m-q2_k.gguf"
check "q2_k ffn_down q3_k" "[ \"\$(type_of $f blk.0.ffn_down.weight)\" = q3_k ]"
check "q2_k attn_q q2_k" "[ \"\$(type_of $f blk.0.attn_q.weight)\" = q2_k ]"
check "q4_0 output q6_k" "[ \"\$(type_of $T/m-q4_0.gguf output.weight)\" = q6_k ]"
check "q4_0 attn_q q4_0" "[ \"\$(type_of $T/m-q4_0.gguf blk.0.attn_q.weight)\" = q4_0 ]"
check "q8_0 output q8_0" "[ \"\$(type_of $T/m-q8_0.gguf output.weight)\" = q8_0 ]"
check "q6_k attn_q q6_k" "[ \"\$(type_of $T/m-q6_k.gguf blk.0.attn_q.weight)\" = q6_k ]"
check "q5_k_m file type 17" "[ \"\$(kv_of $T/m-q5_k_m.gguf general.file_type)\" = 17 ]"
check "f16 matrices f16" "[ \"\$(type_of $T/m-f16.gguf blk.0.ffn_up.weight)\" = f16 ]"
check "bf16 file type 32" "[ \"\$(kv_of $T/m-bf16.gguf general.file_type)\" = 32 ]"
check "smaller than q8_0" "[ \$(wc -c < $T/m-q4_k_m.gguf) -lt \$(wc -c < $T/m-q8_0.gguf) ]"

# the same bytes with 1 and 2 threads, and from the HF folder or its f32 GGUF
OMP_NUM_THREADS=1 "$LMP_BIN" quantize "$T/m" -o "$T/t1.gguf" --type q4_k_m >/dev/null 2>&1
OMP_NUM_THREADS=2 "$LMP_BIN" quantize "$T/m" -o "$T/t2.gguf" --type q4_k_m >/dev/null 2>&1
check "1 and 2 threads give the same file" "cmp -s '$T/t1.gguf' '$T/t2.gguf'"
check "same as the first run" "cmp -s '$T/t1.gguf' '$T/m-q4_k_m.gguf'"
ok "convert to f32 gguf" "$LMP_BIN" convert "$T/m" -o "$T/m32.gguf"
ok "quantize the GGUF" "$LMP_BIN" quantize "$T/m32.gguf" -o "$T/g.gguf" --type q4_k_m
check "HF and GGUF inputs give the same file" "cmp -s '$T/g.gguf' '$T/m-q4_k_m.gguf'"
check "no temporary files left" "[ -z \"\$(ls $T | grep tmp)\" ]"

# overrides, keep, verbose and JSON
ok "tensor-type and keep" "$LMP_BIN" quantize "$T/m" -o "$T/o.gguf" --type q4_k_m --tensor-type 'attn_q=q8_0' \
    --tensor-type 'blk\.1\.ffn_up=f16' --keep 'ffn_gate' --verbose
check "override attn_q q8_0" "[ \"\$(type_of $T/o.gguf blk.0.attn_q.weight)\" = q8_0 ]"
check "override blk.1.ffn_up f16" "[ \"\$(type_of $T/o.gguf blk.1.ffn_up.weight)\" = f16 ]"
check "blk.0.ffn_up keeps the mix" "[ \"\$(type_of $T/o.gguf blk.0.ffn_up.weight)\" = q4_k ]"
check "keep ffn_gate f32" "[ \"\$(type_of $T/o.gguf blk.0.ffn_gate.weight)\" = f32 ]"
check "per-tensor lines on stderr" "grep -q 'blk.0.attn_q.weight.*f32 -> q8_0' '$T/err'"
check "verbose prints relative RMS" "grep -q 'rel RMS' '$T/err' && grep -q 'largest relative RMS' '$T/out'"
ok "json" "$LMP_BIN" quantize "$T/m" -o "$T/j.gguf" --type q5_k_s --json
check "json parses" "$PY -c 'import json; d=json.load(open(\"$T/out\")); assert d[\"file_type\"]==16 and 5 < d[\"bpw\"] < 7, d'"

# stories260K: FFN 172 fits no block type
S="$LMP_FIXTURES/models/stories260K"
if [ -d "$S" ]; then
    ok "stories260K q4_k_m" "$LMP_BIN" quantize "$S" -o "$T/s.gguf" --type q4_k_m
    check "says ffn_down falls back" "grep -q 'blk.0.ffn_down.weight: 172 columns do not fit' '$T/err'"
    check "ffn_down f16" "[ \"\$(type_of $T/s.gguf blk.0.ffn_down.weight)\" = f16 ]"
    check "64-column attn_q q5_0" "[ \"\$(type_of $T/s.gguf blk.0.attn_q.weight)\" = q5_0 ]"
    check "tied token_embd q8_0" "[ \"\$(type_of $T/s.gguf token_embd.weight)\" = q8_0 ]"
    ok "stories260K q8_0" "$LMP_BIN" quantize "$S" -o "$T/s8.gguf" --type q8_0
    check "q8_0 ffn_down f16" "[ \"\$(type_of $T/s8.gguf blk.4.ffn_down.weight)\" = f16 ]"
    if "$LMP_BIN" ppl --help >/dev/null 2>&1 && [ -f "$LMP_FIXTURES/text/tinystories-valid-sample.txt" ]; then
        # q8_0 (+ f16 fallbacks) must stay within 1% of f32 perplexity (run.c protocol, short text)
        PA="--protocol windows --max-bytes 3000 --strip-cr --json"
        ok "ppl f32" "$LMP_BIN" ppl "$S" -f "$LMP_FIXTURES/text/tinystories-valid-sample.txt" $PA
        cp "$T/out" "$T/ppl32.json"
        ok "ppl q8_0" "$LMP_BIN" ppl "$T/s8.gguf" -f "$LMP_FIXTURES/text/tinystories-valid-sample.txt" $PA
        check "q8_0 ppl within 1% of f32" "$PY -c 'import json; a=json.load(open(\"$T/ppl32.json\"))[\"ppl\"]; b=json.load(open(\"$T/out\"))[\"ppl\"]; assert abs(b/a-1) < 0.01, (a, b)'"
    fi
else
    skip "stories260K fixture absent ($S)"
fi

# refused inputs
refuses "unknown type" "unknown type" "$LMP_BIN" quantize "$T/m" -o "$T/u.gguf" --type q7_k
refuses "existing output" "exists" "$LMP_BIN" quantize "$T/m" -o "$T/m-q8_0.gguf" --type q8_0
ok "--force replaces" "$LMP_BIN" quantize "$T/m" -o "$T/m-q8_0.gguf" --type q8_0 --force
refuses "quantized input" "allow-requantize" "$LMP_BIN" quantize "$T/m-q8_0.gguf" -o "$T/r.gguf" --type q4_0
ok "--allow-requantize" "$LMP_BIN" quantize "$T/m-q8_0.gguf" -o "$T/r.gguf" --type q4_0 --allow-requantize
check "requantized attn_q q4_0" "[ \"\$(type_of $T/r.gguf blk.0.attn_q.weight)\" = q4_0 ]"
refuses "bad regex" "regular expression" "$LMP_BIN" quantize "$T/m" -o "$T/b.gguf" --type q4_0 --tensor-type '(=q8_0'
refuses "bad override type" "unknown tensor type" "$LMP_BIN" quantize "$T/m" -o "$T/b.gguf" --type q4_0 --tensor-type 'attn_q=q9_9'
refuses "override without =" "REGEX=TYPE" "$LMP_BIN" quantize "$T/m" -o "$T/b.gguf" --type q4_0 --tensor-type 'attn_q'
refuses "output not .gguf" ".gguf" "$LMP_BIN" quantize "$T/m" -o "$T/b.bin" --type q4_0
refuses "missing --type" "need MODEL" "$LMP_BIN" quantize "$T/m" -o "$T/b.gguf"
cp -r "$T/m" "$T/nan"
$PY - "$T/nan/model.safetensors" <<'PYEOF'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); t = h['model.layers.0.mlp.up_proj.weight']
assert t['dtype'] == 'F32'
o = 8 + n + t['data_offsets'][0] + 4 * 77
b[o:o + 4] = struct.pack('<f', float('nan')); open(p, 'wb').write(bytes(b))
PYEOF
# named as the input stores it (issue 17): the HF name, row 0 column 77
refuses "NaN weights" "model.layers.0.mlp.up_proj.weight row 0 column 77" "$LMP_BIN" quantize "$T/nan" -o "$T/nan.gguf" --type q4_k_m
check "NaN message says NaN" "grep -q NaN '$T/err'"
check "no output after a failure" "[ ! -e '$T/nan.gguf' ] && [ -z \"\$(ls $T | grep tmp)\" ]"
finish
