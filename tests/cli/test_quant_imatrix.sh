#!/bin/sh
# lmpress quantize --imatrix FILE (llama.cpp imatrix files) and --imatrix-out, and the
# thread-count / SIMD independence of the GGUF k-quant output:
# - --imatrix-calib ... --imatrix-out FILE writes a legacy .dat; --imatrix FILE then gives
#   the same tensors as the calibration run (8 chunks: the stored E[x^2] * 8 / 8 is exact)
#   and the quantize.imatrix.* keys of llama-quantize;
# - with LLAMA_BIN (a local llama.cpp build/bin): llama-quantize --imatrix FILE and lmpress
#   --imatrix FILE give byte-identical tensors for q4_k_m, q4_0, q3_k_m and q2_k;
# - broken and conflicting inputs are refused with a message;
# - q4_k_m, q6_k and q2_k with 1, 2 and 3 threads and with the scalar searches
#   (LMP_QUANT_SCALAR=1) give the same file.
. tests/cli/lib.sh
M="$LMP_FIXTURES/models/gutenberg-5M"
TXT="$LMP_FIXTURES/text/wiki.test.raw"
ok "synth tiny" "$LMP_BIN" synth --preset tiny -o "$T/m" --seed 5
ok "convert tiny to GGUF" "$LMP_BIN" convert "$T/m" -o "$T/m.gguf"

# threads and SIMD: one file whatever the thread count or search implementation
for ty in q4_k_m q6_k q2_k; do
    OMP_NUM_THREADS=1 "$LMP_BIN" quantize "$T/m.gguf" -o "$T/t1-$ty.gguf" --type $ty -t 1 >/dev/null 2>&1
    "$LMP_BIN" quantize "$T/m.gguf" -o "$T/t2-$ty.gguf" --type $ty -t 2 >/dev/null 2>&1
    "$LMP_BIN" quantize "$T/m.gguf" -o "$T/t3-$ty.gguf" --type $ty -t 3 >/dev/null 2>&1
    LMP_QUANT_SCALAR=1 "$LMP_BIN" quantize "$T/m.gguf" -o "$T/sc-$ty.gguf" --type $ty -t 2 >/dev/null 2>&1
    check "$ty: 2 threads = 1 thread" "[ -s '$T/t1-$ty.gguf' ] && cmp -s '$T/t1-$ty.gguf' '$T/t2-$ty.gguf'"
    check "$ty: 3 threads = 1 thread" "cmp -s '$T/t1-$ty.gguf' '$T/t3-$ty.gguf'"
    check "$ty: scalar searches = SIMD" "cmp -s '$T/t1-$ty.gguf' '$T/sc-$ty.gguf'"
done

if [ ! -d "$M" ] || [ ! -f "$TXT" ]; then
    skip "fixtures gutenberg-5M / wiki.test.raw absent"
    finish; exit $?
fi
ok "convert gutenberg-5M" "$LMP_BIN" convert "$M" -o "$T/g.gguf"
ok "imatrix from calibration, saved" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/cal.gguf" --type q4_k_m \
    --imatrix-calib "$TXT" --calib-samples 8 --calib-seqlen 128 --imatrix-out "$T/im.dat"
check "imatrix file written" "[ -s '$T/im.dat' ]"
ok "quantize with --imatrix" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/file.gguf" --type q4_k_m --imatrix "$T/im.dat"
kv_of() { "$LMP_BIN" inspect "$1" 2>/dev/null | awk -v k="$2" '$1 == k {print $2; exit}'; }
check "entries_count 42" "[ \"\$(kv_of $T/file.gguf quantize.imatrix.entries_count)\" = 42 ]"
check "chunks_count 8" "[ \"\$(kv_of $T/file.gguf quantize.imatrix.chunks_count)\" = 8 ]"
ok "unweighted" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/plain.gguf" --type q4_k_m
if command -v "$PY" >/dev/null 2>&1; then
    check "--imatrix FILE = --imatrix-calib tensors" \
        "'$PY' tests/bench/gguf_tensor_cmp.py '$T/cal.gguf' '$T/file.gguf' > '$T/cmp.txt'"
    check "and the weights change the output" \
        "! '$PY' tests/bench/gguf_tensor_cmp.py '$T/plain.gguf' '$T/file.gguf' > /dev/null"
else
    skip "python3 absent: tensor comparisons"
fi
if [ -n "${LLAMA_BIN:-}" ] && [ -x "$LLAMA_BIN/llama-quantize" ] && command -v "$PY" >/dev/null 2>&1; then
    for ty in q4_k_m q4_0 q3_k_m q2_k; do
        "$LLAMA_BIN/llama-quantize" --imatrix "$T/im.dat" "$T/g.gguf" "$T/ll-$ty.gguf" "$ty" 1 >/dev/null 2>&1
        "$LMP_BIN" quantize "$T/g.gguf" -o "$T/lm-$ty.gguf" --type $ty --imatrix "$T/im.dat" >/dev/null 2>&1
        check "llama-quantize --imatrix = lmpress --imatrix ($ty)" \
            "'$PY' tests/bench/gguf_tensor_cmp.py '$T/ll-$ty.gguf' '$T/lm-$ty.gguf' > '$T/cmp-$ty.txt'"
    done
else
    skip "LLAMA_BIN not set: no comparison with llama-quantize --imatrix"
fi

printf 'GGUF' > "$T/bad.gguf"
refuses "GGUF that is not an imatrix" "bad.gguf" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/x.gguf" --type q4_k_m \
    --imatrix "$T/bad.gguf"
head -c 1000 "$T/im.dat" > "$T/trunc.dat"
refuses "truncated imatrix" "trunc.dat" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/x.gguf" --type q4_k_m \
    --imatrix "$T/trunc.dat"
refuses "missing imatrix" "none.dat" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/x.gguf" --type q4_k_m \
    --imatrix "$T/none.dat"
check "no output after a refused imatrix" "[ ! -e '$T/x.gguf' ]"
refuses "--imatrix with --imatrix-calib" "conflict" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/x.gguf" --type q4_k_m \
    --imatrix "$T/im.dat" --imatrix-calib "$TXT"
refuses "--imatrix-out without --imatrix-calib" "imatrix-calib" "$LMP_BIN" quantize "$T/g.gguf" -o "$T/x.gguf" \
    --type q4_k_m --imatrix-out "$T/o.dat"
refuses "--imatrix with --method" "do not mix" "$LMP_BIN" quantize "$M" -o "$T/x" --method rtn --imatrix "$T/im.dat"
finish
