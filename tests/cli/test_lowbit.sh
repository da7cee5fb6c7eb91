#!/bin/sh
# lmpress quantize with the low-bit GGUF types (issue 21): every --type of the IQ4, IQ3,
# IQ2, IQ1, ternary, Q1_0/Q2_0 and MXFP4 families writes a file the engine runs; the types
# that need an importance matrix refuse to run without one, and an importance matrix of
# another model (other row lengths) is refused, nothing written; the output does not
# depend on the thread count. With LLAMA_BIN (a local llama.cpp build/bin): llama-quantize
# writes the same tensors for the same input and imatrix.
. tests/cli/lib.sh
TXT="$LMP_FIXTURES/text/wiki.test.raw"
ok "synth tiny" "$LMP_BIN" synth --preset tiny -o "$T/m" --seed 7
ok "convert tiny to GGUF" "$LMP_BIN" convert "$T/m" -o "$T/m.gguf"
head -c 30000 "$TXT" > "$T/cal.txt" 2>/dev/null || printf 'the quick brown fox jumps over the lazy dog. %.0s' $(seq 1 200) > "$T/cal.txt"
ok "imatrix of tiny" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/q.gguf" --type q4_k_m --imatrix-calib "$T/cal.txt" \
    --calib-samples 2 --calib-seqlen 32 --imatrix-out "$T/tiny.dat"

for ty in iq4_xs iq4_nl iq3_s iq3_m tq2_0 tq1_0 q2_0 q1_0 mxfp4_moe; do
    ok "$ty without imatrix" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/$ty.gguf" --type $ty
done
for ty in iq3_xs iq3_xxs iq2_m iq2_s iq2_xs iq2_xxs iq1_m iq1_s; do
    refuses "$ty needs an imatrix" "importance matrix" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/no-$ty.gguf" --type $ty
    check "$ty: nothing written" "[ ! -e '$T/no-$ty.gguf' ]"
done
for ty in iq3_xxs iq2_xs iq1_s; do # one per lattice family (each builds its neighbour lists)
    ok "$ty with imatrix" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/$ty.gguf" --type $ty --imatrix "$T/tiny.dat"
done
kv_count() { "$LMP_BIN" inspect "$1" 2>/dev/null | awk -v t="$2" '$2 == t' | wc -l; }
check "iq3_m: attn_v and attn_output in q4_K (2 layers)" "[ \$(kv_count '$T/iq3_m.gguf' q4_k) -ge 4 ]"
check "iq2_xs: output in q5_K" "\"$LMP_BIN\" inspect '$T/iq2_xs.gguf' 2>/dev/null | grep -E '^(output|token_embd)\\.weight' | grep -q q5_k"
ok "--tensor-type with an IQ type" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/tt.gguf" --type q8_0 \
    --tensor-type 'ffn_(up|gate)=iq4_xs' --tensor-type 'attn_.*=mxfp4'
check "tensor types applied" "[ \$(kv_count '$T/tt.gguf' iq4_xs) -ge 2 ] && [ \$(kv_count '$T/tt.gguf' mxfp4) -ge 2 ]"

# threads: the same bytes
for ty in iq3_s; do
    im=""
    OMP_NUM_THREADS=1 "$LMP_BIN" quantize "$T/m.gguf" -o "$T/t1-$ty.gguf" --type $ty $im -t 1 >/dev/null 2>&1
    "$LMP_BIN" quantize "$T/m.gguf" -o "$T/t3-$ty.gguf" --type $ty $im -t 3 >/dev/null 2>&1
    check "$ty: 3 threads = 1 thread" "[ -s '$T/t1-$ty.gguf' ] && cmp -s '$T/t1-$ty.gguf' '$T/t3-$ty.gguf'"
done

# an imatrix whose names match none of the tensors (another architecture's naming)
if command -v "$PY" >/dev/null 2>&1; then
    "$PY" -c "
import struct
names = ['model.layers.%d.self_attn.q_proj' % i for i in range(2)]
with open('$T/names.dat', 'wb') as f:
    f.write(struct.pack('<i', len(names)))
    for n in names:
        f.write(struct.pack('<i', len(n)) + n.encode() + struct.pack('<ii', 1, 256) + struct.pack('<256f', *([1.0] * 256)))
    f.write(struct.pack('<ii', 1, 0))
"
    refuses "imatrix with other names" "matches none" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/names.gguf" --type iq4_xs \
        --imatrix "$T/names.dat"
    check "other names: nothing written" "[ ! -e '$T/names.gguf' ]"
    refuses "other names, type needing an imatrix" "no entry" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/names2.gguf" \
        --type iq2_xxs --imatrix "$T/names.dat"
else
    skip "python3 absent: imatrix with other names"
fi

# an imatrix of another model: gutenberg-5M's ffn_down rows are 768, tiny's 512
M="$LMP_FIXTURES/models/gutenberg-5M"
if [ -d "$M" ] && [ -f "$TXT" ]; then
    ok "convert gutenberg-5M" "$LMP_BIN" convert "$M" -o "$T/g.gguf"
    for ty in iq4_xs iq2_xxs; do
        refuses "$ty with another model's imatrix" "another model" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/bad-$ty.gguf" \
            --type $ty --imatrix "$T/tiny.dat"
        check "$ty: nothing written" "[ ! -e '$T/bad-$ty.gguf' ]"
    done
    ok "gutenberg iq4_xs" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/g-iq4_xs.gguf" --type iq4_xs
    ok "ppl on iq4_xs" "$LMP_BIN" ppl "$T/g-iq4_xs.gguf" -f "$TXT" --protocol llamacpp --ctx 128 --chunks 2 --json
    check "ppl finite and near f32's (21 on 20 windows of 512)" \
        "'$PY' -c \"import json,sys; d=json.load(open('$T/out')); sys.exit(0 if 5 < d['ppl'] < 80 else 1)\""
else
    skip "fixtures gutenberg-5M / wiki.test.raw absent"
fi

if [ -n "${LLAMA_BIN:-}" ] && [ -x "$LLAMA_BIN/llama-quantize" ] && command -v "$PY" >/dev/null 2>&1; then
    for ty in IQ4_XS IQ3_S IQ2_XS IQ1_M TQ1_0; do
        lt=$(echo $ty | tr 'A-Z' 'a-z')
        "$LLAMA_BIN/llama-quantize" --imatrix "$T/tiny.dat" "$T/m.gguf" "$T/ll-$lt.gguf" $ty 2 >/dev/null 2>&1
        "$LMP_BIN" quantize "$T/m.gguf" -o "$T/lm-$lt.gguf" --type $lt --imatrix "$T/tiny.dat" >/dev/null 2>&1
        check "$ty: llama-quantize's tensors" "'$PY' tests/bench/gguf_tensor_cmp.py '$T/lm-$lt.gguf' '$T/ll-$lt.gguf' > /dev/null"
    done
else
    skip "LLAMA_BIN not set: llama-quantize comparisons"
fi
finish
