#!/bin/sh
# Quantized folders run natively by the engine (formats/qload.c, lib/infer/kernels_intgroup.c):
# RTN 4-bit g128 written as GPTQ v1, gptq_v2, compressed-tensors and AWQ gives the same
# perplexity to every digit under `lmpress ppl` (the folders hold the same weights in four
# packings, unpacked into one canonical form), `lmpress run` generates from a GPTQ folder,
# GPTQ 4-bit g128 act-order calibrated as tests/unit/test_calib.c does (16 x 128 tokens from
# bytes [100000, 400000) of wikitext2) gives the fake-quantized perplexity that test reports
# (20.070, windows protocol, first 20,000 bytes) within 1e-4 relative (skipped with
# LMP_QUICK), and a folder with a packed tensor renamed is refused naming it.
. tests/cli/lib.sh
M=$LMP_FIXTURES/models/gutenberg-5M
TXT=$LMP_FIXTURES/text/wikitext2-test.gptq-join.txt
if [ ! -d "$M" ] || [ ! -f "$TXT" ]; then
    skip "fixtures gutenberg-5M / wikitext2 text not found at $LMP_FIXTURES"
    finish; exit $?
fi
PPL="--protocol windows --max-bytes 20000 --strip-cr --json"
ppl_of() { "$LMP_BIN" ppl "$1" -f "$TXT" $PPL 2>/dev/null | $PY -c 'import json,sys; print("%.9f" % json.load(sys.stdin)["ppl"])'; }

for f in gptq gptq_v2 compressed-tensors awq; do
    ok "rtn -> $f" "$LMP_BIN" quantize "$M" -o "$T/r-$f" --method rtn --format "$f"
done
p1=$(ppl_of "$T/r-gptq")
check "gptq v1 folder runs (ppl $p1)" "[ -n '$p1' ]"
for f in gptq_v2 compressed-tensors awq; do
    p=$(ppl_of "$T/r-$f")
    check "$f: same perplexity as gptq ($p vs $p1)" "[ -n '$p' ] && [ '$p' = '$p1' ]"
done
p0=$(ppl_of "$M")
check "rtn 4-bit above f32 ($p1 vs $p0)" "$PY -c 'import sys; sys.exit(0 if $p0 < $p1 < $p0 * 1.1 else 1)'"
ok "run from a gptq folder" "$LMP_BIN" run "$T/r-gptq" -p "It was" -n 8
check "generated text" "[ -s '$T/out' ]"

# a packed tensor renamed (same length, so the header stays valid)
cp -r "$T/r-gptq" "$T/bad"
$PY - "$T/bad/model.safetensors" <<'PYEOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
old = b'model.layers.2.mlp.up_proj.qweight'; i = b.find(old); assert i > 0
b[i:i + len(old)] = b'model.layers.2.mlp.up_proj.qweighX'; open(p, 'wb').write(bytes(b))
PYEOF
refuses "missing qweight" "model.layers.2.mlp.up_proj.qweight" "$LMP_BIN" ppl "$T/bad" -f "$TXT" $PPL

if [ "${LMP_QUICK:-0}" = 0 ]; then
    head -c 400000 "$TXT" | tail -c 300000 > "$T/cal.txt"
    ok "gptq 4-bit g128 act-order" "$LMP_BIN" quantize "$M" -o "$T/g" --method gptq --calib "$T/cal.txt" \
        --calib-samples 16 --calib-seqlen 128
    pg=$(ppl_of "$T/g")
    check "native gptq perplexity $pg = 20.070 (fake-quantized, test_calib) within 1e-4" \
        "$PY -c 'import sys; sys.exit(0 if abs($pg - 20.070) <= 1e-4 * 20.070 else 1)'"
    echo "gptq 4-bit g128 native perplexity: $pg (fake-quantized: 20.070); rtn: $p1; f32: $p0"
else
    skip "GPTQ perplexity check (LMP_QUICK)"
fi
finish
