#!/bin/sh
# lmpress quantize --method awq: AWQ on gutenberg-5M written as an AutoAWQ GEMM folder
# (config.json quantization_config, qweight/qzeros/scales names, dtypes and shapes,
# folded norm weights differing from the input's, tokenizer files, no dense linear
# weight), --json summary, the same bytes with 1 and 2 threads, compressed-tensors and
# gptq_v2 output of AWQ weights, a qwen2 synth model without GQA (v -> o group, biases);
# --imatrix-calib on the GGUF path (provenance keys); the search sample (--awq-search-tokens:
# other bytes, 1 and 2 threads the same, all tokens = the full search); refused inputs: AWQ without
# --calib, --act-order, 3-bit AWQ folder, --no-clip / --awq-search-tokens without AWQ, --imatrix-calib with
# --method, a calibration text too short for the imatrix chunks.
. tests/cli/lib.sh
if ! "$LMP_BIN" quantize --help 2>/dev/null | grep -q -- "--method.*awq"; then
    skip "lmpress quantize has no --method awq in this build"
    finish; exit $?
fi
M=$LMP_FIXTURES/models/gutenberg-5M
TXT=$LMP_FIXTURES/text/wikitext2-test.gptq-join.txt
if [ ! -d "$M" ] || [ ! -f "$TXT" ]; then
    skip "fixtures gutenberg-5M / wikitext2 text not found at $LMP_FIXTURES"
    finish; exit $?
fi
st_py() { # folder, python expression over h (header dict), c (config.json dict), t(name) -> floats
    $PY - "$1" "$2" "$M" <<'PYEOF'
import json, struct, sys
def header(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
d = sys.argv[1]
h, data = header(d + '/model.safetensors')
c = json.load(open(d + '/config.json'))
hin, din = header(sys.argv[3] + '/model.safetensors')
def t(name, hh=h, dd=data):
    e = hh[name]; a, z = e['data_offsets']
    assert e['dtype'] == 'F32'
    return struct.unpack('<%df' % ((z - a) // 4), dd[a:z])
def tin(name):
    return t(name, hin, din)
sys.exit(0 if eval(sys.argv[2]) else 1)
PYEOF
}
C="--calib $TXT --calib-samples 4 --calib-seqlen 64"

ok "awq" "$LMP_BIN" quantize "$M" -o "$T/a" --method awq $C --json
cp "$T/out" "$T/a.json"
check "json: 42 linears, awq format, asym" \
    "$PY -c 'import json,sys; j=json.load(open(\"$T/a.json\")); sys.exit(0 if j[\"linears\"] == 42 and j[\"method\"] == \"awq\" and j[\"format\"] == \"awq\" and j[\"sym\"] is False and j[\"calib_seqlen\"] == 64 and 4.1 < j[\"bpw_linear\"] < 4.3 else 1)'"
check "json: AWQ below RTN on most linears" \
    "$PY -c 'import json,sys; j=json.load(open(\"$T/a.json\")); sys.exit(0 if j[\"compared\"] == 42 and j[\"worse_than_rtn\"] <= 12 else 1)'"
check "awq quantization_config" "st_py '$T/a' \"c['quantization_config'] == {'quant_method': 'awq', 'zero_point': True, 'group_size': 128, 'bits': 4, 'version': 'gemm', 'modules_to_not_convert': None}\""
check "awq tensors" "st_py '$T/a' \"h['model.layers.0.mlp.down_proj.qweight']['shape'] == [768, 32] and h['model.layers.0.mlp.down_proj.qweight']['dtype'] == 'I32' and h['model.layers.0.mlp.down_proj.qzeros']['shape'] == [6, 32] and h['model.layers.0.mlp.down_proj.scales']['shape'] == [6, 256] and h['model.layers.0.mlp.down_proj.scales']['dtype'] == 'F16' and h['model.layers.0.self_attn.k_proj.qweight']['shape'] == [256, 16]\""
check "no dense linear weights, no g_idx" "st_py '$T/a' \"not any(k.endswith('_proj.weight') or k.endswith('g_idx') for k in h) and 'model.embed_tokens.weight' in h and 'model.norm.weight' in h\""
check "folded norms written (differ from the input, same shape)" \
    "st_py '$T/a' \"all(t('model.layers.%d.%s.weight' % (l, n)) != tin('model.layers.%d.%s.weight' % (l, n)) and len(t('model.layers.%d.%s.weight' % (l, n))) == 256 for l in range(6) for n in ('input_layernorm', 'post_attention_layernorm')) and t('model.norm.weight') == tin('model.norm.weight')\""
check "tokenizer copied, no quantize_config.json" "cmp -s '$M/tokenizer.json' '$T/a/tokenizer.json' && [ ! -f '$T/a/quantize_config.json' ]"
check "no temporary left" "[ -z \"\$(ls $T | grep tmp)\" ]"
ok "awq, one thread" "$LMP_BIN" quantize "$M" -o "$T/a1" --method awq $C -t 1
check "same bytes with 1 and 2 threads" "cmp -s '$T/a/model.safetensors' '$T/a1/model.safetensors'"

# the search sample: 64 of the 256 tokens (q/k/v on one whole window), thread-count independent
ok "awq, search sample" "$LMP_BIN" quantize "$M" -o "$T/as" --method awq $C --awq-search-tokens 64 --json
cp "$T/out" "$T/as.json"
check "search sample said on stderr" "grep -q 'on 64 sampled tokens of 256 (q/k/v: 1 whole window of 64' '$T/err'"
check "search sample: other bytes than the full search" "! cmp -s '$T/a/model.safetensors' '$T/as/model.safetensors'"
check "search sample: AWQ below RTN on most linears" \
    "$PY -c 'import json,sys; j=json.load(open(\"$T/as.json\")); sys.exit(0 if j[\"compared\"] == 42 and j[\"worse_than_rtn\"] <= 12 else 1)'"
check "search sample: layer 0's RTN errors on the sample within 25% of those on every token" \
    "$PY -c 'import json,sys; a=json.load(open(\"$T/a.json\"))[\"layers\"]; b=json.load(open(\"$T/as.json\"))[\"layers\"]; sys.exit(0 if all(abs(x[\"err_rtn\"] / y[\"err_rtn\"] - 1) < 0.25 for x, y in zip(a[:7], b[:7])) else 1)'"
ok "awq, search sample, one thread" "$LMP_BIN" quantize "$M" -o "$T/as1" --method awq $C --awq-search-tokens 64 -t 1
check "search sample: same bytes with 1 and 2 threads" "cmp -s '$T/as/model.safetensors' '$T/as1/model.safetensors'"
# bf16 (default) against --calib-f32 (f32 float passes and search products: the bytes before bf16 AWQ)
ok "awq, search sample in f32" "$LMP_BIN" quantize "$M" -o "$T/as32" --method awq $C --awq-search-tokens 64 --calib-f32 --json
cp "$T/out" "$T/as32.json"
check "search sample: bf16 products give other bytes than --calib-f32" \
    "! cmp -s '$T/as/model.safetensors' '$T/as32/model.safetensors'"
check "search sample: bf16 RTN error figures within 2% of the f32 ones (every linear)" \
    "$PY -c 'import json,sys; a=json.load(open(\"$T/as32.json\"))[\"layers\"]; b=json.load(open(\"$T/as.json\"))[\"layers\"]; sys.exit(0 if len(a) == 42 and all(abs(x[\"err_rtn\"] / y[\"err_rtn\"] - 1) < 0.02 for x, y in zip(a, b)) else 1)'"
ok "awq, search sample in f32, one thread" "$LMP_BIN" quantize "$M" -o "$T/as321" --method awq $C --awq-search-tokens 64 \
    --calib-f32 -t 1
check "search sample in f32: same bytes with 1 and 2 threads" \
    "cmp -s '$T/as32/model.safetensors' '$T/as321/model.safetensors'"
ok "awq, --awq-search-tokens at the token count" "$LMP_BIN" quantize "$M" -o "$T/af" --method awq $C --awq-search-tokens 256
check "a sample of every token is the full search" "cmp -s '$T/a/model.safetensors' '$T/af/model.safetensors'"

ok "awq as compressed-tensors, no clip, x-only scales" "$LMP_BIN" quantize "$M" -o "$T/act" --method awq $C \
    --format compressed-tensors --no-clip --no-duo-scaling --group-size 64 --verbose
check "verbose table and summary" "grep -q 'model.layers.5.mlp.down_proj' '$T/out' && grep -q 'AWQ output error below RTN' '$T/out'"
check "ct asymmetric g64" "st_py '$T/act' \"c['quantization_config']['config_groups']['group_0']['weights']['symmetric'] is False and c['quantization_config']['config_groups']['group_0']['weights']['group_size'] == 64 and 'model.layers.0.mlp.down_proj.weight_zero_point' in h\""
ok "awq as gptq (asymmetric -> v2)" "$LMP_BIN" quantize "$M" -o "$T/ag" --method awq $C --format gptq
check "gptq_v2 without desc_act" "st_py '$T/ag' \"c['quantization_config']['checkpoint_format'] == 'gptq_v2' and not c['quantization_config']['desc_act'] and not c['quantization_config']['sym']\""

"$LMP_BIN" synth --preset tiny-qwen2 -o "$T/q2" --seed 5 >/dev/null 2>&1
$PY - "$T/q2/config.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1])); c['num_key_value_heads'] = c['num_attention_heads']
json.dump(c, open(sys.argv[1] + '.mha', 'w'))
PYEOF
if "$LMP_BIN" synth --config "$T/q2/config.json.mha" -o "$T/q2m" --seed 5 >/dev/null 2>&1; then
    ok "qwen2 without GQA (v -> o group, biases)" "$LMP_BIN" quantize "$T/q2m" -o "$T/q2a" --method awq \
        --calib "$T/q2m/corpus.txt" --calib-samples 4 --calib-seqlen 64 --group-size 64
    check "v bias folded, q bias kept" \
        "$PY - '$T/q2m' '$T/q2a' <<'PYEOF'
import json, struct, sys
def load(d):
    b = open(d + '/model.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
def t(hd, name):
    h, d = hd; e = h[name]; a, z = e['data_offsets']
    f = {'F32': 'f', 'F16': 'e', 'BF16': None}[e['dtype']]
    return struct.unpack('<%d%s' % ((z - a) // struct.calcsize(f), f), d[a:z])
i, o = load(sys.argv[1]), load(sys.argv[2])
ok = t(i, 'model.layers.0.self_attn.v_proj.bias') != t(o, 'model.layers.0.self_attn.v_proj.bias') and \
     t(i, 'model.layers.0.self_attn.q_proj.bias') == t(o, 'model.layers.0.self_attn.q_proj.bias')
sys.exit(0 if ok else 1)
PYEOF"
else
    skip "synth --config with num_key_value_heads = num_attention_heads"
fi

# imatrix on the GGUF path
ok "q4_0 with --imatrix-calib" "$LMP_BIN" quantize "$M" -o "$T/i.gguf" --type q4_0 --imatrix-calib "$TXT" \
    --calib-samples 8 --calib-seqlen 128 --json
check "json imatrix figures" "$PY -c 'import json,sys; j=json.load(open(\"$T/out\")); sys.exit(0 if j[\"imatrix_chunks\"] == 8 and j[\"imatrix_entries\"] == 42 and j[\"imatrix_tokens\"] == 1024 else 1)'"
ok "inspect" "$LMP_BIN" inspect "$T/i.gguf" --json --no-tensors
check "provenance keys" "grep -q 'quantize.imatrix.file' '$T/out' && grep -q 'quantize.imatrix.chunks_count' '$T/out' && grep -q 'quantize.imatrix.entries_count' '$T/out' && grep -q 'quantize.imatrix.dataset' '$T/out'"
ok "q4_0 without" "$LMP_BIN" quantize "$M" -o "$T/n.gguf" --type q4_0
check "imatrix changes the codes" "! cmp -s '$T/i.gguf' '$T/n.gguf'"
ok "inspect without" "$LMP_BIN" inspect "$T/n.gguf" --json --no-tensors
check "no provenance without imatrix" "! grep -q 'quantize.imatrix' '$T/out'"

# refused inputs
refuses "awq without --calib" "calib" "$LMP_BIN" quantize "$M" -o "$T/x1" --method awq
refuses "awq --act-order" "act-order" "$LMP_BIN" quantize "$M" -o "$T/x2" --method awq $C --act-order
refuses "awq folder, 3 bits" "4-bit" "$LMP_BIN" quantize "$M" -o "$T/x3" --method awq $C --bits 3
refuses "--no-clip without awq" "AWQ only" "$LMP_BIN" quantize "$M" -o "$T/x4" --method rtn --no-clip
refuses "--awq-search-tokens without awq" "AWQ only" "$LMP_BIN" quantize "$M" -o "$T/x7" --method gptq $C \
    --awq-search-tokens 64
refuses "negative --awq-search-tokens" "search-tokens" "$LMP_BIN" quantize "$M" -o "$T/x8" --method awq $C \
    --awq-search-tokens -5
refuses "--imatrix-calib with --method" "do not mix" "$LMP_BIN" quantize "$M" -o "$T/x5" --method awq $C \
    --imatrix-calib "$TXT"
head -c 2000 "$TXT" > "$T/short.txt"
refuses "imatrix text too short" "short.txt" "$LMP_BIN" quantize "$M" -o "$T/x6.gguf" --type q4_0 \
    --imatrix-calib "$T/short.txt"
check "no output after refusals" "[ ! -e '$T/x1' ] && [ ! -e '$T/x3' ] && [ ! -e '$T/x6.gguf' ]"
finish
