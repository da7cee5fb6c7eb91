#!/bin/sh
# Issue 15: `quantize --type` from a Hugging Face folder streams the converter's tensors
# into the GGUF quantizer (formats' lmp_convert_src_open -> lib/quant's
# lmp_gguf_quantize_src), with no temporary GGUF. The file must be byte for byte what
# `convert HF -o x.gguf && quantize x.gguf` writes, for every family the converter
# handles (Q/K permutation, fused phi3, gemma's 1 + w norms, stacked and split experts,
# rope factor tensors); bad input is refused naming the file, with nothing written.
# The size-targeted plan (--target-bpw / --target-size) from a folder measures the same
# stream and probes the folder's model made the GGUF's (q/k rows and RoPE order): the
# same bytes as convert then plan, uncalibrated, calibrated, with importance weights.
. tests/cli/lib.sh

same() { # name, folder, extra quantize options...: direct = convert then quantize
    name=$1; m=$2; shift 2
    rm -f "$T/d.gguf" "$T/g.gguf"
    "$LMP_BIN" quantize "$m" -o "$T/d.gguf" "$@" > /dev/null 2> "$T/derr"
    "$LMP_BIN" quantize "$m.gguf" -o "$T/g.gguf" "$@" > /dev/null 2> "$T/gerr"
    check "$name: direct = convert then quantize" "[ -s '$T/d.gguf' ] && cmp -s '$T/d.gguf' '$T/g.gguf'"
}

for p in tiny tiny-qwen2 tiny-phi3 tiny-gemma3 tiny-qwen3 tiny-mixtral tiny-granitemoe tiny-llama3; do
    dt=bf16; [ "$p" = tiny-qwen2 ] && dt=f32
    "$LMP_BIN" synth --preset $p --dtype $dt -o "$T/$p" > /dev/null 2>&1
    "$LMP_BIN" convert "$T/$p" -o "$T/$p.gguf" > /dev/null 2>&1
    for ty in q4_k_m q8_0; do same "$p $ty" "$T/$p" --type $ty; done
done
check "the direct path says so, and converts nothing to a file" \
    "grep -q 'through the GGUF converter' '$T/derr' && ! grep -q 'converting' '$T/derr'"
ok "json: no conversion time" "$LMP_BIN" quantize "$T/tiny" -o "$T/j.gguf" --type q5_k_s --json
check "convert_seconds is 0" "grep -q '\"convert_seconds\": 0.0000' '$T/out'"
check "only the output beside it" "[ \"\$(ls '$T' | grep -c '^j\\.gguf')\" = 1 ]"

# importance weights: computed from the folder (no Q/K permutation: the GGUF model's are
# the same), or one file for both (llama: the permuted model's activations differ in the
# last bits, so the file fixes them)
same "tiny-phi3 iq2_xxs --imatrix-calib" "$T/tiny-phi3" --type iq2_xxs --imatrix-calib "$T/tiny-phi3/corpus.txt" \
    --calib-samples 4 --calib-seqlen 64
same "tiny-gemma3 q4_k_m --imatrix-calib" "$T/tiny-gemma3" --type q4_k_m --imatrix-calib "$T/tiny-gemma3/corpus.txt" \
    --calib-samples 4 --calib-seqlen 64
ok "imatrix of the llama folder" "$LMP_BIN" quantize "$T/tiny" -o "$T/i.gguf" --type q4_k_m \
    --imatrix-calib "$T/tiny/corpus.txt" --calib-samples 4 --calib-seqlen 64 --imatrix-out "$T/tiny.dat"
same "tiny iq3_xxs --imatrix FILE" "$T/tiny" --type iq3_xxs --imatrix "$T/tiny.dat"
# llama too: the folder's model computes with its q/k rows in GGUF order (lmp_model_gguf_qk_order)
same "tiny q4_k_m --imatrix-calib" "$T/tiny" --type q4_k_m --imatrix-calib "$T/tiny/corpus.txt" \
    --calib-samples 4 --calib-seqlen 64

# ---- the size-targeted plan from the folder (test_target_bpw.sh covers the planner itself)
CAL=$T/cal.txt
head -c 20000 "$LMP_FIXTURES/text/wiki.test.raw" > "$CAL" 2>/dev/null
[ -s "$CAL" ] || for i in $(seq 1 40); do cat "$T/tiny/corpus.txt"; done > "$CAL"
same "tiny --target-bpw 3.5" "$T/tiny" --target-bpw 3.5
check "the plan says so, and converts nothing to a file" \
    "grep -q 'through the GGUF converter' '$T/derr' && grep -q '^plan: ' '$T/derr' && ! grep -q 'converting' '$T/derr'"
same "tiny --target-size 700K" "$T/tiny" --target-size 700K
# (an importance matrix with the planner is also the tiny-llama3 --imatrix-calib check below)
if [ "${LMP_SLOW:-0}" = 1 ]; then
    same "tiny --target-bpw 4.5 --imatrix FILE" "$T/tiny" --target-bpw 4.5 --imatrix "$T/tiny.dat"
else
    skip "tiny --target-bpw 4.5 --imatrix FILE (set LMP_SLOW=1)"
fi
same "tiny --target-bpw 4 calibrated, refined" "$T/tiny" --target-bpw 4 --target-calib "$CAL" --target-probes 1 \
    --target-refine 1
check "calibrated: probes and refinement ran" "grep -q 'end-to-end probes' '$T/derr' && grep -q 'in context' '$T/derr'"
same "tiny-llama3 --target-bpw 3.5" "$T/tiny-llama3" --target-bpw 3.5
same "tiny-llama3 --target-bpw 4 --imatrix-calib (calibrated by it)" "$T/tiny-llama3" --target-bpw 4 \
    --imatrix-calib "$CAL" --calib-samples 4 --calib-seqlen 64 --target-probes 1
same "tiny-qwen2 --target-bpw 5 calibrated (biases)" "$T/tiny-qwen2" --target-bpw 5 --target-calib "$CAL" \
    --target-probes 1 --target-refine 0
"$LMP_BIN" quantize "$T/tiny-llama3" --target-bpw 3 --dry-run --json > "$T/pd.json" 2> /dev/null
"$LMP_BIN" quantize "$T/tiny-llama3.gguf" --target-bpw 3 --dry-run --json > "$T/pg.json" 2> /dev/null
check "dry run: the folder's plan = the GGUF's (every tensor, type and error)" "$PY -c \"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
k = ('bytes', 'params', 'predicted_err', 'min_bytes', 'max_bytes', 'fixed_bytes', 'tensors')
sys.exit(0 if a['tensors'] and all(a[x] == b[x] for x in k) else 1)\" '$T/pd.json' '$T/pg.json'"
"$LMP_BIN" quantize "$T/tiny-phi3" --target-bpw 5 --dry-run --json --target-calib "$CAL" --target-probes 1 \
    --target-refine 0 > "$T/pd.json" 2> /dev/null
"$LMP_BIN" quantize "$T/tiny-phi3.gguf" --target-bpw 5 --dry-run --json --target-calib "$CAL" --target-probes 1 \
    --target-refine 0 > "$T/pg.json" 2> /dev/null
check "phi3 calibrated dry run (fused ffn_up not probed): the folder's plan = the GGUF's" "$PY -c \"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
k = ('bytes', 'predicted_err', 'calibrated', 'probes', 'tensors')
sys.exit(0 if a['calibrated'] and all(a[x] == b[x] for x in k) else 1)\" '$T/pd.json' '$T/pg.json'"
ok "json from the folder" "$LMP_BIN" quantize "$T/tiny" -o "$T/pj.gguf" --target-bpw 4 --json
check "json: no conversion time, the target kept" \
    "grep -q '\"convert_seconds\": 0.0000' '$T/out' && $PY -c \"import json,sys; d=json.load(open('$T/out')); sys.exit(0 if 8 * d['bytes_out'] <= 4 * d['parameters'] else 1)\""
check "no temporary GGUF beside the output" "[ -s '$T/pj.gguf' ] && ! ls -a '$T' | grep -q 'tmp'"

# ---- bad input: the file named, non-zero exit, nothing written
B=$T/bad
cp -r "$T/tiny" "$B-trunc"
sz=$(wc -c < "$B-trunc/model.safetensors")
head -c $((sz - 1000)) "$T/tiny/model.safetensors" > "$B-trunc/model.safetensors"
refuses "truncated shard" "model.safetensors" "$LMP_BIN" quantize "$B-trunc" -o "$T/b1.gguf" --type q4_k_m
check "truncated shard: nothing written" "[ -z \"\$(ls '$T' | grep '^b1')\" ]"
# a missing tensor, and NaN in a permuted (q_proj) and in an unchanged (down_proj) tensor
$PY - "$T/tiny/model.safetensors" "$B" <<'EOF'
import json, os, shutil, struct, sys
src, out = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head, data = json.loads(raw[8:8 + n]), raw[8 + n:]
def write(folder, h, d):
    shutil.copytree(os.path.dirname(src), folder)
    hs = json.dumps(h).encode()
    hs += b" " * ((8 - len(hs) % 8) % 8)
    open(os.path.join(folder, "model.safetensors"), "wb").write(struct.pack("<Q", len(hs)) + hs + d)
# drop a tensor and pack the others
h, d = {}, b""
for k, v in sorted(((k, v) for k, v in head.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]):
    if k == "model.layers.1.mlp.down_proj.weight":
        continue
    s, e = v["data_offsets"]
    h[k] = dict(v, data_offsets=[len(d), len(d) + e - s])
    d += data[s:e]
write(out + "-missing", h, d)
for t in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
    s = head[t]["data_offsets"][0] + 2 * 37
    b = bytearray(data)
    b[s:s + 2] = b"\xc0\x7f"  # bf16 NaN
    write(out + "-nan-" + t.split(".")[3], head, bytes(b))
EOF
refuses "missing tensor" "down_proj.weight is missing" "$LMP_BIN" quantize "$B-missing" -o "$T/b2.gguf" --type q4_k_m
refuses "NaN in a permuted tensor" "$B-nan-self_attn: tensor model.layers.0.self_attn.q_proj.weight row 0 column 37" \
    "$LMP_BIN" quantize "$B-nan-self_attn" -o "$T/b3.gguf" --type q4_k_m
refuses "NaN in an unchanged tensor" "$B-nan-mlp: tensor model.layers.1.mlp.down_proj.weight row 0 column 37" \
    "$LMP_BIN" quantize "$B-nan-mlp" -o "$T/b4.gguf" --type q8_0
check "bad input: nothing written" "[ -z \"\$(ls '$T' | grep '^b[234]')\" ]"
# planned from bad folders: a shard missing, a truncated one, a target out of reach
"$LMP_BIN" synth --preset tiny --dtype bf16 --shard-mb 1 -o "$B-shards" > /dev/null 2>&1
shard=$(ls "$B-shards" | grep -- '-of-' | tail -n 1)
rm -f "$B-shards/$shard"
check "a sharded folder (one shard removed)" "[ -n '$shard' ] && [ -s '$B-shards/model.safetensors.index.json' ]"
refuses "planned: a missing shard" "$shard" "$LMP_BIN" quantize "$B-shards" -o "$T/b5.gguf" --target-bpw 4
refuses "planned: a truncated shard" "model.safetensors" "$LMP_BIN" quantize "$B-trunc" -o "$T/b6.gguf" --target-bpw 4
refuses "planned: NaN in a permuted tensor" "q_proj.weight row 0 column 37" "$LMP_BIN" quantize "$B-nan-self_attn" \
    -o "$T/b7.gguf" --target-bpw 4
refuses "planned: a target below the cheapest plan" "$T/tiny: .*achievable" "$LMP_BIN" quantize "$T/tiny" \
    -o "$T/b8.gguf" --target-bpw 1.5
refuses "planned: a bad size" "target-size" "$LMP_BIN" quantize "$T/tiny" -o "$T/b9.gguf" --target-size 12Q
check "planned bad input: nothing written, no temporary left" "[ -z \"\$(ls '$T' | grep '^b[5-9]')\" ]"

# ---- under mpirun: rank 0 alone reads the folder and writes, the others wait for it
if command -v mpirun > /dev/null 2>&1 && [ -z "$LMP_NO_MPI" ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    MPI="mpirun --oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none -np 2"
    "$LMP_BIN" quantize "$T/tiny-mixtral.gguf" -o "$T/mix.gguf" --type q4_k_m > /dev/null 2>&1
    ok "mpirun -np 2 from the folder" env OMP_NUM_THREADS=1 $MPI "$LMP_BIN" quantize "$T/tiny-mixtral" \
        -o "$T/mpi.gguf" --type q4_k_m
    check "mpirun: the same bytes, reported once" "cmp -s '$T/mpi.gguf' '$T/mix.gguf' && [ \$(grep -c '^wrote ' '$T/out') = 1 ]"
    refuses "mpirun: a truncated shard" "model.safetensors" env OMP_NUM_THREADS=1 $MPI "$LMP_BIN" quantize "$B-trunc" \
        -o "$T/mpib.gguf" --type q4_k_m
    check "mpirun: nothing written" "[ ! -e '$T/mpib.gguf' ]"
else
    skip "mpirun not found (or LMP_NO_MPI set)"
fi
finish
