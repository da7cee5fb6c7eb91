#!/bin/sh
# Deliberately broken safetensors, GGUF and config.json inputs through `lmpress inspect`
# and `lmpress convert`: each must be refused with a message naming the file and the
# defect, a non-zero exit, and no output file left behind.
. tests/cli/lib.sh
B="$T/broken"; mkdir -p "$B"
$PY - "$B" <<'PYEOF'
import json, struct, sys, os
d = sys.argv[1]
def st(name, header, data, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    h += b' ' * ((8 - (8 + len(h)) % 8) % 8)
    open(os.path.join(d, name), 'wb').write(struct.pack('<Q', len(h)) + h + data)
ok = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
st("st_ok.safetensors", ok, b'\0' * 16)
good = open(os.path.join(d, "st_ok.safetensors"), 'rb').read()
open(os.path.join(d, "st_truncated.safetensors"), 'wb').write(good[:-5])
open(os.path.join(d, "st_header_past_eof.safetensors"), 'wb').write(struct.pack('<Q', 10**6) + b'{}')
open(os.path.join(d, "st_header_cap.safetensors"), 'wb').write(struct.pack('<Q', 2**40) + b'{}' + b' ' * 6)
st("st_overlap.safetensors", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b'\0' * 12)
st("st_shape_mismatch.safetensors", {"a": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 16]}}, b'\0' * 16)
st("st_unknown_dtype.safetensors", {"a": {"dtype": "Q9", "shape": [4], "data_offsets": [0, 16]}}, b'\0' * 16)
st("st_duplicate.safetensors", None, b'\0' * 32, raw_header=b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}')
st("st_not_object.safetensors", None, b'', raw_header=b'[1,2,3]')
st("st_hole.safetensors", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                           "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, b'\0' * 12)
# sharded checkpoint with a missing shard
os.makedirs(os.path.join(d, "sharded"), exist_ok=True)
json.dump({"metadata": {"total_size": 32}, "weight_map": {"a": "model-00001-of-00002.safetensors",
           "b": "model-00002-of-00002.safetensors"}}, open(os.path.join(d, "sharded", "model.safetensors.index.json"), "w"))
st("sharded/model-00001-of-00002.safetensors", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b'\0' * 16)
# GGUF
def gs(s): b = s.encode(); return struct.pack('<Q', len(b)) + b
def gguf(name, body, version=3, nt=0, nkv=0, magic=b'GGUF'):
    open(os.path.join(d, name), 'wb').write(magic + struct.pack('<IQQ', version, nt, nkv) + body)
gguf("gg_bad_magic.gguf", b'', magic=b'GGUX')
gguf("gg_version.gguf", b'', version=7)
gguf("gg_huge_count.gguf", b'', nkv=2**60)
gguf("gg_string_past_eof.gguf", struct.pack('<Q', 2**40) + b'abc', nkv=1)
gguf("gg_unknown_type.gguf", gs("k") + struct.pack('<I', 99) + b'\0' * 8, nkv=1)
ti = gs("w") + struct.pack('<I', 1) + struct.pack('<Q', 1 << 20) + struct.pack('<I', 0) + struct.pack('<Q', 0)
body = ti + b'\0' * ((32 - (24 + len(ti)) % 32) % 32) + b'\0' * 64
gguf("gg_tensor_past_eof.gguf", body, nt=1)
ti2 = gs("w") + struct.pack('<I', 1) + struct.pack('<Q', 8) + struct.pack('<I', 0) + struct.pack('<Q', 0)
ti3 = gs("v") + struct.pack('<I', 1) + struct.pack('<Q', 8) + struct.pack('<I', 0) + struct.pack('<Q', 0)
body = ti2 + ti3
body += b'\0' * ((32 - (24 + len(body)) % 32) % 32) + b'\0' * 64
gguf("gg_overlap.gguf", body, nt=2)
open(os.path.join(d, "gg_truncated.gguf"), 'wb').write(b'GGUF' + struct.pack('<I', 3) + b'\0' * 5)
# config.json
def model(name, cfg):
    p = os.path.join(d, name); os.makedirs(p, exist_ok=True)
    json.dump(cfg, open(os.path.join(p, "config.json"), "w"))
    open(os.path.join(p, "model.safetensors"), "wb").write(good)
base = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
        "num_attention_heads": 4, "vocab_size": 32}
model("cfg_non_numeric", dict(base, hidden_size="sixty-four"))
model("cfg_unknown_type", dict(base, model_type="gpt_neox"))
model("cfg_missing_key", {k: v for k, v in base.items() if k != "num_hidden_layers"})
p = os.path.join(d, "cfg_invalid_json"); os.makedirs(p, exist_ok=True)
open(os.path.join(p, "config.json"), "w").write('{"model_type": "llama", ')
open(os.path.join(p, "model.safetensors"), "wb").write(good)
PYEOF

# name | file | word expected in the message (the defect)
while IFS='|' read -r file word; do
    [ -z "$file" ] && continue
    refuses "inspect $file" "$file" "$LMP_BIN" inspect "$B/$file"
    refuses "inspect $file names the defect" "$word" "$LMP_BIN" inspect "$B/$file"
    refuses "convert $file" "$file" "$LMP_BIN" convert "$B/$file" -o "$T/out-$file.gguf"
    check "no output for $file" "! ls '$T' | grep -q 'out-$file'"
done <<'LIST'
st_truncated.safetensors|bound
st_header_past_eof.safetensors|header
st_header_cap.safetensors|header
st_overlap.safetensors|overlap
st_shape_mismatch.safetensors|shape
st_unknown_dtype.safetensors|Q9
st_duplicate.safetensors|duplicate
st_not_object.safetensors|object
st_hole.safetensors|hole
sharded|model-00002-of-00002.safetensors
gg_bad_magic.gguf|magic
gg_version.gguf|version
gg_huge_count.gguf|count
gg_string_past_eof.gguf|string
gg_unknown_type.gguf|type
gg_tensor_past_eof.gguf|bound
gg_overlap.gguf|overlap
gg_truncated.gguf|truncated
LIST
# config.json defects: convert refuses (inspect is lenient about configs by design)
refuses "non-numeric hyper-parameter" "hidden_size" "$LMP_BIN" convert "$B/cfg_non_numeric" -o "$T/c1.gguf"
refuses "unknown model_type" "gpt_neox" "$LMP_BIN" convert "$B/cfg_unknown_type" -o "$T/c2.gguf"
refuses "missing key" "num_hidden_layers" "$LMP_BIN" convert "$B/cfg_missing_key" -o "$T/c3.gguf"
refuses "invalid JSON" "cfg_invalid_json" "$LMP_BIN" convert "$B/cfg_invalid_json" -o "$T/c4.gguf"
check "no config outputs" "! ls '$T' | grep -q '^c[0-9]'"
refuses "missing input" "nope" "$LMP_BIN" inspect "$B/nope"
finish
