# usage: moe_struct_check.py ORIG PRUNED KIND OUT
# Structured pruning of an expert model (KIND heads, kv-heads or layers), checked without
# lmpress: the kept query heads are found from o_proj's columns (each pruned column block
# equals exactly one original block), the kept layers from the blocks' tensors; then every
# tensor of PRUNED must be the original's kept rows / columns (q/k/v rows, o_proj columns) or
# the original tensor unchanged (experts, routers, norms, embeddings), config.json's sizes
# and qwen3_moe's dense-layer list must follow. OUT receives ORIG with the removed parts
# zeroed instead of removed (o_proj columns of removed heads; for a removed layer o_proj and
# every FFN output matrix, so the block adds nothing to the residual): the engine must give
# OUT the same log-probs as PRUNED (tests/cli/test_moe.sh).
import glob, json, os, re, shutil, struct, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_util import load_f32 as load, kept_blocks


def save(d, tensors):
    hdr, off, blobs = {}, 0, []
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k], dtype=np.float32)
        hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


o, oc = load(sys.argv[1])
n, nc = load(sys.argv[2])
kind, out = sys.argv[3], sys.argv[4]
L0, L1 = oc["num_hidden_layers"], nc["num_hidden_layers"]
nh, nkv = oc["num_attention_heads"], oc["num_key_value_heads"]
hd = oc.get("head_dim") or oc["hidden_size"] // nh
z = {k: v.copy() for k, v in o.items()}
lay = re.compile(r"model\.layers\.(\d+)\.(.*)")
ffn_out = re.compile(r"(experts\.\d+\.w2|experts\.\d+\.down_proj|mlp\.down_proj|output_linear)\.weight$")
if kind == "layers":
    assert L1 < L0 and nc["num_attention_heads"] == nh
    # each new block is the original block whose every tensor it equals
    keep = []
    for i in range(L1):
        names = [k[len("model.layers.%d." % i):] for k in n if k.startswith("model.layers.%d." % i)]
        m = [l for l in range(L0) if all(("model.layers.%d.%s" % (l, s)) in o and
                                         np.array_equal(o["model.layers.%d.%s" % (l, s)], n["model.layers.%d.%s" % (i, s)])
                                         for s in names)]
        assert len(m) == 1, ("layer", i, m)
        keep.append(m[0])
    assert keep == sorted(keep) and len(keep) == L1, keep
    if "mlp_only_layers" in oc or "decoder_sparse_step" in oc:
        step = oc.get("decoder_sparse_step", 1)
        dense0 = [l for l in range(L0) if l in oc.get("mlp_only_layers", []) or (l + 1) % step != 0]
        dense1 = [i for i in range(L1) if i in nc.get("mlp_only_layers", []) or (i + 1) % nc.get("decoder_sparse_step", 1) != 0]
        assert dense1 == [i for i, l in enumerate(keep) if l in dense0], ("dense layers", dense0, dense1, keep)
    for k in z:
        mm = lay.match(k)
        if mm and int(mm.group(1)) not in keep and (mm.group(2) == "self_attn.o_proj.weight" or ffn_out.search(k)):
            z[k][...] = 0
    for k in n:
        mm = lay.match(k)
        assert mm is None or "model.layers.%d.%s" % (keep[int(mm.group(1))], mm.group(2)) in o, k
        if mm is None:
            assert np.array_equal(n[k], o[k]), k
else:
    assert L1 == L0
    g = nh // nkv
    for l in range(L0):
        p = "model.layers.%d.self_attn." % l
        H = kept_blocks(o[p + "o_proj.weight"], n[p + "o_proj.weight"], hd)
        assert len(H) == nc["num_attention_heads"] < nh
        if kind == "heads":
            K = list(range(nkv))
            assert all(sum(1 for h in H if h // g == k) == len(H) // nkv for k in K), H  # same count per group
        else:
            K = sorted(set(h // g for h in H))
            assert H == [k * g + j for k in K for j in range(g)] and len(K) == nc["num_key_value_heads"], (H, K)
        rows = lambda heads: [h * hd + j for h in heads for j in range(hd)]
        assert np.array_equal(n[p + "q_proj.weight"], o[p + "q_proj.weight"][rows(H)]), "q_proj"
        for t in ("k_proj", "v_proj"):
            assert np.array_equal(n[p + t + ".weight"], o[p + t + ".weight"][rows(K)]), t
        for t in list(n):
            if t.startswith(p) and "norm" in t:  # per-head q/k norms are head_dim wide: unchanged
                assert np.array_equal(n[t], o[t]), t
        cols = [c for c in range(nh * hd) if c // hd not in H]
        z[p + "o_proj.weight"][:, cols] = 0
    for k in n:
        if ".self_attn." not in k or "norm" in k:
            assert np.array_equal(n[k], o[k]), k + " changed"
os.makedirs(out, exist_ok=True)
save(out, z)
for f in os.listdir(sys.argv[1]):
    if not f.endswith(".safetensors"):
        shutil.copy(os.path.join(sys.argv[1], f), out)
print("ok", kind, "layers kept" if kind == "layers" else "heads per layer", L1 if kind == "layers" else nc["num_attention_heads"])
