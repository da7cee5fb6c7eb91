# Shared by the CLI tests' numpy checkers (ct_sparse_check.py, moe_struct_check.py,
# test_struct_fused.sh): safetensors folders read without lmpress, and the column blocks a
# structured pruning kept.
import glob, json, os, struct
import numpy as np

_DT = {"F32": np.float32, "I64": np.int64, "U8": np.uint8, "F16": np.float16}


def read_tensors(d, f32_only=False):
    """Every tensor of every *.safetensors file in folder d, as writable numpy arrays."""
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        b = open(f, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k == "__metadata__":
                continue
            assert not f32_only or v["dtype"] == "F32", (k, v["dtype"])
            a, e = v["data_offsets"]
            out[k] = np.frombuffer(b[8 + n + a:8 + n + e], dtype=_DT[v["dtype"]]).reshape(v["shape"]).copy()
    return out


def load_f32(d):
    """(tensors, config.json) of an f32 folder."""
    return read_tensors(d, f32_only=True), json.load(open(os.path.join(d, "config.json")))


def kept_blocks(orig, new, width):
    """The original column blocks (of `width`) each column block of `new` equals, in order."""
    nb = orig.shape[1] // width
    keep = []
    for j in range(new.shape[1] // width):
        blk = new[:, j * width:(j + 1) * width]
        m = [i for i in range(nb) if np.array_equal(orig[:, i * width:(i + 1) * width], blk)]
        assert len(m) == 1, ("column block", j, m)
        keep.append(m[0])
    assert keep == sorted(keep), keep
    return keep
