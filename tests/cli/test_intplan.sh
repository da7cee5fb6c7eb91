#!/bin/sh
# lmpress quantize --method rtn|gptq --target-bpw / --target-size (issue 21, integer-group
# size target) on gutenberg-5M, RTN without calibration (weight errors) to stay small:
# --help documents it, a dry run prints the plan and writes nothing, --json plan within the
# budget, GPTQ folder with GPTQModel "dynamic" (config.json and quantize_config.json) and a
# compressed-tensors folder with several config_groups, both loaded by ppl; a folder whose
# "dynamic" leaves a linear unquantized ("-:") with its dense weight loads, without it is
# refused naming the module; refused: targets below / above the achievable range (nothing
# written), AWQ GEMM format, --keep with a target, bad candidate lists and sizes; GPTQ with
# calibration text: the units' errors calibrated against KLD probes (and not with
# --target-kld-probes 0).
. tests/cli/lib.sh
M=$LMP_FIXTURES/models/gutenberg-5M
TXT=$LMP_FIXTURES/text/wiki.test.raw
if [ ! -d "$M" ] || [ ! -f "$TXT" ]; then
    skip "fixtures gutenberg-5M / wiki.test.raw not found at $LMP_FIXTURES"
    finish; exit $?
fi
CAND="--target-bits 3,4 --target-groups 64,128"
Q="$LMP_BIN quantize $M --method rtn $CAND"

ok "help" "$LMP_BIN" quantize --help
check "help: --target-bpw for integer groups" "grep -q 'bits per weight of the packed linears' '$T/out' && grep -q -- '--target-groups' '$T/out'"

ok "dry run" $Q --target-bpw 3.6 --dry-run -o "$T/dry"
check "dry run: table" "grep -q 'model.layers.5.mlp.down_proj' '$T/out' && grep -q '^plan: ' '$T/out' && grep -q 'uniform 4-bit group 128' '$T/out'"
check "dry run: nothing written" "[ ! -e '$T/dry' ]"
ok "dry run json, no -o" $Q --target-bpw 3.6 --dry-run --json
cp "$T/out" "$T/plan.json"
check "json plan within the budget, 24 units, 3 and 4 bits" "$PY -c '
import json, sys
j = json.load(open(\"$T/plan.json\"))
b = [u[\"bits\"] for u in j[\"units\"]]
ok = j[\"linear_bytes\"] <= j[\"budget\"] == int(3.6 * j[\"linear_params\"] / 8) and len(j[\"units\"]) == 24 and set(b) == {3, 4}
ok = ok and j[\"calibrated\"] is False and sum(u[\"bytes\"] for u in j[\"units\"]) == j[\"linear_bytes\"]
sys.exit(0 if ok else 1)'"

ok "gptq folder" $Q --target-bpw 3.6 -o "$T/g" --json
cp "$T/out" "$T/g.json"
check "gptq: dynamic in config.json and quantize_config.json, packed bytes = plan" "$PY -c '
import json, sys
c = json.load(open(\"$T/g/config.json\"))[\"quantization_config\"]
q = json.load(open(\"$T/g/quantize_config.json\"))
j = json.load(open(\"$T/g.json\"))
d = c[\"dynamic\"]
ok = len(d) > 0 and d == q[\"dynamic\"] and all(k.startswith(\"+:model\\\\.layers\\\\.\") for k in d)
ok = ok and all(v[\"bits\"] != c[\"bits\"] or v[\"group_size\"] != c[\"group_size\"] for v in d.values())
ok = ok and j[\"quantized_bytes\"] == j[\"plan\"][\"linear_bytes\"] and j[\"plan\"][\"linear_bytes\"] <= j[\"plan\"][\"budget\"]
sys.exit(0 if ok else 1)'"
check "gptq: python re resolves every linear to its packed width" "$PY -c '
import json, re, struct, sys
d = \"$T/g\"
c = json.load(open(d + \"/config.json\"))[\"quantization_config\"]
b = open(d + \"/model.safetensors\", \"rb\").read(1 << 20)
h = json.loads(b[8:8 + struct.unpack(\"<Q\", b[:8])[0]])
bad = 0
for k, v in h.items():
    if not k.endswith(\".qweight\"):
        continue
    name = k[:-8]
    bits = c[\"bits\"]
    for pat, o in c[\"dynamic\"].items():
        if re.match(pat[2:], name):
            bits = o.get(\"bits\", bits)
            break
    cols = h[name + \".g_idx\"][\"shape\"][0]
    bad += v[\"shape\"][0] * 32 != cols * bits
sys.exit(0 if bad == 0 else 1)'"
ok "gptq folder loads (ppl)" "$LMP_BIN" ppl "$T/g" -f "$TXT" --ctx 64 --chunks 2

ok "compressed-tensors folder" $Q --target-bpw 3.6 -o "$T/ct" --format compressed-tensors
check "ct: several config_groups with exact names" "$PY -c '
import json, sys
c = json.load(open(\"$T/ct/config.json\"))[\"quantization_config\"]
g = c[\"config_groups\"]
names = [t for x in g.values() for t in x[\"targets\"]]
sys.exit(0 if len(g) >= 2 and len(names) == 42 == len(set(names)) and \"Linear\" not in names else 1)'"
ok "ct folder loads (ppl)" "$LMP_BIN" ppl "$T/ct" -f "$TXT" --ctx 64 --chunks 2

# a GPTQModel-style skip: layer 0's q_proj dense with a "-:" rule
"$LMP_BIN" quantize "$M" --method rtn --bits 4 -o "$T/u" > /dev/null 2>&1
$PY - "$M" "$T/u" "$T/skip" "$T/noweight" <<'PYEOF'
import json, os, shutil, struct, sys
src, u, out, out2 = sys.argv[1:]
def read(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h, b[8 + n:]
def write(p, tensors):
    h, off, blobs = {}, 0, []
    for k, (dt, shape, data) in tensors.items():
        h[k] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    j = json.dumps(h).encode()
    j += b' ' * ((8 - len(j) % 8) % 8)
    open(p, 'wb').write(struct.pack('<Q', len(j)) + j + b''.join(blobs))
hu, du = read(u + '/model.safetensors')
hs, ds = read(src + '/model.safetensors')
name = 'model.layers.0.self_attn.q_proj'
for o, dense in ((out, True), (out2, False)):
    shutil.copytree(u, o)
    t = {}
    for k, v in hu.items():
        if k == '__metadata__' or k.startswith(name + '.'):
            continue
        a, b = v['data_offsets']
        t[k] = (v['dtype'], v['shape'], du[a:b])
    if dense:
        v = hs[name + '.weight']
        a, b = v['data_offsets']
        t[name + '.weight'] = (v['dtype'], v['shape'], ds[a:b])
    write(o + '/model.safetensors', t)
    for f in ('config.json', 'quantize_config.json'):
        c = json.load(open(o + '/' + f))
        qc = c['quantization_config'] if f == 'config.json' else c
        qc['dynamic'] = {'-:model\\.layers\\.0\\.self_attn\\.q_proj$': {}}
        json.dump(c, open(o + '/' + f, 'w'))
PYEOF
ok "a -: module with its dense weight loads" "$LMP_BIN" ppl "$T/skip" -f "$TXT" --ctx 64 --chunks 2
refuses "a -: module without a weight" "model.layers.0.self_attn.q_proj.weight is missing" \
    "$LMP_BIN" ppl "$T/noweight" -f "$TXT" --ctx 64 --chunks 2

refuses "below the smallest size" "below the smallest achievable" $Q --target-bpw 2 -o "$T/bad1"
check "nothing written (below)" "[ ! -e '$T/bad1' ]"
refuses "above the largest size" "above the largest achievable" $Q --target-bpw 7 -o "$T/bad2"
check "nothing written (above)" "[ ! -e '$T/bad2' ]"
refuses "target size below" "below the smallest achievable" $Q --target-size 100K -o "$T/bad3"
check "nothing written (size)" "[ ! -e '$T/bad3' ]"
refuses "awq gemm format" "holds one bit width" $Q --target-bpw 3.6 --format awq -o "$T/bad4"
refuses "keep with a target" "--keep" $Q --target-bpw 3.6 --keep 'down_proj' -o "$T/bad5"
refuses "bad candidate width" "bit width 9" $Q --target-bpw 3.6 --target-bits 9 -o "$T/bad6"
refuses "width GPTQ cannot pack" "no candidate" $Q --target-bpw 3.6 --target-bits 5 -o "$T/bad6b"
refuses "bad candidate list" "comma list" $Q --target-bpw 3.6 --target-groups 64,x -o "$T/bad7"
refuses "bad size" "expected bytes" $Q --target-size lots -o "$T/bad8"
refuses "candidates without a target" "need --target-bpw" $Q -o "$T/bad9"
refuses "gptq without calibration" "calibration" "$LMP_BIN" quantize "$M" --method gptq --target-bpw 3.6 -o "$T/bad10"
refuses "bad --target-kld-probes" "target-kld-probes" $Q --target-bpw 3.6 --target-kld-probes 5 -o "$T/bad11"
check "nothing written (refusals)" "[ -z \"\$(ls '$T' | grep bad)\" ]"

# GPTQ with calibration text: the units' errors calibrated against KLD probes (2 per unit)
# (err is printed with 9 significant digits, so the sum is compared to 1e-7 relative)
ok "gptq dry run, KLD-calibrated" "$LMP_BIN" quantize "$M" --method gptq $CAND --target-bpw 3.6 --dry-run --json \
    --calib "$TXT" --calib-samples 4 --calib-seqlen 32
cp "$T/out" "$T/kld.json"
check "kld calibration: 48 probes on 4 x 32 tokens, within the budget, err = sum of the units'" "$PY -c '
import json, sys
j = json.load(open(\"$T/kld.json\"))
ok = j[\"kld_calibrated\"] is True and j[\"kld_probes\"] == 48 and j[\"kld_windows\"] == 4 and j[\"kld_seqlen\"] == 32
ok = ok and j[\"linear_bytes\"] <= j[\"budget\"] and abs(j[\"err\"] - sum(u[\"err\"] for u in j[\"units\"])) <= 1e-7 * j[\"err\"]
sys.exit(0 if ok else 1)'"
ok "gptq dry run, --target-kld-probes 0" "$LMP_BIN" quantize "$M" --method gptq $CAND --target-bpw 3.6 --dry-run --json \
    --calib "$TXT" --calib-samples 4 --calib-seqlen 32 --target-kld-probes 0
check "no KLD calibration with 0 probes" "$PY -c '
import json, sys
j = json.load(open(\"$T/out\"))
sys.exit(0 if j[\"kld_calibrated\"] is False and j[\"calibrated\"] is True else 1)'"
finish
