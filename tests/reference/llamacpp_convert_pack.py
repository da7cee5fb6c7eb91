#!/usr/bin/env python3
"""Store a GGUF written by llama.cpp's converter in a few kilobytes, exactly recoverable.

The converter's f32 GGUFs of the tiny synth models weigh 0.9 to 6.6 MB each (44 MB for the
15 files). Almost all of those bytes are the HF checkpoint's own tensor bytes: copied as
they are, split per expert, or with rows reordered (llama's q/k permutation). The test
rebuilds the HF checkpoint anyway (lmpress synth with the golden's preset and seed), so
this script stores:

  NAME.gguf.gz    the converter's file with every byte range that equals bytes of the HF
                  checkpoint set to zero (gzip, mtime 0);
  NAME.fill.json  where each zeroed range comes from: for each such tensor its absolute
                  offset and size in the GGUF, the FNV-1a 64 of its original bytes and a
                  list of [source tensor index, byte offset, byte count] pieces of the HF
                  safetensors tensors, in order; plus the whole file's size and FNV-1a 64.

A tensor is zeroed only when all of it is found, as one piece, as slices of the outermost
dimension (per expert), or row by row; other tensors (gemma's norms with +1 added, ...)
stay in NAME.gguf.gz as written. Matching compares bytes, never hashes, and knows nothing
about the converter: it is a byte-level dictionary lookup. The reader (the unit test)
fills the ranges, then checks every tensor's FNV-1a and the whole file's, so what it loads
is byte for byte the converter's output.

Usage: llamacpp_convert_pack.py CONVERTED.gguf HF_DIR OUT_PREFIX [--note TEXT]
           [--golden REL.h5 --config-patch JSON --why TEXT]

--golden names (relative to golden/) the reference logits to hold the file to when the
converter's file cannot express the HF model (the golden of the preset otherwise);
--config-patch is the config.json change that golden was computed with (what the
converter's file means, e.g. {"query_pre_attn_scalar": 32}), --why says why.
"""

import gzip
import json
import struct
import sys
from pathlib import Path

FNV_INIT = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a(data, h=FNV_INIT):
    # byte-serial FNV-1a 64 (the files are small; numpy-free for clarity)
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


# ------------------------------------------------------------------ GGUF header

GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
# ggml type -> (block elements, block bytes) for the types an f32/f16/bf16/q8_0 file holds
GGML_TYPES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34)}


class Reader:
    def __init__(self, buf):
        self.b = buf
        self.p = 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.b[self.p:self.p + n].decode("utf-8")
        self.p += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et = self.take("I")
            n = self.take("Q")
            return [self.value(et) for _ in range(n)]
        return self.take(GGUF_SCALAR[t])


def gguf_tensors(buf):
    r = Reader(buf)
    if r.take("I") != 0x46554747:
        raise ValueError("not a GGUF file")
    version = r.take("I")
    n_tensors = r.take("Q")
    n_kv = r.take("Q")
    align = 32
    for _ in range(n_kv):
        key = r.string()
        t = r.take("I")
        v = r.value(t)
        if key == "general.alignment":
            align = v
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("I")
        ne = [r.take("Q") for _ in range(nd)]
        gt = r.take("I")
        off = r.take("Q")
        infos.append((name, ne, gt, off))
    data_start = (r.p + align - 1) // align * align
    out = []
    for name, ne, gt, off in infos:
        if gt not in GGML_TYPES:
            raise ValueError(f"{name}: ggml type {gt} not handled")
        be, bb = GGML_TYPES[gt]
        n = 1
        for d in ne:
            n *= d
        out.append({"name": name, "ne": ne, "offset": data_start + off, "nbytes": n // be * bb,
                    "row_bytes": ne[0] // be * bb})
    return version, out


# ------------------------------------------------------------------ safetensors

def safetensors_tensors(folder):
    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        raw = f.read_bytes()
        n = struct.unpack_from("<Q", raw, 0)[0]
        head = json.loads(raw[8:8 + n])
        base = 8 + n
        for name, info in head.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            out[name] = raw[base + a:base + b]
    return out


class Index:
    """Byte slices of the HF tensors at multiples of a given size, looked up by content."""

    def __init__(self, tensors):
        self.names = sorted(tensors)
        self.data = [tensors[n] for n in self.names]
        self.by_size = {}

    def table(self, size):
        t = self.by_size.get(size)
        if t is None:
            t = {}
            for i, d in enumerate(self.data):
                if size and len(d) % size == 0:
                    for off in range(0, len(d), size):
                        t.setdefault(d[off:off + size], (i, off))
            self.by_size[size] = t
        return t

    def find(self, blob, size):
        if size <= 0 or len(blob) % size:
            return None
        t = self.table(size)
        pieces = []
        for off in range(0, len(blob), size):
            hit = t.get(blob[off:off + size])
            if hit is None:
                return None
            i, o = hit
            if pieces and pieces[-1][0] == i and pieces[-1][1] + pieces[-1][2] == o:
                pieces[-1][2] += size
            else:
                pieces.append([i, o, size])
        return pieces


def main():
    args = sys.argv[1:]
    opts = {"--note": "", "--golden": None, "--config-patch": None, "--why": None}
    for o in list(opts):
        if o in args:
            k = args.index(o)
            opts[o] = args[k + 1]
            del args[k:k + 2]
    note = opts["--note"]
    if len(args) != 3:
        sys.exit(__doc__)
    gguf_path, hf_dir, prefix = args
    buf = bytearray(Path(gguf_path).read_bytes())
    whole_fnv = fnv1a(buf)
    version, tensors = gguf_tensors(bytes(buf))
    idx = Index(safetensors_tensors(hf_dir))

    fills = []
    used = set()
    kept_bytes = 0
    for t in tensors:
        blob = bytes(buf[t["offset"]:t["offset"] + t["nbytes"]])
        pieces = idx.find(blob, len(blob))
        if pieces is None and len(t["ne"]) >= 3:
            pieces = idx.find(blob, len(blob) // t["ne"][-1])
        if pieces is None:
            pieces = idx.find(blob, t["row_bytes"])
        if pieces is None:
            kept_bytes += t["nbytes"]
            continue
        for p in pieces:
            used.add(p[0])
        fills.append({"tensor": t["name"], "offset": t["offset"], "nbytes": t["nbytes"],
                      "fnv1a": "%016x" % fnv1a(blob), "from": pieces})
        buf[t["offset"]:t["offset"] + t["nbytes"]] = bytes(t["nbytes"])

    # source indices renumbered over the tensors actually used
    names = [idx.names[i] for i in sorted(used)]
    remap = {i: k for k, i in enumerate(sorted(used))}
    for f in fills:
        f["from"] = [[remap[i], o, n] for i, o, n in f["from"]]

    manifest = {
        "format": "lmpress llamacpp-fill 1",
        "gguf_version": version,
        "gguf_bytes": len(buf),
        "gguf_fnv1a": "%016x" % whole_fnv,
        "note": note,
        "tensors": len(tensors),
        "tensors_kept_in_gz": len(tensors) - len(fills),
        "bytes_kept_in_gz": kept_bytes,
        "sources": names,
        "fills": fills,
    }
    if opts["--golden"]:
        manifest["golden"] = opts["--golden"]
        manifest["config_patch"] = json.loads(opts["--config-patch"] or "{}")
        manifest["why"] = opts["--why"] or ""
    with open(prefix + ".fill.json", "w") as f:
        json.dump(manifest, f, indent=0, separators=(",", ":"))
        f.write("\n")
    with open(prefix + ".gguf.gz", "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0, filename="") as g:
            g.write(bytes(buf))
    print(f"{prefix}: {len(buf)} bytes, {len(tensors)} tensors, {len(fills)} filled from the HF "
          f"checkpoint, {len(tensors) - len(fills)} kept ({kept_bytes} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
