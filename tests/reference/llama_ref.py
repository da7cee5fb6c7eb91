#!/usr/bin/python3
"""
Independent reference forward pass for Llama-family decoders (llama, mistral, qwen2),
written from the model definitions, in float64 PyTorch. It is the referee that lmpress's
inference engine is held to (golden/*.h5, tests/unit/test_golden.c): it shares no code
with lmpress and reads checkpoints with its own few lines of safetensors parsing.

What it computes, per the Hugging Face model definitions:
  h = embed_tokens[ids]
  per block:  h += o_proj(attn(rope(q_proj(rms(h))), rope(k_proj(rms(h))), v_proj(rms(h))))
              h += down_proj(silu(gate_proj(rms(h))) * up_proj(rms(h)))
  logits = lm_head(rms(h))       (lm_head = embed_tokens when tie_word_embeddings)
  RMSNorm: x / sqrt(mean(x^2) + eps) * w.
  RoPE: rotate-half layout (pairs (i, i + head_dim/2)), inv_freq_i = theta^(-2i/head_dim),
        optionally rescaled ("linear": positions / factor; "llama3": the frequency-band
        rule of Llama 3.1 with factor, low/high_freq_factor, original_max_position_embeddings).
  Attention: scores / sqrt(head_dim), causal mask (plus mistral's sliding window when set:
        query i sees keys j with i - window < j <= i), softmax, GQA by repeating each K/V
        head for n_heads / n_kv_heads query heads. q/k/v biases when present (qwen2).

Weights stored as F32, F16 or BF16 are upcast exactly to float64; everything after that is
float64. Not here: tokenization (callers pass token ids), sampling, quantized formats.

Command line:
  llama_ref.py MODEL_DIR ID [ID ...]      prints the argmax and max |logit| per position
  llama_ref.py golden --model DIR --out FILE.h5 [options]   writes a golden file (see
      golden/README.md and tests/reference/make_golden.sh, which runs it)
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

DTYPE = torch.float64

_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": None,  # decoded by hand below (numpy has no bfloat16)
    "I64": np.int64,
    "I32": np.int32,
}


def _read_safetensors(path):
    """Returns {name: float64 torch tensor} for every tensor of one .safetensors file."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        shape = tuple(info["shape"])
        b, e = info["data_offsets"]
        raw = data[base + b:base + e]
        if dt == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32)  # bf16 is the top half of an f32, exactly
        elif dt in _ST_DTYPES and _ST_DTYPES[dt] is not None:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        else:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError("%s: tensor %s: %d elements for shape %s" % (path, name, arr.size, shape))
        out[name] = torch.from_numpy(arr.astype(np.float64).reshape(shape))
    return out


def load_weights(folder):
    """All tensors of an HF folder (single model.safetensors or a sharded index)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        w = {}
        for fn in files:
            w.update(_read_safetensors(os.path.join(folder, fn)))
        return w
    return _read_safetensors(os.path.join(folder, "model.safetensors"))


def safetensors_dtype(folder):
    """The dtype string of the first matrix in the checkpoint ("F32", "F16", "BF16")."""
    path = os.path.join(folder, "model.safetensors")
    if not os.path.exists(path):
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            path = os.path.join(folder, sorted(set(json.load(f)["weight_map"].values()))[0])
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen).decode("utf-8"))
    for name, info in sorted(header.items()):
        if name != "__metadata__" and name.endswith("proj.weight"):
            return info["dtype"]
    return "?"


class Config:
    def __init__(self, d):
        self.model_type = d.get("model_type", "llama")
        if self.model_type not in ("llama", "mistral", "qwen2"):
            raise ValueError("unsupported model_type %s" % self.model_type)
        self.hidden = d["hidden_size"]
        self.ffn = d["intermediate_size"]
        self.n_layers = d["num_hidden_layers"]
        self.n_heads = d["num_attention_heads"]
        self.n_kv = d.get("num_key_value_heads") or self.n_heads
        self.head_dim = d.get("head_dim") or self.hidden // self.n_heads
        self.vocab = d["vocab_size"]
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        self.theta = float(d.get("rope_theta", 10000.0))
        self.rope_scaling = d.get("rope_scaling") or None
        self.tied = bool(d.get("tie_word_embeddings", False))
        # Sliding-window attention: mistral on every layer when sliding_window is set;
        # qwen2 only with use_sliding_window, on layers >= max_window_layers.
        self.sliding_window = None
        self.window_from_layer = 0
        sw = d.get("sliding_window")
        if self.model_type == "mistral" and sw:
            self.sliding_window = int(sw)
        if self.model_type == "qwen2" and d.get("use_sliding_window") and sw:
            self.sliding_window = int(sw)
            self.window_from_layer = int(d.get("max_window_layers", self.n_layers))
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError("unsupported hidden_act %s" % d.get("hidden_act"))


def load_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return Config(json.load(f))


def rope_inv_freq(cfg):
    """inv_freq[head_dim/2] in float64, with the config's rope_scaling applied.
    Returns (inv_freq, position_divisor)."""
    hd = cfg.head_dim
    inv = 1.0 / (cfg.theta ** (torch.arange(0, hd, 2, dtype=DTYPE) / hd))
    rs = cfg.rope_scaling
    if not rs:
        return inv, 1.0
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv, float(rs["factor"])
    if kind == "llama3":
        factor = float(rs["factor"])
        lo = float(rs["low_freq_factor"])
        hi = float(rs["high_freq_factor"])
        orig = float(rs["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        lo_wavelen = orig / lo  # longer waves than this are slowed down by `factor`
        hi_wavelen = orig / hi  # shorter waves than this are kept
        out = inv.clone()
        for i in range(inv.numel()):
            w = float(wavelen[i])
            if w < hi_wavelen:
                continue
            if w > lo_wavelen:
                out[i] = inv[i] / factor
            else:  # in between: blend the two linearly in orig / wavelen
                s = (orig / w - lo) / (hi - lo)
                out[i] = (1 - s) * inv[i] / factor + s * inv[i]
        return out, 1.0
    if kind in (None, "default"):
        return inv, 1.0
    raise ValueError("unsupported rope_scaling %r" % (rs,))


def apply_rope(x, pos, inv, div):
    """x [heads, n, head_dim] in the rotate-half layout; pos [n] absolute positions."""
    ang = (pos.to(DTYPE) / div)[:, None] * inv[None, :]  # [n, hd/2]
    cos = torch.cos(ang)
    sin = torch.sin(ang)
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


class Model:
    def __init__(self, folder):
        self.folder = folder
        self.cfg = load_config(folder)
        self.w = load_weights(folder)
        self.inv, self.div = rope_inv_freq(self.cfg)
        c = self.cfg
        emb = self.w["model.embed_tokens.weight"]
        if emb.shape[1] != c.hidden:
            raise ValueError("embed_tokens has shape %s" % (tuple(emb.shape),))
        self.head = emb if c.tied or "lm_head.weight" not in self.w else self.w["lm_head.weight"]
        if not c.tied and "lm_head.weight" not in self.w:
            raise ValueError("lm_head.weight missing and embeddings not tied")

    def _lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def forward(self, ids):
        """Causal forward pass over ids (list/array of ints); returns float64 logits [n, vocab]."""
        c = self.cfg
        ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        n = ids.numel()
        if int(ids.min()) < 0 or int(ids.max()) >= self.w["model.embed_tokens.weight"].shape[0]:
            raise ValueError("token id out of range")
        pos = torch.arange(n)
        causal = pos[None, :] > pos[:, None]  # True = masked (future)
        windowed = causal
        if c.sliding_window:
            windowed = causal | (pos[None, :] <= pos[:, None] - c.sliding_window)
        h = self.w["model.embed_tokens.weight"][ids]
        rep = c.n_heads // c.n_kv
        for L in range(c.n_layers):
            p = "model.layers.%d." % L
            x = rms_norm(h, self.w[p + "input_layernorm.weight"], c.eps)
            q = self._lin(x, p + "self_attn.q_proj").view(n, c.n_heads, c.head_dim).transpose(0, 1)
            k = self._lin(x, p + "self_attn.k_proj").view(n, c.n_kv, c.head_dim).transpose(0, 1)
            v = self._lin(x, p + "self_attn.v_proj").view(n, c.n_kv, c.head_dim).transpose(0, 1)
            q = apply_rope(q, pos, self.inv, self.div)
            k = apply_rope(k, pos, self.inv, self.div)
            k = k.repeat_interleave(rep, dim=0)  # query head j uses kv head j // rep
            v = v.repeat_interleave(rep, dim=0)
            s = q @ k.transpose(1, 2) / math.sqrt(c.head_dim)
            mask = windowed if c.sliding_window and L >= c.window_from_layer else causal
            s = s.masked_fill(mask[None], float("-inf"))
            a = torch.softmax(s, dim=-1) @ v  # [heads, n, hd]
            a = a.transpose(0, 1).reshape(n, c.n_heads * c.head_dim)
            h = h + self._lin(a, p + "self_attn.o_proj")
            x = rms_norm(h, self.w[p + "post_attention_layernorm.weight"], c.eps)
            g = self._lin(x, p + "mlp.gate_proj")
            u = self._lin(x, p + "mlp.up_proj")
            h = h + self._lin(torch.nn.functional.silu(g) * u, p + "mlp.down_proj")
        h = rms_norm(h, self.w["model.norm.weight"], c.eps)
        return h @ self.head.T


def nll_rows(logits, targets):
    """-log softmax(logits[i])[targets[i]] in float64, per row."""
    lp = torch.log_softmax(logits.to(DTYPE), dim=-1)
    t = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    return -lp[torch.arange(t.numel()), t]


def ppl_gptq(model, tokens, ctx, max_windows=0):
    """Perplexity under the GPTQ-paper protocol (IST-DASLab/gptq llama.py llama_eval):
    non-overlapping windows of ctx tokens (tail dropped), each fed as is; the logits of
    positions 0..ctx-2 predict tokens 1..ctx-1 (ctx-1 scored per window);
    nll_w = mean over the window * ctx; ppl = exp(sum_w nll_w / (n_windows * ctx)).
    Returns dict(ppl, nll_mean, n_windows, n_scored, window_nll)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    nw = len(tokens) // ctx
    if max_windows and max_windows < nw:
        nw = max_windows
    if nw < 1:
        raise ValueError("need at least %d tokens" % ctx)
    per = []
    for w in range(nw):
        win = tokens[w * ctx:(w + 1) * ctx]
        lg = model.forward(win)
        per.append(float(nll_rows(lg[:-1], win[1:]).mean()))
    total = sum(m * ctx for m in per)
    mean = total / (nw * ctx)
    return {"ppl": math.exp(mean), "nll_mean": mean, "n_windows": nw,
            "n_scored": nw * (ctx - 1), "window_nll": per}


def ppl_llamacpp(model, tokens, ctx, bos, max_windows=0):
    """llama.cpp llama-perplexity: chunks of ctx tokens, the first token of each replaced
    by BOS, tokens ctx/2+1 .. ctx-1 scored (from positions ctx/2 .. ctx-2);
    ppl = exp(mean NLL over every scored token)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    nw = len(tokens) // ctx
    if max_windows and max_windows < nw:
        nw = max_windows
    first = ctx // 2
    nll = []
    for w in range(nw):
        win = tokens[w * ctx:(w + 1) * ctx].copy()
        target = win[first + 1:].copy()
        win[0] = bos
        lg = model.forward(win)
        nll.append(nll_rows(lg[first:ctx - 1], target))
    nll = torch.cat(nll)
    mean = float(nll.mean())
    return {"ppl": math.exp(mean), "nll_mean": mean, "n_windows": nw, "n_scored": nll.numel()}


def ppl_windows(model, tokens, ctx, bos, max_windows=0):
    """llama2.c run.c style (the fixtures' reference figures): windows of ctx tokens, each
    fed as BOS + its first ctx-1 tokens, all ctx tokens scored; ppl = exp(mean NLL)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    nw = len(tokens) // ctx
    if max_windows and max_windows < nw:
        nw = max_windows
    nll = []
    for w in range(nw):
        win = tokens[w * ctx:(w + 1) * ctx]
        lg = model.forward(np.concatenate([[bos], win[:-1]]))
        nll.append(nll_rows(lg, win))
    nll = torch.cat(nll)
    mean = float(nll.mean())
    return {"ppl": math.exp(mean), "nll_mean": mean, "n_windows": nw, "n_scored": nll.numel()}


def fnv1a64_tensors(folder):
    """FNV-1a 64 over the raw bytes of every tensor, in byte order of the sorted tensor
    names (single-file checkpoints): a fingerprint of the weights that ignores the header."""
    path = os.path.join(folder, "model.safetensors")
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    h = 0xcbf29ce484222325
    for name in sorted(k for k in header if k != "__metadata__"):
        b, e = header[name]["data_offsets"]
        for byte in data[8 + hlen + b:8 + hlen + e]:
            h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


class _AsciiAttrs:
    """Wraps an h5py AttributeManager: str values are stored as fixed-length ASCII."""

    def __init__(self, attrs):
        self._a = attrs

    def __setitem__(self, key, val):
        if isinstance(val, str):
            val = np.bytes_(val.encode("ascii"))
        self._a[key] = val


def write_golden(args):
    """The golden subcommand: reference logits and perplexities of one model -> HDF5."""
    import argparse
    import h5py

    ap = argparse.ArgumentParser(prog="llama_ref.py golden")
    ap.add_argument("--model", required=True, help="HF folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True, help="preset or fixture name (attribute)")
    ap.add_argument("--source", required=True, choices=["synth", "fixture"])
    ap.add_argument("--model-path", default="", help="fixture path relative to LMP_FIXTURES")
    ap.add_argument("--seed", type=int, default=0, help="synth seed")
    ap.add_argument("--dtype", default="f32", help="synth dtype")
    ap.add_argument("--command", default="", help="the synth command line (attribute)")
    ap.add_argument("--n-seqs", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=72)
    ap.add_argument("--positions", default="0,1,2,15,31,63,64,71",
                    help="positions whose logits are stored (all when 'all')")
    ap.add_argument("--token-seed", type=int, required=True)
    ap.add_argument("--ppl-ctx", type=int, default=32)
    ap.add_argument("--ppl-windows", type=int, default=4)
    ap.add_argument("--regen", default="sh tests/reference/make_golden.sh")
    a = ap.parse_args(args)

    m = Model(a.model)
    c = m.cfg
    with open(os.path.join(a.model, "config.json")) as f:
        bos = json.load(f).get("bos_token_id")
    bos = -1 if bos is None else int(bos)
    rng = np.random.default_rng(a.token_seed)
    V = c.vocab
    tokens = rng.integers(0, V, size=(a.n_seqs, a.seq_len)).astype(np.int32)
    if bos >= 0:
        tokens[0, 0] = bos  # one sequence starts the usual way
    if a.positions == "all":
        positions = np.arange(a.seq_len, dtype=np.int32)
    else:
        positions = np.array([int(x) for x in a.positions.split(",")], dtype=np.int32)
    if positions.min() < 0 or positions.max() >= a.seq_len:
        raise ValueError("positions out of range")
    logits = np.zeros((a.n_seqs, len(positions), V), dtype=np.float32)
    for s in range(a.n_seqs):
        lg = m.forward(tokens[s]).numpy()
        logits[s] = lg[positions].astype(np.float32)
    ppl_tokens = rng.integers(0, V, size=a.ppl_ctx * a.ppl_windows).astype(np.int32)
    if bos >= 0:
        ppl_tokens[0] = bos  # as the gptq protocol's stream starts (HF adds BOS)
    g = ppl_gptq(m, ppl_tokens, a.ppl_ctx)

    tmp = a.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        # Strings as fixed-length ASCII (h5py's default, variable-length UTF-8, is not
        # what every HDF5 reader converts to a C string).
        fa = _AsciiAttrs(f.attrs)
        fa["name"] = a.name
        fa["source"] = a.source
        fa["model_type"] = c.model_type
        if a.source == "synth":
            fa["preset"] = a.name
            fa["seed"] = np.int64(a.seed)
            fa["weights_fnv1a"] = fnv1a64_tensors(a.model)
        else:
            fa["model_path"] = a.model_path
        fa["dtype"] = a.dtype
        fa["weights_dtype"] = safetensors_dtype(a.model)
        fa["lmpress_command"] = a.command
        fa["reference"] = "tests/reference/llama_ref.py (float64 PyTorch forward)"
        fa["torch_version"] = str(torch.__version__)
        fa["numpy_version"] = str(np.__version__)
        fa["token_seed"] = np.int64(a.token_seed)
        fa["regenerate"] = a.regen
        fa["n_vocab"] = np.int64(V)
        fa["bos"] = np.int64(bos)
        f.create_dataset("tokens", data=tokens)
        f.create_dataset("positions", data=positions)
        f.create_dataset("logits", data=logits, compression="gzip", compression_opts=9,
                         shuffle=True, chunks=(1, len(positions), V))
        d = f.create_dataset("ppl_tokens", data=ppl_tokens)
        d.attrs["ctx"] = np.int64(a.ppl_ctx)
        d.attrs["gptq_ppl"] = g["ppl"]
        d.attrs["gptq_nll_mean"] = g["nll_mean"]
        d.attrs["gptq_n_scored"] = np.int64(g["n_scored"])
        d.attrs["gptq_n_windows"] = np.int64(g["n_windows"])
        if bos >= 0:
            r = ppl_llamacpp(m, ppl_tokens, a.ppl_ctx, bos)
            d.attrs["llamacpp_ppl"] = r["ppl"]
            d.attrs["llamacpp_n_scored"] = np.int64(r["n_scored"])
            r = ppl_windows(m, ppl_tokens, a.ppl_ctx, bos)
            d.attrs["windows_ppl"] = r["ppl"]
            d.attrs["windows_n_scored"] = np.int64(r["n_scored"])
    os.replace(tmp, a.out)
    sys.stderr.write("wrote %s: %d x %d tokens, logits at %d positions, gptq ppl %.6f\n"
                     % (a.out, a.n_seqs, a.seq_len, len(positions), g["ppl"]))
    return 0


def main(argv):
    if len(argv) > 1 and argv[1] == "golden":
        return write_golden(argv[2:])
    if len(argv) < 3:
        sys.stderr.write("usage: llama_ref.py MODEL_DIR ID [ID ...]\n")
        return 2
    m = Model(argv[1])
    lg = m.forward([int(t) for t in argv[2:]])
    for i in range(lg.shape[0]):
        print(i, int(lg[i].argmax()), float(lg[i].abs().max()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
