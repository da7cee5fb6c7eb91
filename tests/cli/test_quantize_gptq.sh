#!/bin/sh
# lmpress quantize --method gptq|rtn: calibrated GPTQ on gutenberg-5M written as GPTQ v1,
# gptq_v2 (asymmetric) and compressed-tensors folders (config.json quantization_config,
# quantize_config.json, packed tensor names/dtypes/shapes, tokenizer files, no dense
# linear weight left), --json summary (GPTQ below RTN on every linear), gzip calibration
# text, RTN without calibration, a qwen2 synth model (q/k/v biases copied), and refused
# inputs: GPTQ without --calib, group size that does not divide in_features, calibration
# text too short, existing output (and --force), NaN weights, GGUF and --method mixed.
. tests/cli/lib.sh
if ! "$LMP_BIN" quantize --help 2>/dev/null | grep -q -- --method; then
    skip "lmpress quantize has no --method in this build"
    finish; exit $?
fi
M=$LMP_FIXTURES/models/gutenberg-5M
TXT=$LMP_FIXTURES/text/wikitext2-test.gptq-join.txt
if [ ! -d "$M" ] || [ ! -f "$TXT" ]; then
    skip "fixtures gutenberg-5M / wikitext2 text not found at $LMP_FIXTURES"
    finish; exit $?
fi
# st_header FILE: the safetensors JSON header on stdout
st_py() { # folder, python expression over h (header dict) and c (config.json dict)
    $PY - "$1" "$2" <<'PYEOF'
import json, struct, sys
d = sys.argv[1]
b = open(d + '/model.safetensors', 'rb').read(1 << 20)
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
c = json.load(open(d + '/config.json'))
sys.exit(0 if eval(sys.argv[2]) else 1)
PYEOF
}
C="--calib $TXT --calib-samples 8 --calib-seqlen 64"

ok "gptq v1" "$LMP_BIN" quantize "$M" -o "$T/g" --method gptq $C --json
cp "$T/out" "$T/g.json"
check "json parses, GPTQ below RTN everywhere" \
    "$PY -c 'import json,sys; j=json.load(open(\"$T/g.json\")); sys.exit(0 if j[\"worse_than_rtn\"] == 0 and j[\"compared\"] == 42 and j[\"linears\"] == 42 and all(l[\"err\"] < l[\"err_rtn\"] for l in j[\"layers\"]) else 1)'"
check "json bits per weight" "$PY -c 'import json,sys; j=json.load(open(\"$T/g.json\")); sys.exit(0 if 4.2 < j[\"bpw_linear\"] < 4.4 else 1)'"
check "gptq quantization_config" "st_py '$T/g' \"c['quantization_config']['quant_method'] == 'gptq' and c['quantization_config']['checkpoint_format'] == 'gptq' and c['quantization_config']['bits'] == 4 and c['quantization_config']['group_size'] == 128 and c['quantization_config']['desc_act'] and c['quantization_config']['sym']\""
check "gptq tensors" "st_py '$T/g' \"h['model.layers.0.mlp.down_proj.qweight']['shape'] == [96, 256] and h['model.layers.0.mlp.down_proj.qweight']['dtype'] == 'I32' and h['model.layers.0.mlp.down_proj.scales']['shape'] == [6, 256] and h['model.layers.0.mlp.down_proj.scales']['dtype'] == 'F16' and h['model.layers.0.mlp.down_proj.qzeros']['shape'] == [6, 32] and h['model.layers.0.mlp.down_proj.g_idx']['shape'] == [768]\""
check "gptq: no dense linear weights, other tensors kept" "st_py '$T/g' \"not any(k.endswith('_proj.weight') for k in h) and 'model.embed_tokens.weight' in h and 'model.norm.weight' in h and 'model.layers.5.post_attention_layernorm.weight' in h\""
check "quantize_config.json" "[ -f '$T/g/quantize_config.json' ] && grep -q '\"desc_act\":.*true' '$T/g/quantize_config.json'"
check "tokenizer copied" "cmp -s '$M/tokenizer.json' '$T/g/tokenizer.json' && [ -f '$T/g/tokenizer_config.json' ] && [ -f '$T/g/generation_config.json' ]"
check "no temporary left" "[ -z \"\$(ls $T | grep tmp)\" ]"
ok "gptq v1, one thread" "$LMP_BIN" quantize "$M" -o "$T/g1" --method gptq $C -t 1
check "same bytes with 1 and 2 threads" "cmp -s '$T/g/model.safetensors' '$T/g1/model.safetensors'"

gzip -c "$TXT" > "$T/cal.txt.gz"
ok "compressed-tensors asym, gzip calibration, no act-order" "$LMP_BIN" quantize "$M" -o "$T/ct" --method gptq \
    --calib "$T/cal.txt.gz" --calib-samples 8 --calib-seqlen 64 --format compressed-tensors --asym --no-act-order \
    --group-size 64 --verbose
check "verbose table" "grep -q 'model.layers.5.mlp.down_proj' '$T/out' && grep -q 'below RTN.s on 42 of 42' '$T/out'"
check "ct quantization_config" "st_py '$T/ct' \"c['quantization_config']['quant_method'] == 'compressed-tensors' and c['quantization_config']['format'] == 'pack-quantized' and c['quantization_config']['config_groups']['group_0']['weights']['symmetric'] is False and c['quantization_config']['config_groups']['group_0']['weights']['group_size'] == 64 and c['quantization_config']['config_groups']['group_0']['weights']['actorder'] is None\""
check "ct tensors" "st_py '$T/ct' \"h['model.layers.0.mlp.down_proj.weight_packed']['shape'] == [256, 96] and h['model.layers.0.mlp.down_proj.weight_scale']['shape'] == [256, 12] and h['model.layers.0.mlp.down_proj.weight_zero_point']['shape'] == [32, 12] and h['model.layers.0.mlp.down_proj.weight_shape']['dtype'] == 'I64' and 'model.layers.0.mlp.down_proj.weight_g_idx' not in h\""
check "no quantize_config.json for ct" "[ ! -f '$T/ct/quantize_config.json' ]"

ok "gptq asym -> v2" "$LMP_BIN" quantize "$M" -o "$T/g2" --method gptq $C --asym --bits 3 --group-size 32
check "gptq_v2 3-bit" "st_py '$T/g2' \"c['quantization_config']['checkpoint_format'] == 'gptq_v2' and not c['quantization_config']['sym'] and c['quantization_config']['bits'] == 3 and h['model.layers.0.self_attn.q_proj.qweight']['shape'] == [24, 256]\""
ok "rtn without calibration" "$LMP_BIN" quantize "$M" -o "$T/r" --method rtn --format compressed-tensors
check "rtn config" "st_py '$T/r' \"c['quantization_config']['config_groups']['group_0']['weights']['actorder'] is None and 'model.layers.3.self_attn.o_proj.weight_packed' in h\""

"$LMP_BIN" synth --preset tiny-qwen2 -o "$T/q2" --seed 5 >/dev/null 2>&1
ok "qwen2 synth (biases)" "$LMP_BIN" quantize "$T/q2" -o "$T/q2g" --method gptq --calib "$T/q2/corpus.txt" \
    --calib-samples 4 --calib-seqlen 64 --group-size 32
check "q/k/v biases copied" "st_py '$T/q2g' \"'model.layers.1.self_attn.q_proj.bias' in h and 'model.layers.1.self_attn.q_proj.qweight' in h\""

# refused inputs
refuses "gptq without --calib" "calib" "$LMP_BIN" quantize "$M" -o "$T/x1" --method gptq
refuses "group size 100" "in_features 256 is not a multiple of group size 100" \
    "$LMP_BIN" quantize "$M" -o "$T/x2" --method gptq $C --group-size 100
head -c 400 "$TXT" > "$T/short.txt"
refuses "short calibration text" "short.txt" "$LMP_BIN" quantize "$M" -o "$T/x3" --method gptq --calib "$T/short.txt"
check "short text message counts" "grep -q 'need at least 257' '$T/err'"
refuses "existing output" "exists" "$LMP_BIN" quantize "$M" -o "$T/g" --method rtn
ok "--force replaces" "$LMP_BIN" quantize "$M" -o "$T/g" --method rtn --force
check "replaced by rtn (no act-order)" "st_py '$T/g' \"not c['quantization_config']['desc_act']\""
refuses "--type and --method" "do not mix" "$LMP_BIN" quantize "$M" -o "$T/x4" --method rtn --type q4_0
refuses "unknown format" "--format" "$LMP_BIN" quantize "$M" -o "$T/x5" --method rtn --format exl2
refuses "--sym --asym" "conflict" "$LMP_BIN" quantize "$M" -o "$T/x6" --method rtn --sym --asym
refuses "bits 9" "bits" "$LMP_BIN" quantize "$M" -o "$T/x7" --method rtn --bits 9
refuses "seqlen above context" "context" "$LMP_BIN" quantize "$M" -o "$T/x8" --method gptq --calib "$TXT" \
    --calib-samples 2 --calib-seqlen 512
"$LMP_BIN" synth --preset tiny -o "$T/nan" --seed 3 >/dev/null 2>&1
$PY - "$T/nan/model.safetensors" <<'PYEOF'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); t = h['model.layers.1.mlp.up_proj.weight']
assert t['dtype'] == 'F32'
o = 8 + n + t['data_offsets'][0] + 4 * 77
b[o:o + 4] = struct.pack('<f', float('nan')); open(p, 'wb').write(bytes(b))
PYEOF
refuses "NaN weights" "model.layers.1.mlp.up_proj.weight" "$LMP_BIN" quantize "$T/nan" -o "$T/nanq" --method gptq \
    --calib "$T/nan/corpus.txt" --calib-samples 2 --calib-seqlen 32 --group-size 32
check "no output after a failure" "[ ! -e '$T/nanq' ] && [ -z \"\$(ls $T | grep tmp)\" ]"
finish
