#!/usr/bin/python3
"""
Independent float64 reference forward pass for the mixture-of-experts decoders lmpress
runs: mixtral, qwen3_moe and granitemoe, written from the published model definitions
(transformers' MixtralForCausalLM, Qwen3MoeForCausalLM, GraniteMoeForCausalLM). It shares
no code with lmpress; from tests/reference/llama_ref.py (the dense reference) it takes the
safetensors reader, RMSNorm, rotate-half RoPE, the perplexity protocols and the golden
file writer.

What it computes:
  h = embed_tokens[ids]                         (granitemoe: * embedding_multiplier)
  per block:
    x = rms(h, input_layernorm)
    q, k, v = q_proj(x), k_proj(x), v_proj(x)   per head;
        qwen3_moe: q, k RMSNorm'd per head over head_dim (q_norm, k_norm) before RoPE
    attention: softmax(q k^T * scale + causal mask) v, GQA;
        scale = 1/sqrt(head_dim), granitemoe: attention_multiplier
    h += o_proj(attn)                           (granitemoe: * residual_multiplier)
    x = rms(h, post_attention_layernorm)
    sparse layer: logits = router(x) [n, E]
        mixtral:    p = softmax(logits); the k largest p; divided by their sum
        qwen3_moe:  the same; divided by their sum only when norm_topk_prob
        granitemoe: the k largest logits; their softmax
        y = sum over the k chosen experts of weight * down(silu(gate(x)) * up(x))
      Sparse layers: every layer (mixtral, granitemoe); qwen3_moe: layer l when l is not
      in mlp_only_layers and (l + 1) % decoder_sparse_step == 0; the others run the dense
      mlp.gate_proj/up_proj/down_proj of width intermediate_size.
    h += y                                      (granitemoe: * residual_multiplier)
  logits = lm_head(rms(h, norm))                (granitemoe: / logits_scaling)

Expert weights: mixtral block_sparse_moe.experts.E.w1 (gate), w3 (up), w2 (down), router
block_sparse_moe.gate; qwen3_moe mlp.experts.E.gate_proj/up_proj/down_proj, router
mlp.gate; granitemoe block_sparse_moe.input_linear [E, 2 ff, d] (rows: gate then up, its
output chunked in two halves), output_linear [E, d, ff], router block_sparse_moe.router.layer.

Ties: the k experts are the first k of a stable descending sort of the logits (equal
logits: the lower expert index first). torch.topk leaves the order of equal values
unspecified (torch 1.13 on CPU returns the highest index for k = 1 over two equal maxima
and the lowest in other cases), so the rule is fixed here and lmpress follows it; the
script counts the tokens where a tie sits on the boundary of the chosen set (stored in the
golden file as routing_boundary_ties) and those where torch.topk chose another set
(topk_other_choice). Each
expert's router logit is one dot product computed alone, so experts whose router rows are
equal get exactly equal logits.

Command line (as llama_ref.py):
  moe_ref.py MODEL_DIR ID [ID ...]
  moe_ref.py golden --model DIR --out FILE.h5 [llama_ref.py golden options]
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402  (safetensors reader, RoPE, norms, protocols, golden writer)

DTYPE = torch.float64
FAMILIES = ("mixtral", "qwen3_moe", "granitemoe")


class MoeConfig:
    def __init__(self, d):
        self.model_type = d["model_type"]
        if self.model_type not in FAMILIES:
            raise ValueError("moe_ref.py: model_type %s is not a mixture of experts" % self.model_type)
        self.hidden = d["hidden_size"]
        self.ffn = d["intermediate_size"]
        self.n_layers = d["num_hidden_layers"]
        self.n_heads = d["num_attention_heads"]
        self.n_kv = d.get("num_key_value_heads") or self.n_heads
        self.head_dim = d.get("head_dim") or self.hidden // self.n_heads
        if self.model_type == "granitemoe":
            self.head_dim = self.hidden // self.n_heads  # GraniteMoeAttention ignores head_dim
        self.rope_dim = self.head_dim  # full rotary (llama_ref.rope_inv_freq reads it)
        self.vocab = d["vocab_size"]
        self.max_pos = d.get("max_position_embeddings", 2048)
        self.orig_max_pos = None
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        self.theta = float(d.get("rope_theta", 10000.0))
        self.rope_scaling = d.get("rope_scaling") or None
        self.tied = bool(d.get("tie_word_embeddings", False))
        self.bias = bool(d.get("attention_bias", False))
        q3 = self.model_type == "qwen3_moe"
        self.n_experts = int(d.get("num_experts" if q3 else "num_local_experts", 128 if q3 else 8))
        self.top_k = int(d.get("num_experts_per_tok", 8 if q3 else 2))
        if not 1 <= self.top_k <= self.n_experts:
            raise ValueError("num_experts_per_tok %d outside [1, %d]" % (self.top_k, self.n_experts))
        self.expert_ffn = int(d.get("moe_intermediate_size", 768)) if q3 else self.ffn
        self.norm_topk = bool(d.get("norm_topk_prob", False)) if q3 else True
        self.sparse_step = int(d.get("decoder_sparse_step", 1)) if q3 else 1
        self.mlp_only = set(d.get("mlp_only_layers") or []) if q3 else set()
        g = self.model_type == "granitemoe"  # GraniteMoeConfig defaults are all 1.0
        self.embedding_multiplier = float(d.get("embedding_multiplier", 1.0)) if g else 1.0
        self.residual_multiplier = float(d.get("residual_multiplier", 1.0)) if g else 1.0
        self.logits_scaling = float(d.get("logits_scaling", 1.0)) if g else 1.0
        self.attn_scale = (float(d.get("attention_multiplier", 1.0)) if g
                           else 1.0 / math.sqrt(self.head_dim))
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError("unsupported hidden_act %s" % d.get("hidden_act"))
        if d.get("sliding_window") and (not q3 or d.get("use_sliding_window")):
            raise ValueError("sliding windows are not modelled here")

    def sparse(self, layer):
        return (layer not in self.mlp_only and self.n_experts > 0
                and (layer + 1) % self.sparse_step == 0)


class MoeModel:
    def __init__(self, folder):
        self.folder = folder
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = MoeConfig(json.load(f))
        self.w = llama_ref.load_weights(folder)
        self.inv, self.div, self.mscale = llama_ref.rope_inv_freq(self.cfg)
        c = self.cfg
        emb = self.w["model.embed_tokens.weight"]
        self.head = emb if c.tied or "lm_head.weight" not in self.w else self.w["lm_head.weight"]
        self.ties = 0   # tokens x layers with a tie on the boundary of the chosen set
        self.topk_differs = 0  # ... where torch.topk chose another set
        self.routed = 0

    def _lin(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def _experts(self, L):
        """[(gate, up, down)] per expert, float64 matrices [ff, d], [ff, d], [d, ff]."""
        c, p = self.cfg, "model.layers.%d." % L
        if c.model_type == "granitemoe":
            wi = self.w[p + "block_sparse_moe.input_linear.weight"]
            wo = self.w[p + "block_sparse_moe.output_linear.weight"]
            f = c.expert_ffn
            return [(wi[e, :f], wi[e, f:], wo[e]) for e in range(c.n_experts)]
        if c.model_type == "mixtral":
            q = p + "block_sparse_moe.experts.%d.%s.weight"
            return [(self.w[q % (e, "w1")], self.w[q % (e, "w3")], self.w[q % (e, "w2")])
                    for e in range(c.n_experts)]
        q = p + "mlp.experts.%d.%s.weight"
        return [(self.w[q % (e, "gate_proj")], self.w[q % (e, "up_proj")], self.w[q % (e, "down_proj")])
                for e in range(c.n_experts)]

    def _router(self, L):
        c, p = self.cfg, "model.layers.%d." % L
        if c.model_type == "granitemoe":
            return self.w[p + "block_sparse_moe.router.layer.weight"]
        if c.model_type == "mixtral":
            return self.w[p + "block_sparse_moe.gate.weight"]
        return self.w[p + "mlp.gate.weight"]

    def _moe(self, x, L):
        c = self.cfg
        R = self._router(L)
        # one dot product per (token, expert), each alone: equal router rows, equal logits
        logits = torch.stack([(x * R[e]).sum(dim=-1) for e in range(c.n_experts)], dim=-1)
        order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
        sel = order[:, :c.top_k]
        # torch.topk's choice among equal values is unspecified (torch 1.13 CPU returns the
        # highest index for k = 1 over two equal maxima, the lowest in other cases): count
        # the tokens where its chosen set differs from the stable rule
        tk = torch.topk(logits, c.top_k, dim=-1).indices
        self.topk_differs += int((tk.sort(dim=-1).values != sel.sort(dim=-1).values).any(dim=-1).sum())
        if c.top_k < c.n_experts:
            kth = logits.gather(1, order[:, c.top_k - 1:c.top_k])
            nxt = logits.gather(1, order[:, c.top_k:c.top_k + 1])
            self.ties += int((kth == nxt).sum())
        self.routed += x.shape[0]
        if c.model_type == "granitemoe":
            wts = torch.softmax(logits.gather(1, sel), dim=-1)
        else:
            wts = torch.softmax(logits, dim=-1).gather(1, sel)
            if c.norm_topk:
                wts = wts / wts.sum(dim=-1, keepdim=True)
        experts = self._experts(L)
        y = torch.zeros_like(x)
        for t in range(x.shape[0]):
            for j in range(c.top_k):
                g, u, dn = experts[int(sel[t, j])]
                xt = x[t]
                y[t] += wts[t, j] * (dn @ (torch.nn.functional.silu(g @ xt) * (u @ xt)))
        return y

    def forward(self, ids):
        c = self.cfg
        ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        n = ids.numel()
        pos = torch.arange(n)
        causal = pos[None, :] > pos[:, None]
        h = self.w["model.embed_tokens.weight"][ids] * c.embedding_multiplier
        rep = c.n_heads // c.n_kv
        rms = llama_ref.rms_norm
        for L in range(c.n_layers):
            p = "model.layers.%d." % L
            x = rms(h, self.w[p + "input_layernorm.weight"], c.eps)
            q = self._lin(x, p + "self_attn.q_proj").view(n, c.n_heads, c.head_dim)
            k = self._lin(x, p + "self_attn.k_proj").view(n, c.n_kv, c.head_dim)
            v = self._lin(x, p + "self_attn.v_proj").view(n, c.n_kv, c.head_dim)
            if c.model_type == "qwen3_moe":
                q = rms(q, self.w[p + "self_attn.q_norm.weight"], c.eps)
                k = rms(k, self.w[p + "self_attn.k_norm.weight"], c.eps)
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
            q = llama_ref.apply_rope(q, pos, self.inv, self.div, self.mscale)
            k = llama_ref.apply_rope(k, pos, self.inv, self.div, self.mscale)
            k = k.repeat_interleave(rep, dim=0)
            v = v.repeat_interleave(rep, dim=0)
            s = (q @ k.transpose(1, 2)) * c.attn_scale
            s = s.masked_fill(causal[None], float("-inf"))
            a = (torch.softmax(s, dim=-1) @ v).transpose(0, 1).reshape(n, c.n_heads * c.head_dim)
            h = h + self._lin(a, p + "self_attn.o_proj") * c.residual_multiplier
            x = rms(h, self.w[p + "post_attention_layernorm.weight"], c.eps)
            if c.sparse(L):
                y = self._moe(x, L)
            else:
                g = self._lin(x, p + "mlp.gate_proj")
                u = self._lin(x, p + "mlp.up_proj")
                y = self._lin(torch.nn.functional.silu(g) * u, p + "mlp.down_proj")
            h = h + y * c.residual_multiplier
        h = rms(h, self.w["model.norm.weight"], c.eps)
        return (h @ self.head.T) / c.logits_scaling


def expert_inputs(m, ids):
    """Layer 0 of a sparse first block: the FFN-normed input x [n, d], the routed experts
    sel [n, k] (the same stable top-k as _moe) and each routed pair's down-projection input
    g [n, k, ff] = silu(gate x) * (up x) of that expert, float64. The per-expert Hessians a
    GPTQ / SparseGPT calibration gathers from the tokens routed to expert e are then
    2/n_e sum x x^T over those tokens (and the same for g)."""
    c = m.cfg
    if not c.sparse(0):
        raise ValueError("layer 0 is not sparse")
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    n = ids.numel()
    pos = torch.arange(n)
    causal = pos[None, :] > pos[:, None]
    rep = c.n_heads // c.n_kv
    rms = llama_ref.rms_norm
    p = "model.layers.0."
    h = m.w["model.embed_tokens.weight"][ids] * c.embedding_multiplier
    x = rms(h, m.w[p + "input_layernorm.weight"], c.eps)
    q = m._lin(x, p + "self_attn.q_proj").view(n, c.n_heads, c.head_dim)
    k = m._lin(x, p + "self_attn.k_proj").view(n, c.n_kv, c.head_dim)
    v = m._lin(x, p + "self_attn.v_proj").view(n, c.n_kv, c.head_dim)
    if c.model_type == "qwen3_moe":
        q = rms(q, m.w[p + "self_attn.q_norm.weight"], c.eps)
        k = rms(k, m.w[p + "self_attn.k_norm.weight"], c.eps)
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    q = llama_ref.apply_rope(q, pos, m.inv, m.div, m.mscale)
    k = llama_ref.apply_rope(k, pos, m.inv, m.div, m.mscale).repeat_interleave(rep, dim=0)
    v = v.repeat_interleave(rep, dim=0)
    s = ((q @ k.transpose(1, 2)) * c.attn_scale).masked_fill(causal[None], float("-inf"))
    a = (torch.softmax(s, dim=-1) @ v).transpose(0, 1).reshape(n, c.n_heads * c.head_dim)
    h = h + m._lin(a, p + "self_attn.o_proj") * c.residual_multiplier
    x = rms(h, m.w[p + "post_attention_layernorm.weight"], c.eps)
    R = m._router(0)
    logits = torch.stack([(x * R[e]).sum(dim=-1) for e in range(c.n_experts)], dim=-1)
    sel = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :c.top_k]
    ex = m._experts(0)
    g = torch.zeros(n, c.top_k, ex[0][0].shape[0], dtype=torch.float64)
    for t in range(n):
        for j in range(c.top_k):
            gw, uw, _ = ex[int(sel[t, j])]
            g[t, j] = torch.nn.functional.silu(gw @ x[t]) * (uw @ x[t])
    return x, sel, g


def main(argv):
    if len(argv) > 2 and argv[1] == "experts":
        # moe_ref.py experts MODEL_DIR OUT.h5 ID...: layer 0's routed expert inputs
        import h5py
        m = MoeModel(argv[2])
        ids = [int(t) for t in argv[4:]]
        x, sel, g = expert_inputs(m, ids)
        with h5py.File(argv[3], "w") as f:
            f["tokens"] = np.asarray(ids, dtype=np.int64)
            f["x"] = x.numpy()
            f["sel"] = sel.numpy().astype(np.int64)
            f["g"] = g.numpy()
            f.attrs["reference"] = np.bytes_(b"tests/reference/moe_ref.py experts (float64 PyTorch)")
        return 0
    if len(argv) > 1 and argv[1] == "golden":
        import h5py
        made = []

        def make(folder):
            made.append(MoeModel(folder))
            return made[-1]

        llama_ref.Model = make  # the golden writer builds its model through this name
        rc = llama_ref.write_golden(argv[2:])
        out = argv[argv.index("--out") + 1]
        m = made[0]
        with h5py.File(out, "r+") as f:
            f.attrs["reference"] = np.bytes_(b"tests/reference/moe_ref.py (float64 PyTorch forward)")
            f.attrs["routing_boundary_ties"] = np.int64(m.ties)
            f.attrs["routed_token_layers"] = np.int64(m.routed)
            f.attrs["topk_other_choice"] = np.int64(m.topk_differs)
        sys.stderr.write("%s: %d of %d routed token-layers had a tie on the top-%d boundary "
                         "(torch.topk chose another set on %d)\n"
                         % (out, m.ties, m.routed, m.cfg.top_k, m.topk_differs))
        if m.ties == 0:
            sys.stderr.write("moe_ref.py: warning: no routing tie on a top-k boundary\n")
        return rc
    if len(argv) < 3:
        sys.stderr.write("usage: moe_ref.py MODEL_DIR ID [ID ...]\n")
        return 2
    m = MoeModel(argv[1])
    lg = m.forward([int(t) for t in argv[2:]])
    for i in range(lg.shape[0]):
        print(i, int(lg[i].argmax()), float(lg[i].abs().max()))
    sys.stderr.write("boundary ties: %d of %d\n" % (m.ties, m.routed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
