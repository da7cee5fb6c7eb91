#!/bin/sh
# Issue 18 item 11: --split-max-size writes llama.cpp's split layout (checked by parsing
# every file: keys, tensor order, bytes equal to the unsplit GGUF's; byte-identical to
# llama-gguf-split when that binary exists), and an Ollama Modelfile beside every GGUF
# written from a model with a chat template (ChatML, Llama 3, unknown).
. tests/cli/lib.sh
L=$LMP_BIN
"$L" synth --preset tiny -o "$T/m" --seed 2 >/dev/null 2>&1
cat > "$T/gguf.py" <<'PYEOF'
import struct, sys
def read(path):
    b = open(path, 'rb').read(); o = 0
    def u(fmt):
        nonlocal o; v = struct.unpack_from(fmt, b, o); o += struct.calcsize(fmt); return v[0]
    def s():
        n = u('<Q'); nonlocal o; v = b[o:o+n].decode(); o += n; return v
    sizes = {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
    fmts = {0:'<B',1:'<b',2:'<H',3:'<h',4:'<I',5:'<i',6:'<f',7:'<?',10:'<Q',11:'<q',12:'<d'}
    def val(t):
        nonlocal o
        if t == 8: return s()
        if t == 9:
            et = u('<I'); n = u('<Q'); return [val(et) for _ in range(n)]
        return u(fmts[t])
    assert b[:4] == b'GGUF'; o = 4; u('<I'); nt = u('<Q'); nkv = u('<Q')
    kv = {}
    for _ in range(nkv):
        k = s(); t = u('<I'); kv[k] = val(t)
    ts = []
    for _ in range(nt):
        name = s(); nd = u('<I'); dims = [u('<Q') for _ in range(nd)]; ty = u('<I'); off = u('<Q')
        ts.append((name, dims, ty, off))
    al = kv.get('general.alignment', 32); data = (o + al - 1) // al * al
    offs = [t[3] for t in ts] + [len(b) - data]
    blobs = {t[0]: b[data + t[3]: data + offs[i + 1]] for i, t in enumerate(ts)}
    return kv, ts, blobs
whole = read(sys.argv[1]); parts = [read(p) for p in sys.argv[2:]]
n = len(parts); names = []
for i, (kv, ts, blobs) in enumerate(parts):
    assert kv['split.no'] == i and kv['split.count'] == n and kv['split.tensors.count'] == len(whole[1]), kv
    assert (i == 0) == ('general.architecture' in kv), i
    names += [t[0] for t in ts]
    for t in ts:
        a = whole[2][t[0]]; c = blobs[t[0]]
        assert c[:len(a)] == a and not any(c[len(a):]), t[0]
assert names == [t[0] for t in whole[1]]
assert all(k in parts[0][0] and parts[0][0][k] == v for k, v in whole[0].items())
print(n)
PYEOF

ok "unsplit GGUF" "$L" convert "$T/m" -o "$T/w.gguf"
ok "convert --split-max-size" "$L" convert "$T/m" -o "$T/s.gguf" --split-max-size 1M
NS=$(ls "$T" | grep -c '^s-0.*\.gguf$')
check "several split files, no unsplit file left" "[ $NS -ge 3 ] && [ -f '$T/s-00001-of-0000$NS.gguf' ] && [ ! -e '$T/s.gguf' ]"
check "split layout: keys, order, bytes" "[ \"\$($PY '$T/gguf.py' '$T/w.gguf' '$T'/s-0*.gguf)\" = $NS ]"
refuses "split size garbage" "expected a size" "$L" convert "$T/m" -o "$T/x.gguf" --split-max-size lots
refuses "split of a folder output" "applies to GGUF" "$L" convert "$T/m" -o "$T/xdir" --split-max-size 1M
ok "quantize --split-max-size" "$L" quantize "$T/w.gguf" -o "$T/q.gguf" --type q8_0 --split-max-size 0.3M
check "quantize wrote several files" "[ \$(ls '$T' | grep -c '^q-0.*\.gguf$') -ge 2 ] && [ ! -e '$T/q.gguf' ]"
refuses "existing split refused" "exists" "$L" quantize "$T/w.gguf" -o "$T/q.gguf" --type q8_0 --split-max-size 0.3M
GS=${LLAMA_BIN:-/work/llamacpp/build/bin}/llama-gguf-split
if [ -x "$GS" ]; then
    (cd "$T" && "$GS" --split --split-max-size 1M w.gguf lc >/dev/null 2>&1)
    check "byte-identical to llama-gguf-split" "for f in \$(cd '$T' && ls s-0*.gguf); do cmp -s '$T/'\$f '$T/lc'\${f#s} || exit 1; done && [ \$(ls '$T' | grep -c '^lc-0') = $NS ]"
else
    skip "llama-gguf-split not built: byte comparison"
fi

# ---- Modelfile
check "no Modelfile without a chat template" "[ ! -e '$T/w.Modelfile' ]"
$PY - "$T/m/tokenizer_config.json" <<'PYEOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
d["chat_template"] = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
json.dump(d, open(p, "w"))
PYEOF
ok "convert ChatML model" "$L" convert "$T/m" -o "$T/c.gguf"
check "Modelfile beside the GGUF" "grep -q '^FROM ./c.gguf$' '$T/c.Modelfile'"
check "ChatML TEMPLATE" "grep -q '^TEMPLATE \"\"\"{{- if .System }}<|im_start|>system' '$T/c.Modelfile' && grep -q '<|im_start|>assistant' '$T/c.Modelfile'"
check "stop parameters" "grep -q '^PARAMETER stop \"<|im_end|>\"' '$T/c.Modelfile'"
ok "quantize keeps the Modelfile" "$L" quantize "$T/m" -o "$T/c4.gguf" --type q8_0 --split-max-size 0.5M
check "split: FROM the first file" "grep -q '^FROM ./c4-00001-of-' '$T/c4.Modelfile'"
$PY - "$T/m/tokenizer_config.json" <<'PYEOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
d["chat_template"] = [{"name": "default", "template": "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"}]
json.dump(d, open(p, "w"))
PYEOF
ok "prune to GGUF, Llama 3 template" "$L" prune "$T/m" -o "$T/l3.gguf" --method magnitude --sparsity 0.2 -t 1
check "Llama 3 TEMPLATE and stops" "grep -q 'start_header_id|>assistant<|end_header_id|>' '$T/l3.Modelfile' && grep -q 'PARAMETER stop \"<|eot_id|>\"' '$T/l3.Modelfile'"
$PY - "$T/m/tokenizer_config.json" <<'PYEOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["chat_template"] = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}{% endfor %}"
json.dump(d, open(p, "w"))
PYEOF
ok "unknown template" "$L" convert "$T/m" -o "$T/u.gguf"
check "unknown family said, no TEMPLATE" "grep -q 'add TEMPLATE and PARAMETER stop by hand' '$T/u.Modelfile' && ! grep -q '^TEMPLATE' '$T/u.Modelfile'"
check "stderr names it" "grep -q 'by hand' '$T/err'"
finish
