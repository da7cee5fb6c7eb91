#!/bin/sh
# Issue 18: the interfaces users expect. Short flags with one meaning (llama.cpp's -m/-f/-o/
# -t/-c/-n/-p), -m wherever the model is positional, llama-quantize's positional form,
# "did you mean" for options, values and subcommands, `lmpress help CMD`, case-insensitive
# names, and output kinds decided by the extension (refusing file-like folder names).
. tests/cli/lib.sh
S=$LMP_FIXTURES/models/stories260K
"$LMP_BIN" synth --preset tiny -o "$T/m" --seed 3 >/dev/null 2>&1

# ---- item 7: flags
ok "help CMD" "$LMP_BIN" help quantize
cp "$T/out" "$T/h1"
"$LMP_BIN" quantize --help > "$T/h2" 2>&1
check "help CMD = CMD --help" "cmp -s '$T/h1' '$T/h2'"
refuses "command did-you-mean" "did you mean 'quantize'" "$LMP_BIN" quantise x
refuses "option did-you-mean" "did you mean '--calib-samples'" "$LMP_BIN" quantize "$T/m" -o "$T/q" --method rtn --calib-sample 4
refuses "value did-you-mean" "did you mean 'gptq'" "$LMP_BIN" quantize "$T/m" -o "$T/q" --method gtpq
refuses "type did-you-mean" "did you mean 'q4_k_m'" "$LMP_BIN" quantize "$T/m" -o "$T/q.gguf" --type q4_km
ok "preset name any case" "$LMP_BIN" synth --preset TINY -o "$T/m-upper" --seed 3
check "same bytes as --preset tiny" "cmp -s '$T/m/model.safetensors' '$T/m-upper/model.safetensors'"
refuses "protocol did-you-mean" "did you mean 'llamacpp'" "$LMP_BIN" ppl "$T/m" -f x --protocol llamcpp
for c in $("$LMP_BIN" --help | awk '/^commands:/{f=1;next} f&&!NF{exit} f{print $1}'); do
    "$LMP_BIN" help $c > "$T/h" 2>&1
    check "$c: --force has no short form" "! grep -qE -- '-[a-z], --force' '$T/h'"
    check "$c: -f is a file when present" "! grep -qE -- '-f, --' '$T/h' || grep -qE -- '-f, --file' '$T/h'"
    check "$c: -t is threads when present" "! grep -qE -- '-t, --' '$T/h' || grep -qE -- '-t, --threads' '$T/h'"
    check "$c: -o is output when present" "! grep -qE -- '-o, --' '$T/h' || grep -qE -- '-o, --output' '$T/h'"
    check "$c: -c is ctx when present" "! grep -qE -- '-c, --' '$T/h' || grep -qE -- '-c, --ctx' '$T/h'"
done
for c in inspect convert quantize prune run ppl eval tokenize; do
    "$LMP_BIN" help $c > "$T/h" 2>&1
    check "$c accepts -m MODEL" "grep -qE -- '-m, --model' '$T/h'"
done
ok "inspect -m" "$LMP_BIN" inspect -m "$T/m" --json --no-tensors
cp "$T/out" "$T/i1"
"$LMP_BIN" inspect "$T/m" --json --no-tensors > "$T/i2"
check "inspect -m = positional" "cmp -s '$T/i1' '$T/i2'"
ok "tokenize -m -p" "$LMP_BIN" tokenize -m "$T/m" -p "hello world" --count
refuses "-m twice" "given twice" "$LMP_BIN" inspect -m "$T/m" --model "$T/m"
ok "case-insensitive --dtype and .GGUF" "$LMP_BIN" convert "$T/m" -o "$T/UP.GGUF" --dtype F16
check "X.GGUF is a GGUF file" "[ -f '$T/UP.GGUF' ] && head -c 4 '$T/UP.GGUF' | grep -q GGUF"
ok "llama-quantize positional form" "$LMP_BIN" quantize "$T/UP.GGUF" "$T/pos.gguf" Q8_0 1
check "positional form wrote q8_0" "grep -q 'q8_0' '$T/out' && [ -f '$T/pos.gguf' ]"
ok "same with -o --type" "$LMP_BIN" quantize "$T/UP.GGUF" -o "$T/opt.gguf" --type q8_0 -t 1
check "positional = options, byte for byte" "cmp -s '$T/pos.gguf' '$T/opt.gguf'"
refuses "positional bad nthreads" "thread count" "$LMP_BIN" quantize "$T/UP.GGUF" "$T/p2.gguf" q8_0 many
ok "--method RTN (any case)" "$LMP_BIN" quantize "$T/m" -o "$T/rtnfold" --method RTN --bits 4 -t 1
check "rtn folder written" "[ -f '$T/rtnfold/config.json' ]"

# ---- item 6: one bits-per-weight definition; logical parameter counts of packed folders
jget() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
ok "rtn --json" "$LMP_BIN" quantize "$T/m" -o "$T/rtn2" --method rtn --bits 4 -t 1 --json
cp "$T/out" "$T/q.json"
ok "inspect dense" "$LMP_BIN" inspect "$T/m" --json --no-tensors
cp "$T/out" "$T/d.json"
ok "inspect packed" "$LMP_BIN" inspect "$T/rtn2" --json --no-tensors
cp "$T/out" "$T/p.json"
check "packed folder: logical parameters = the dense model's" "[ \"\$(jget '$T/p.json' 'd[\"parameters\"]')\" = \"\$(jget '$T/d.json' 'd[\"parameters\"]')\" ]"
check "packed folder: linear bpw about 4.25" "[ \"\$(jget '$T/p.json' '4.1 < d[\"bits_per_weight_linear\"] < 4.4')\" = True ]"
check "dense: 32 bits per linear weight" "[ \"\$(jget '$T/d.json' 'd[\"bits_per_weight_linear\"]')\" = 32.0 ]"
check "quantize's summary = inspect's figures" "[ \"\$(jget '$T/q.json' '[round(d[\"bpw_linear\"],4), round(d[\"bpw\"],4)]')\" = \"\$(jget '$T/p.json' '[round(d[\"bits_per_weight_linear\"],4), round(d[\"bits_per_weight\"],4)]')\" ]"
ok "q8_0 --json" "$LMP_BIN" quantize "$T/UP.GGUF" -o "$T/q8b.gguf" --type q8_0 --json
cp "$T/out" "$T/g.json"
ok "inspect q8_0" "$LMP_BIN" inspect "$T/q8b.gguf" --json --no-tensors
check "GGUF q8_0: 8.5 bits per linear weight, same in both" "[ \"\$(jget '$T/out' 'round(d[\"bits_per_weight_linear\"],4)')\" = 8.5 ] && [ \"\$(jget '$T/g.json' 'round(d[\"bpw_linear\"],4)')\" = 8.5 ]"

# ---- item 10: progress that means something; summaries time the whole job
ok "gptq with per-layer ETA" "$LMP_BIN" quantize "$T/m" -o "$T/gq" --method gptq --calib "$T/m/corpus.txt" --calib-samples 4 --calib-seqlen 32 -t 1
check "per-layer lines carry elapsed and ETA" "grep -q 'layer 1 .*elapsed .*ETA' '$T/err'"
LMP_PROGRESS=1 "$LMP_BIN" quantize "$T/m" -o "$T/gq2" --method gptq --calib "$T/m/corpus.txt" --calib-samples 4 --calib-seqlen 32 -t 1 > /dev/null 2> "$T/bar"
check "one bar for the whole model, units named" "grep -q 'block passes' '$T/bar' && ! grep -q '/[0-9]* block passes.*layer 1/2.*100.0%' '$T/bar'"
ok "imatrix quantize --json" "$LMP_BIN" quantize "$T/m" -o "$T/im.gguf" --type q4_0 --imatrix-calib "$T/m/corpus.txt" --calib-samples 4 --calib-seqlen 32 --json
check "seconds cover imatrix + conversion + quantizing" "$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d[\"imatrix_seconds\"] > 0 and d[\"seconds\"] >= d[\"imatrix_seconds\"] + d[\"quantize_seconds\"] + d[\"convert_seconds\"] - 1e-3 else 1)' '$T/out'"
ok "imatrix quantize text" "$LMP_BIN" quantize "$T/m" -o "$T/im2.gguf" --type q4_0 --imatrix-calib "$T/m/corpus.txt" --calib-samples 4 --calib-seqlen 32
check "summary says where the time went" "grep -q 's in all: .* quantizing, .* importance weights' '$T/out'"

# ---- item 12: small ones
ok "synth --list" "$LMP_BIN" synth --list
check "no preset shows 0 parameters" "! grep -qE '\((0.0[KM]|0) parameters' '$T/out' && grep -q 'tiny .*1.2M parameters without the embeddings' '$T/out'"
ok "synth --list --json" "$LMP_BIN" synth --list --json
check "synth --list --json parses" "$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if len(d[\"presets\"]) >= 8 and all(p[\"parameters\"] > 0 for p in d[\"presets\"]) else 1)' '$T/out'"
refuses "run --temp -1" "temp" "$LMP_BIN" run "$T/m" -p "hello" --temp -1
check "nothing printed before the error" "[ ! -s '$T/out' ]"
refuses "run --top-p 0" "top-p" "$LMP_BIN" run "$T/m" -p "hello" --top-p 0

# ---- item 8: selecting tensors by llama.cpp or Hugging Face names; --dtype for folders
ok "--keep by llama.cpp name" "$LMP_BIN" quantize "$T/UP.GGUF" -o "$T/k1.gguf" --type q4_0 --keep 'blk\.0\.attn_q\.weight'
ok "--keep by HF name" "$LMP_BIN" quantize "$T/UP.GGUF" -o "$T/k2.gguf" --type q4_0 --keep 'layers\.0\.self_attn\.q_proj'
check "both names select the same tensor" "cmp -s '$T/k1.gguf' '$T/k2.gguf'"
"$LMP_BIN" inspect "$T/k2.gguf" > "$T/k2.txt"
check "kept tensor unquantized" "grep -E 'blk.0.attn_q.weight +f16' '$T/k2.txt' >/dev/null && grep -E 'blk.1.attn_q.weight +q4_0' '$T/k2.txt' >/dev/null"
ok "--tensor-type by HF name" "$LMP_BIN" quantize "$T/UP.GGUF" -o "$T/tt.gguf" --type q4_0 --tensor-type 'mlp\.down_proj=q8_0'
"$LMP_BIN" inspect "$T/tt.gguf" > "$T/tt.txt"
check "HF-named override applied" "grep -E 'blk.1.ffn_down.weight +q8_0' '$T/tt.txt' >/dev/null && grep -E 'blk.1.ffn_up.weight +q4_0' '$T/tt.txt' >/dev/null"
ok "pattern matching nothing" "$LMP_BIN" quantize "$T/UP.GGUF" -o "$T/nm.gguf" --type q4_0 --keep 'attn_nothing' --tensor-type 'nope=q8_0'
check "warned for each" "grep -q \"keep 'attn_nothing' matches no tensor\" '$T/err' && grep -q \"tensor-type 'nope=q8_0' matches no tensor\" '$T/err'"
ok "--method rtn --keep (HF and llama.cpp names)" "$LMP_BIN" quantize "$T/m" -o "$T/kr" --method rtn --keep 'layers\.0\.mlp\.down_proj' --keep 'blk\.1\.attn_q' --keep 'nothing_here' -t 1
check "unmatched --keep warned" "grep -q \"keep 'nothing_here' matches no linear\" '$T/err'"
"$LMP_BIN" inspect "$T/kr" > "$T/kr.txt"
check "kept linears dense, others packed" "grep -qE 'model.layers.0.mlp.down_proj.weight +f32' '$T/kr.txt' && grep -qE 'model.layers.1.self_attn.q_proj.weight +f32' '$T/kr.txt' && grep -q 'model.layers.1.mlp.down_proj.qweight' '$T/kr.txt' && ! grep -q 'layers.0.mlp.down_proj.qweight' '$T/kr.txt'"
check "listed in modules_to_not_convert" "$PY -c 'import json,sys; q=json.load(open(sys.argv[1]))[\"quantization_config\"]; sys.exit(0 if q[\"modules_to_not_convert\"] == [\"model.layers.0.mlp.down_proj\", \"model.layers.1.self_attn.q_proj\"] else 1)' '$T/kr/config.json'"
check "kept weights byte-identical to the input's" "$PY - '$T/m/model.safetensors' '$T/kr/model.safetensors' <<'PYEOF'
import json, struct, sys
def t(p, name):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    o = h[name]['data_offsets']; return b[8 + n + o[0]: 8 + n + o[1]]
for nm in ('model.layers.0.mlp.down_proj.weight', 'model.layers.1.self_attn.q_proj.weight'):
    assert t(sys.argv[1], nm) == t(sys.argv[2], nm), nm
PYEOF"
ok "--keep everything" "$LMP_BIN" quantize "$T/m" -o "$T/kall" --method rtn --keep '.*' -t 1
"$LMP_BIN" ppl "$T/m" -f "$T/m/corpus.txt" --ctx 64 --chunks 4 --json > "$T/p0.json" 2>/dev/null
"$LMP_BIN" ppl "$T/kall" -f "$T/m/corpus.txt" --ctx 64 --chunks 4 --json > "$T/p1.json" 2>/dev/null
check "all kept: the folder evaluates exactly as the input" "[ \"\$(jget '$T/p0.json' 'd[\"ppl\"]')\" = \"\$(jget '$T/p1.json' 'd[\"ppl\"]')\" ]"
refuses "--keep with awq refused" "AWQ folds" "$LMP_BIN" quantize "$T/m" -o "$T/ka" --method awq --calib "$T/m/corpus.txt" --calib-samples 2 --calib-seqlen 32 --keep 'q_proj'
ok "--method rtn --dtype bf16" "$LMP_BIN" quantize "$T/m" -o "$T/rb" --method rtn --dtype BF16 -t 1
"$LMP_BIN" inspect "$T/rb" > "$T/rb.txt"
check "unquantized tensors in bf16" "grep -E 'model.embed_tokens.weight +bf16' '$T/rb.txt' >/dev/null && grep -E 'model.norm.weight +bf16' '$T/rb.txt' >/dev/null && ! grep -E ' f32 ' '$T/rb.txt'"
check "torch_dtype bfloat16" "grep -q '\"torch_dtype\":.*\"bfloat16\"' '$T/rb/config.json'"
ok "--dtype f16 folder" "$LMP_BIN" quantize "$T/m" -o "$T/rh" --method rtn --dtype f16 -t 1
check "torch_dtype float16" "grep -q '\"torch_dtype\":.*\"float16\"' '$T/rh/config.json'"
for v in rtnfold rb rh; do "$LMP_BIN" ppl "$T/$v" -f "$T/m/corpus.txt" --ctx 64 --chunks 4 --json > "$T/$v.ppl" 2>/dev/null; done
check "bf16/f16 rest of the model: perplexity within 1% of the f32 one" "$PY -c '
import json,sys
a, b, c = (json.load(open(\"$T/\" + v + \".ppl\"))[\"ppl\"] for v in (\"rtnfold\", \"rb\", \"rh\"))
sys.exit(0 if abs(b / a - 1) < 0.01 and abs(c / a - 1) < 0.01 and b != a else 1)'"

# ---- item 2: output kind by extension
refuses "convert x.ggml refused" "looks like a file" "$LMP_BIN" convert "$T/m" -o "$T/x.ggml"
check "nothing written for x.ggml" "[ ! -e '$T/x.ggml' ]"
refuses "convert x.bin refused" "-o NAME.gguf" "$LMP_BIN" convert "$T/m" -o "$T/x.bin"
refuses "gptq to .gguf refused" "Hugging Face folder" "$LMP_BIN" quantize "$T/m" -o "$T/gq.gguf" --method rtn
check "nothing written for gq.gguf" "[ ! -e '$T/gq.gguf' ]"
refuses "--type to a folder name refused" "must end in .gguf" "$LMP_BIN" quantize "$T/m" -o "$T/qdir" --type q8_0
ok "prune -o p.GGUF writes GGUF" "$LMP_BIN" prune "$T/m" -o "$T/p.GGUF" --method magnitude --sparsity 0.5 -t 1
check "p.GGUF is a GGUF file" "[ -f '$T/p.GGUF' ] && head -c 4 '$T/p.GGUF' | grep -q GGUF"
refuses "prune folder format to file name" "Hugging Face folder" "$LMP_BIN" prune "$T/m" -o "$T/p.safetensors" --method magnitude --sparsity 0.5
refuses "prune --format gguf to a folder name" "must end in .gguf" "$LMP_BIN" prune "$T/m" -o "$T/pdir" --method magnitude --sparsity 0.5 --format gguf
finish
