# usage: ct_sparse_check.py DENSE COMPRESSED
# Decodes every X.compressed of a compressed-tensors sparse folder (sparse-bitmask or
# sparse-24-bitmask) from the layout alone (X.shape, X.bitmask little bit order, kept values
# in row-major order, X.row_offsets) and checks that it equals X.weight of the dense pruned
# folder; every other tensor must be stored unchanged. Prints the counts the tests grep:
# "ok FORMAT: N linears compressed, F fused, K 2-D weights dense (NAMES...)".
# Used by tests/cli/test_struct_fused.sh (phi3's fused tensors) and tests/cli/test_moe.sh.
import glob, json, os, struct, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_util import read_tensors as raw


d, c = raw(sys.argv[1]), raw(sys.argv[2])
qc = json.load(open(os.path.join(sys.argv[2], "config.json")))["quantization_config"]
assert qc["quant_method"] == "compressed-tensors", qc
sc = qc["sparsity_config"]
fmt = sc["format"]
done, fused = set(), 0
for k in c:
    if not k.endswith(".compressed"):
        continue
    p = k[:-len(".compressed")]
    rows, cols = [int(x) for x in c[p + ".shape"].reshape(-1)]
    bits = np.unpackbits(c[p + ".bitmask"], axis=1, bitorder="little")[:, :cols].astype(bool)
    w = np.zeros((rows, cols), c[k].dtype)
    w[bits] = c[k].reshape(-1)  # the kept positions in row-major order
    if fmt == "sparse-bitmask":
        assert c[p + ".shape"].shape == (2,), p
        offs = np.concatenate([[0], np.cumsum(bits.sum(1))[:-1]])
        assert np.array_equal(c[p + ".row_offsets"], offs), p + ": row_offsets"
    else:
        assert fmt == "sparse-24-bitmask" and sc["sparsity_structure"] == "2:4", sc
        assert c[p + ".shape"].shape == (2, 1) and c[k].shape == (rows, cols // 2), p
        assert (bits.reshape(rows, cols // 4, 4).sum(2) == 2).all(), p + ": 2 of every 4 in every row"
    assert np.array_equal(w, d[p + ".weight"]), p + ": decoded weights differ from the dense folder's"
    fused += p.endswith("qkv_proj") or p.endswith("gate_up_proj")
    done.add(p + ".weight")
for k in d:
    if k not in done:
        assert k in c and np.array_equal(c[k], d[k]), k + ": differs or missing"
dense2d = sorted(k for k in c if k.endswith(".weight") and c[k].ndim == 2 and ".layers." in k)
short = sorted(set(k.split(".", 3)[3] for k in dense2d))
print("ok %s: %d linears compressed, %d fused, %d 2-D weights dense (%s)" % (fmt, len(done), fused, len(dense2d),
                                                                           " ".join(short)))
