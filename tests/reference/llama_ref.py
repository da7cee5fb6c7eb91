#!/usr/bin/python3
"""
Independent reference forward pass for the decoder families lmpress runs (llama, mistral,
qwen2, and issue 16's phi3, gemma, gemma2, gemma3_text, qwen3, smollm3, granite, olmo2),
written from the published model definitions, in float64 PyTorch. It is the referee that lmpress's
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

The other families change that block as their model definitions say (FAMILIES below):
  phi3:    q/k/v rows of one fused qkv_proj, gate/up halves of one gate_up_proj; RoPE on
           the first partial_rotary_factor * head_dim dims only; LongRoPE: inv_freq_i /
           ext_i with ext = long_factor when the sequence is longer than
           original_max_position_embeddings else short_factor, cos/sin times the attention
           factor sqrt(1 + ln(max/orig) / ln(orig)); sliding window on every layer.
  gemma:   RMSNorm times (1 + w); embeddings times sqrt(hidden_size); GeGLU with the tanh
           GELU; tied.  gemma2: plus a norm of each branch output before the residual add
           (post_attention_layernorm, post_feedforward_layernorm; the FFN's input norm is
           pre_feedforward_layernorm), scores scaled by query_pre_attn_scalar^-1/2 and
           soft-capped (cap * tanh(s / cap)), final logits soft-capped, a sliding window
           on the layers layer_types marks.  gemma3_text: plus per-head (1 + w) RMSNorm of
           q and k before RoPE; the sliding layers use rope_local_base_freq, unscaled.
  qwen3:   per-head RMSNorm of q and k before RoPE.
  smollm3: no RoPE on the layers whose no_rope_layers entry is 0.
  granite: embeddings times embedding_multiplier, scores times attention_multiplier
           (instead of 1/sqrt(head_dim)), branch outputs times residual_multiplier, logits
           divided by logits_scaling.
  olmo2:   no input norms; each branch output normed (post_attention_layernorm,
           post_feedforward_layernorm) before the add; q and k RMSNormed over their whole
           projection width before RoPE.

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


# Block features per model_type (from each family's published model definition).
FAMILIES = {
    "llama": {}, "mistral": {}, "qwen2": {}, "smollm3": {}, "granite": {},
    "phi3": {"fused": True},
    "gemma": {"plus1": True, "gelu": True, "emb_sqrt": True},
    "gemma2": {"plus1": True, "gelu": True, "emb_sqrt": True, "sandwich": True},
    "gemma3_text": {"plus1": True, "gelu": True, "emb_sqrt": True, "sandwich": True, "qknorm": "head"},
    "qwen3": {"qknorm": "head"},
    "olmo2": {"post": True, "qknorm": "full"},
}


class Config:
    def __init__(self, d):
        self.model_type = d.get("model_type", "llama")
        if self.model_type not in FAMILIES:
            raise ValueError("unsupported model_type %s" % self.model_type)
        f = FAMILIES[self.model_type]
        self.fused = f.get("fused", False)
        self.plus1 = f.get("plus1", False)
        self.gelu = f.get("gelu", False)
        self.sandwich = f.get("sandwich", False)
        self.post = f.get("post", False)
        self.qknorm = f.get("qknorm")
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
        self.max_pos = int(d.get("max_position_embeddings", 2048))
        self.rope_dim = int(self.head_dim * float(d.get("partial_rotary_factor") or 1.0))
        self.orig_max_pos = d.get("original_max_position_embeddings")
        self.local_theta = d.get("rope_local_base_freq")
        self.emb_scale = math.sqrt(self.hidden) if f.get("emb_sqrt") else 1.0
        self.scale = 1.0 / math.sqrt(self.head_dim)
        if d.get("query_pre_attn_scalar"):
            self.scale = float(d["query_pre_attn_scalar"]) ** -0.5
        self.attn_cap = d.get("attn_logit_softcapping") or 0.0
        self.final_cap = d.get("final_logit_softcapping") or 0.0
        self.resid_mult = 1.0
        self.logits_div = 1.0
        if self.model_type == "granite":
            self.emb_scale = float(d.get("embedding_multiplier", 1.0))
            self.scale = float(d.get("attention_multiplier", 1.0))
            self.resid_mult = float(d.get("residual_multiplier", 1.0))
            self.logits_div = float(d.get("logits_scaling", 1.0))
        # RoPE per layer (smollm3: no_rope_layers[i] == 0 means no RoPE on layer i)
        self.use_rope = [True] * self.n_layers
        if self.model_type == "smollm3" and d.get("no_rope_layers"):
            self.use_rope = [bool(x) for x in d["no_rope_layers"]]
        # Sliding-window attention: mistral and phi3 on every layer when sliding_window is
        # set; qwen2 only with use_sliding_window, on layers >= max_window_layers; gemma2/3
        # on the layers layer_types marks.
        self.sliding_window = None
        self.window_from_layer = 0
        self.sliding_layers = None
        sw = d.get("sliding_window")
        if self.model_type in ("mistral", "phi3") and sw:
            self.sliding_window = int(sw)
        if self.model_type == "qwen2" and d.get("use_sliding_window") and sw:
            self.sliding_window = int(sw)
            self.window_from_layer = int(d.get("max_window_layers", self.n_layers))
        if self.model_type in ("gemma2", "gemma3_text"):
            self.sliding_window = int(sw)
            self.sliding_layers = [t == "sliding_attention" for t in d["layer_types"]]
        act = d.get("hidden_activation") or d.get("hidden_act", "silu")
        if act != ("gelu_pytorch_tanh" if self.gelu else "silu"):
            raise ValueError("unsupported activation %s for %s" % (act, self.model_type))

    def windowed(self, layer):
        if not self.sliding_window:
            return False
        if self.sliding_layers is not None:
            return self.sliding_layers[layer]
        return layer >= self.window_from_layer


def load_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return Config(json.load(f))


def rope_inv_freq(cfg, theta=None, scaling=True, seq_len=0):
    """inv_freq[rope_dim/2] in float64, with the config's rope_scaling applied (unless
    scaling is False: gemma3's local layers). Returns (inv_freq, position_divisor,
    cos_sin_scale). LongRoPE picks the long factors when seq_len exceeds the original
    context (transformers' dynamic rule for one forward call over the whole sequence)."""
    hd = cfg.rope_dim
    base = cfg.theta if theta is None else theta
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=DTYPE) / hd))
    rs = cfg.rope_scaling if scaling else None
    if not rs:
        return inv, 1.0, 1.0
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv, float(rs["factor"]), 1.0
    if kind in ("longrope", "su"):
        orig = cfg.orig_max_pos or cfg.max_pos
        ext = rs["long_factor"] if seq_len > orig else rs["short_factor"]
        ext = torch.tensor([float(x) for x in ext], dtype=DTYPE)
        factor = cfg.max_pos / orig
        af = rs.get("attention_factor")
        if af is None:
            af = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        return inv / ext, 1.0, float(af)
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
        return out, 1.0, 1.0
    if kind in (None, "default"):
        return inv, 1.0, 1.0
    raise ValueError("unsupported rope_scaling %r" % (rs,))


def apply_rope(x, pos, inv, div, mscale=1.0):
    """x [heads, n, head_dim]: the first 2 * len(inv) dims rotated in the rotate-half
    layout (partial rotary leaves the rest as is); pos [n] absolute positions."""
    ang = (pos.to(DTYPE) / div)[:, None] * inv[None, :]  # [n, rot/2]
    cos = torch.cos(ang) * mscale
    sin = torch.sin(ang) * mscale
    h = inv.numel()
    a, b, rest = x[..., :h], x[..., h:2 * h], x[..., 2 * h:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], dim=-1)


def rms_norm(x, w, eps, plus1=False):
    """x / sqrt(mean(x^2) + eps) * w; gemma's norms multiply by (1 + w)."""
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * ((1.0 + w) if plus1 else w)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class Model:
    def __init__(self, folder):
        self.folder = folder
        self.cfg = load_config(folder)
        self.w = load_weights(folder)
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

    def _norm(self, x, name):
        return rms_norm(x, self.w[name + ".weight"], self.cfg.eps, self.cfg.plus1)

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
        rope_global = rope_inv_freq(c, seq_len=n)
        rope_local = rope_inv_freq(c, theta=float(c.local_theta), scaling=False) if c.local_theta else None
        h = self.w["model.embed_tokens.weight"][ids] * c.emb_scale
        rep = c.n_heads // c.n_kv
        qd, kvd = c.n_heads * c.head_dim, c.n_kv * c.head_dim
        for L in range(c.n_layers):
            p = "model.layers.%d." % L
            x = h if c.post else self._norm(h, p + "input_layernorm")
            if c.fused:
                qkv = self._lin(x, p + "self_attn.qkv_proj")
                q, k, v = qkv[:, :qd], qkv[:, qd:qd + kvd], qkv[:, qd + kvd:]
            else:
                q = self._lin(x, p + "self_attn.q_proj")
                k = self._lin(x, p + "self_attn.k_proj")
                v = self._lin(x, p + "self_attn.v_proj")
            if c.qknorm == "full":
                q = self._norm(q, p + "self_attn.q_norm")
                k = self._norm(k, p + "self_attn.k_norm")
            q = q.view(n, c.n_heads, c.head_dim).transpose(0, 1)
            k = k.view(n, c.n_kv, c.head_dim).transpose(0, 1)
            v = v.view(n, c.n_kv, c.head_dim).transpose(0, 1)
            if c.qknorm == "head":
                q = self._norm(q, p + "self_attn.q_norm")
                k = self._norm(k, p + "self_attn.k_norm")
            if c.use_rope[L]:
                inv, div, ms = rope_local if (rope_local and c.windowed(L)) else rope_global
                q = apply_rope(q, pos, inv, div, ms)
                k = apply_rope(k, pos, inv, div, ms)
            k = k.repeat_interleave(rep, dim=0)  # query head j uses kv head j // rep
            v = v.repeat_interleave(rep, dim=0)
            s = q @ k.transpose(1, 2) * c.scale
            if c.attn_cap:
                s = torch.tanh(s / c.attn_cap) * c.attn_cap
            mask = windowed if c.windowed(L) else causal
            s = s.masked_fill(mask[None], float("-inf"))
            a = torch.softmax(s, dim=-1) @ v  # [heads, n, hd]
            a = a.transpose(0, 1).reshape(n, c.n_heads * c.head_dim)
            o = self._lin(a, p + "self_attn.o_proj")
            if c.sandwich or c.post:
                o = self._norm(o, p + "post_attention_layernorm")
            h = h + o * c.resid_mult
            if c.post:
                x = h
            elif c.sandwich:
                x = self._norm(h, p + "pre_feedforward_layernorm")
            else:
                x = self._norm(h, p + "post_attention_layernorm")
            if c.fused:
                gu = self._lin(x, p + "mlp.gate_up_proj")
                g, u = gu[:, :c.ffn], gu[:, c.ffn:]
            else:
                g = self._lin(x, p + "mlp.gate_proj")
                u = self._lin(x, p + "mlp.up_proj")
            act = gelu_tanh(g) if c.gelu else torch.nn.functional.silu(g)
            f = self._lin(act * u, p + "mlp.down_proj")
            if c.sandwich or c.post:
                f = self._norm(f, p + "post_feedforward_layernorm")
            h = h + f * c.resid_mult
        h = self._norm(h, "model.norm")
        logits = h @ self.head.T / c.logits_div
        if c.final_cap:
            logits = torch.tanh(logits / c.final_cap) * c.final_cap
        return logits


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
