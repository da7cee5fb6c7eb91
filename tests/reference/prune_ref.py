#!/usr/bin/python3
"""
Independent reference for `lmpress prune --method magnitude|wanda` (and the run.c "windows"
perplexity) on a small Llama checkpoint, in float64 PyTorch. It shares no code with lmpress:
its own safetensors parser, its own Llama forward, its own calibration-window drawing, its
own Wanda. Only tokenization is delegated to `lmpress tokenize` (the fixture tokenizer;
the dense perplexity check below shows the ids are the fixture's: its README's 24.374 was
computed with an independent stdlib tokenizer).

Forward (Hugging Face LlamaForCausalLM): h = embed[ids]; per block
  x = rms(h) * w_in;  q,k,v = x Wq^T, x Wk^T, x Wv^T;  RoPE rotate-half (pairs i, i + hd/2),
  inv_freq_i = theta^(-2i/hd), positions 0..L-1 in every window; causal softmax(q k^T / sqrt(hd))
  with GQA (K/V head j serves query heads j*g .. j*g+g-1, g = n_heads / n_kv_heads, HF repeat_kv);
  h += attn Wo^T;  x = rms(h) * w_post;  h += (silu(x Wg^T) * (x Wu^T)) Wd^T
  logits = rms(h) * w_final @ embed^T (tied).  RMSNorm x / sqrt(mean(x^2) + eps).
Everything in float64 (weights are F32, upcast exactly).

Calibration windows (lmpress lib/quant/calib.c, formats/sparse.c): the bytes [--calib-offset,
--calib-end or the end of the file) of the calibration file are tokenized WITH the tokenizer's BOS,
n tokens; for each of N samples a start i = xoshiro256**() % (n - L) (generator seeded by
splitmix64 from --seed, lib/core/util.c) and the window ids[i : i + L]. No BOS is substituted.

Wanda (Sun et al. 2023; locuslab/wanda lib/prune.py prune_wanda + lib/layerwrapper.py): block by
block, one forward pass of the block with its ORIGINAL weights over all windows gathers, for every
linear, S_j = sum over all calibration tokens of x_j^2 (x = the linear's actual input: the normed
hidden state for q/k/v and gate/up, the attention output for o_proj, silu(gate)*up for down_proj);
score_ij = |W_ij| * sqrt(S_j) (the reference's mean instead of sum is a per-linear constant: same
order); per output row a stable ascending sort and the first int(cols * s) columns are zeroed;
then the block is run again with all its linears pruned and its outputs are the next block's
inputs. With --pattern N:M (e.g. 2:4) the selection is per group of M consecutive columns of
a row instead: its M - N lowest scores are zeroed (stable order: of equal scores the lower column
goes first, as lmpress's (score, index) order in lib/prune/prune.c). Magnitude: the same with
score |W_ij| (per row, lmpress's default), or with --scope matrix the int(numel * s) smallest |W|
of each matrix (stable order; the wanda repo's prune_magnitude zeroes |W| <= the sorted value at
index int(numel * s), i.e. one more weight).

Per linear it also reports the relative output error ||X W^T - X W'^T||_F / ||X W^T||_F on the
inputs X it sees in the pruned block (what `lmpress prune --json` reports as "err"); with
--lmp-json the two are compared, which checks that the calibration windows and the forward are
the same as lmpress's (for magnitude the masks do not depend on the windows, so this isolates
them). With --lmp-pruned the zero pattern of lmpress's dense safetensors output is compared
with ours per linear.

Perplexity ("windows", llama2.c run.c; lmpress ppl --protocol windows): the first --max-bytes
bytes of the text tokenized WITHOUT BOS, cut into n // 256 windows of 256 (tail dropped; only the
first --max-windows K when given, lmpress ppl --max-chunks), each fed as BOS + its first 255
tokens, all 256 tokens scored; ppl = exp(mean NLL).

Reproduce (from the repository root; heavy runs under the shared lock; T is both the calibration
and the evaluation text, disjoint ranges):
  M=../shared/fixtures/models/gutenberg-5M; T=../shared/fixtures/text/wikitext2-test.gptq-join.txt
  CAL="--calib $T --calib-offset 400000 --calib-samples 16 --calib-seqlen 256 --seed 0"
  flock /tmp/lmpress-heavy.lock build/lmpress prune $M -o /tmp/wanda-ref/lmp-wanda-16 --method wanda \
      --sparsity 0.5 $CAL -t 2 --json > /tmp/wanda-ref/lmp-wanda-16.json
  flock /tmp/lmpress-heavy.lock build/lmpress prune $M -o /tmp/wanda-ref/lmp-mag $CAL --method magnitude \
      --sparsity 0.5 -t 2 --json > /tmp/wanda-ref/lmp-mag.json
  flock /tmp/lmpress-heavy.lock /usr/bin/python3 tests/reference/prune_ref.py --model $M --text $T \
      --method dense --max-bytes 20000 100000 --expect-ppl 19.909 24.374 --check-prompt
  flock /tmp/lmpress-heavy.lock /usr/bin/python3 tests/reference/prune_ref.py --model $M --text $T \
      --method magnitude --sparsity 0.5 --calib-samples 16 --lmp-pruned /tmp/wanda-ref/lmp-mag \
      --lmp-json /tmp/wanda-ref/lmp-mag.json --max-bytes 20000 100000
  flock /tmp/lmpress-heavy.lock /usr/bin/python3 tests/reference/prune_ref.py --model $M --text $T \
      --method wanda --sparsity 0.5 --calib-samples 16 --lmp-pruned /tmp/wanda-ref/lmp-wanda-16 \
      --lmp-json /tmp/wanda-ref/lmp-wanda-16.json --max-bytes 20000 100000
(--calib-offset 400000 --calib-seqlen 256 --seed 0 are this script's defaults.) Options:
--threads (torch threads, default 2), --lmpress (binary, default build/lmpress), --out-json FILE,
--save-nll PREFIX (per-token NLLs, for paired comparisons between methods), --scope matrix,
--pattern N:M, --calib-end BYTE, --max-windows K, --golden FILE / --golden-key NAME.

Checks that make it exit 1: --expect-ppl (each within --ppl-tol relative, default 5e-4),
--check-prompt (logits of the fixture's reference/prompt_ids.txt vs prompt_logits_f32.bin within
1e-3), --lmp-pruned (every linear's mask agreement >= --min-mask-agree, default 0.999; a
different calibration draw gives 0.953-0.998 per linear), --lmp-json
(every linear's err within --err-tol relative, default 2e-3).

Golden masks (--golden FILE --golden-key NAME): sets runs[NAME] of the JSON file FILE (other runs
are kept) to the run's command line, calibration (byte range, samples, seqlen, seed, token count,
window starts), the perplexity of the first --max-bytes, the torch / numpy versions and, per linear
(layers 0.., in each q k v o gate up down), "kept" (nonzero weights after pruning) and "fnv1a":
FNV-1a 64, as 16 hex digits, over the row-major keep mask of the pruned weight, one byte per weight
(1 = nonzero, 0 = zero). tests/unit/test_prune.c computes the same digests from lmpress's pruned
weights and compares them with golden/wanda-gutenberg5m.json, made with that test's calibration
(bytes 100,000 .. 400,000 of T, 16 x 128 tokens, seed 0) by (M, T as above; 15-40 s in all):
  G="--model $M --text $T --method wanda --calib-offset 100000 --calib-end 400000 --calib-samples 16
     --calib-seqlen 128 --seed 0 --max-bytes 20000 --max-windows 16 --golden golden/wanda-gutenberg5m.json"
  flock /tmp/lmpress-heavy.lock /usr/bin/python3 tests/reference/prune_ref.py $G --sparsity 0.5 --golden-key wanda-0.5
  flock /tmp/lmpress-heavy.lock /usr/bin/python3 tests/reference/prune_ref.py $G --pattern 2:4 --golden-key wanda-2:4
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

DT = torch.float64
LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
M64 = (1 << 64) - 1


# ---------------------------------------------------------------- files

def read_safetensors(path):
    """{name: numpy array} of an F32/F16/BF16 safetensors file (8-byte LE header length, JSON
    header, raw little-endian data)."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a:base + b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name}: dtype {dt} not handled")
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def model_file(d):
    p = os.path.join(d, "model.safetensors")
    if not os.path.exists(p):
        raise SystemExit(f"{d}: no model.safetensors (sharded checkpoints are not handled)")
    return p


def tokenize(lmpress, model, data, bos):
    """ids of the bytes `data`, with or without the tokenizer's BOS, via `lmpress tokenize -f`."""
    with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/tmp"), delete=False) as f:
        f.write(data)
        name = f.name
    try:
        cmd = [lmpress, "tokenize", model, "-f", name] + ([] if bos else ["--no-bos"])
        r = subprocess.run(cmd, check=True, stdout=subprocess.PIPE)
    finally:
        os.unlink(name)
    return [int(t) for t in r.stdout.split()]


# ---------------------------------------------------------------- rng (lib/core/util.c)

class Xoshiro:
    """xoshiro256** seeded by four splitmix64 outputs of the seed."""

    def __init__(self, seed):
        x = seed & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def next(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result


def calib_windows(ids, n_samples, L, seed):
    n = len(ids)
    if n < L + 1:
        raise SystemExit(f"calibration text gives {n} tokens; need at least {L + 1}")
    rng = Xoshiro(seed)
    starts = [rng.next() % (n - L) for _ in range(n_samples)]
    return starts, torch.tensor([ids[i:i + L] for i in starts], dtype=torch.long)


# ---------------------------------------------------------------- model

class Llama:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            c = json.load(f)
        self.d = c["hidden_size"]
        self.nl = c["num_hidden_layers"]
        self.nh = c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads", self.nh)
        self.hd = c.get("head_dim") or self.d // self.nh
        self.eps = c.get("rms_norm_eps", 1e-5)
        self.theta = c.get("rope_theta", 10000.0)
        if c.get("rope_scaling"):
            raise SystemExit("rope_scaling is not handled")
        if not c.get("tie_word_embeddings", False):
            raise SystemExit("only tied embeddings are handled")
        self.bos = c.get("bos_token_id", 1)
        t = {k: torch.from_numpy(v).to(DT) for k, v in read_safetensors(model_file(model_dir)).items()}
        self.embed = t["model.embed_tokens.weight"]
        self.norm = t["model.norm.weight"]
        self.layers = []
        for i in range(self.nl):
            p = f"model.layers.{i}."
            L = {"in_norm": t[p + "input_layernorm.weight"], "post_norm": t[p + "post_attention_layernorm.weight"]}
            for n in LINEARS:
                sub = "self_attn." if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp."
                L[n] = t[p + sub + n + ".weight"]
            self.layers.append(L)
        self._rope = {}

    def rms(self, x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, L):
        if L not in self._rope:
            half = self.hd // 2
            inv = self.theta ** (-torch.arange(0, half, dtype=DT) * 2 / self.hd)
            ang = torch.arange(L, dtype=DT)[:, None] * inv[None, :]
            ang = torch.cat([ang, ang], -1)
            self._rope[L] = (torch.cos(ang), torch.sin(ang))
        return self._rope[L]

    def apply_rope(self, x, L):
        cos, sin = self.rope(L)
        half = self.hd // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rot * sin

    def block(self, l, h, W, hook=None):
        """One decoder block on h [B, L, d] with weights W (dict of the 7 linears); hook(name, X)
        is called with every linear's input X [B*L, in]."""
        P = self.layers[l]
        B, L, d = h.shape

        def lin(name, x):
            x2 = x.reshape(-1, x.shape[-1])
            if hook:
                hook(name, x2)
            return (x2 @ W[name].T).reshape(B, L, -1)

        x = self.rms(h, P["in_norm"])
        q = lin("q_proj", x).view(B, L, self.nh, self.hd).transpose(1, 2)
        k = lin("k_proj", x).view(B, L, self.nkv, self.hd).transpose(1, 2)
        v = lin("v_proj", x).view(B, L, self.nkv, self.hd).transpose(1, 2)
        q, k = self.apply_rope(q, L), self.apply_rope(k, L)
        g = self.nh // self.nkv
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        mask = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)
        s = s.masked_fill(mask, float("-inf"))
        a = torch.softmax(s, -1) @ v
        a = a.transpose(1, 2).reshape(B, L, self.nh * self.hd)
        h = h + lin("o_proj", a)
        x = self.rms(h, P["post_norm"])
        gt = lin("gate_proj", x)
        up = lin("up_proj", x)
        h = h + lin("down_proj", torch.nn.functional.silu(gt) * up)
        return h

    def logits(self, ids, Ws):
        h = self.embed[ids]
        for l in range(self.nl):
            h = self.block(l, h, Ws[l])
        return self.rms(h, self.norm) @ self.embed.T


# ---------------------------------------------------------------- pruning

def row_prune(score, k):
    """mask (True = keep) zeroing the k lowest scores of every row (stable ascending order)."""
    keep = torch.ones_like(score, dtype=torch.bool)
    if k > 0:
        idx = torch.sort(score, dim=-1, stable=True)[1][:, :k]
        keep.scatter_(1, idx, False)
    return keep


def matrix_prune(score, k):
    keep = torch.ones(score.numel(), dtype=torch.bool)
    if k > 0:
        idx = torch.sort(score.flatten(), stable=True)[1][:k]
        keep[idx] = False
    return keep.view_as(score)


def nm_prune(score, n, m):
    """mask (True = keep) keeping the n highest scores of every m consecutive columns of a row:
    the m - n lowest of each group are zeroed (stable ascending order, so of equal scores the
    lower column goes first, as lmpress's (score, index) order in lib/prune/prune.c)."""
    R, C = score.shape
    g = score.reshape(R, C // m, m)
    keep = torch.ones_like(g, dtype=torch.bool)
    idx = torch.sort(g, dim=-1, stable=True)[1][..., :m - n]
    keep.scatter_(2, idx, False)
    return keep.reshape(R, C)


def prune_model(m, method, sparsity, scope, windows, chunk, pattern=None):
    """Returns (pruned weights per layer, masks per layer, per-linear rel. output errors)."""
    N = windows.shape[0] if windows is not None else 0
    states = [m.embed[windows[i:i + chunk]] for i in range(0, N, chunk)] if N else []
    Ws, masks, errs = [], [], {}
    for l in range(m.nl):
        orig = {n: m.layers[l][n] for n in LINEARS}
        xsq = {}
        if method == "wanda":
            xsq = {n: torch.zeros(orig[n].shape[1], dtype=DT) for n in LINEARS}

            def stat_hook(name, X):
                xsq[name] += (X * X).sum(0)

            for h in states:
                m.block(l, h, orig, stat_hook)
        W, K = {}, {}
        for n in LINEARS:
            w = orig[n]
            score = w.abs()
            if method == "wanda":
                score = score * torch.sqrt(xsq[n])[None, :]
            if pattern:
                keep = nm_prune(score, *pattern)
            elif scope == "matrix":
                keep = matrix_prune(score, int(math.floor(sparsity * w.numel() + 1e-9)))
            else:
                keep = row_prune(score, int(math.floor(sparsity * w.shape[1] + 1e-9)))
            W[n] = torch.where(keep, w, torch.zeros_like(w))
            K[n] = keep
        num = {n: 0.0 for n in LINEARS}
        den = {n: 0.0 for n in LINEARS}

        def err_hook(name, X):
            y0 = X @ orig[name].T
            y1 = X @ W[name].T
            num[name] += float(((y0 - y1) ** 2).sum())
            den[name] += float((y0 * y0).sum())

        states = [m.block(l, h, W, err_hook) for h in states]
        for n in LINEARS:
            if N:
                errs[f"model.layers.{l}.{'self_attn' if n[0] in 'qkvo' else 'mlp'}.{n}"] = math.sqrt(num[n] / den[n])
        Ws.append(W)
        masks.append(K)
    return Ws, masks, errs


def ppl_windows(m, Ws, ids, ctx=256, batch=16, max_windows=0):
    nw = len(ids) // ctx
    if max_windows > 0:
        nw = min(nw, max_windows)
    t = torch.tensor(ids[:nw * ctx], dtype=torch.long).view(nw, ctx)
    inp = torch.cat([torch.full((nw, 1), m.bos, dtype=torch.long), t[:, :-1]], 1)
    nll = []
    for i in range(0, nw, batch):
        lg = m.logits(inp[i:i + batch], Ws)
        lp = torch.log_softmax(lg, -1)
        nll.append(-lp.gather(-1, t[i:i + batch, :, None])[..., 0])
    nll = torch.cat(nll).numpy()  # [nw, ctx]
    return math.exp(float(nll.sum()) / (nw * ctx)), nw, nw * ctx, nll


def hf_name(l, n):
    return f"model.layers.{l}.{'self_attn' if n in ('q_proj', 'k_proj', 'v_proj', 'o_proj') else 'mlp'}.{n}.weight"


def fnv1a64(data, h=0xcbf29ce484222325):
    for byte in data:
        h = ((h ^ byte) * 0x100000001b3) & M64
    return h


def mask_digests(m, Ws):
    """Per linear (layers in order, q k v o gate up down in each): FNV-1a 64 over the row-major
    keep mask of the pruned weights, one byte per weight (1 = nonzero, 0 = zero), and the
    number of nonzero weights. tests/unit/test_prune.c computes the same from lmpress's."""
    out = []
    for l in range(m.nl):
        for n in LINEARS:
            w = Ws[l][n]
            keep = (w != 0).to(torch.uint8).contiguous().numpy()
            out.append({"name": hf_name(l, n)[:-len(".weight")], "rows": int(w.shape[0]), "cols": int(w.shape[1]),
                        "kept": int(keep.sum()), "fnv1a": "%016x" % fnv1a64(keep.tobytes())})
    return out


def write_golden(path, key, entry):
    """Sets runs[key] of the golden JSON file `path` (created when absent), keeping other runs."""
    doc = {}
    if os.path.exists(path):
        with open(path) as f:
            doc = json.load(f)
    doc["reference"] = "tests/reference/prune_ref.py"
    doc["digest"] = ("per linear: FNV-1a 64 (hex) over the row-major keep mask of the pruned weight, "
                     "one byte per weight (1 = nonzero, 0 = zero); kept = number of nonzero weights")
    doc.setdefault("runs", {})[key] = entry
    doc["runs"] = dict(sorted(doc["runs"].items()))
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True, help="evaluation text, also the calibration text unless --calib")
    ap.add_argument("--calib", help="calibration text (default: --text)")
    ap.add_argument("--lmpress", default="build/lmpress")
    ap.add_argument("--method", choices=["dense", "magnitude", "wanda"], required=True)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--scope", choices=["row", "matrix"], default="row")
    ap.add_argument("--pattern", metavar="N:M", help="N:M semi-structured (keep N of every M consecutive "
                    "inputs of a row; --sparsity is ignored)")
    ap.add_argument("--calib-offset", type=int, default=400000)
    ap.add_argument("--calib-end", type=int, default=0, help="end (exclusive byte) of the calibration range "
                    "(default: the end of the file)")
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--calib-seqlen", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-calib", action="store_true", help="magnitude without calibration (no errors)")
    ap.add_argument("--max-bytes", type=int, nargs="*", default=[20000])
    ap.add_argument("--max-windows", type=int, default=0, help="score only the first K windows (ppl --max-chunks)")
    ap.add_argument("--expect-ppl", type=float, nargs="*")
    ap.add_argument("--ppl-tol", type=float, default=5e-4)
    ap.add_argument("--check-prompt", action="store_true")
    ap.add_argument("--lmp-pruned", help="lmpress prune output folder (dense safetensors) to compare masks with")
    ap.add_argument("--min-mask-agree", type=float, default=0.999)
    ap.add_argument("--lmp-json", help="`lmpress prune --json` output to compare per-linear errors with")
    ap.add_argument("--err-tol", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=16, help="calibration windows per forward batch")
    ap.add_argument("--out-json")
    ap.add_argument("--golden", metavar="FILE", help="write the per-linear mask digests and the perplexity of "
                    "the first --max-bytes as run --golden-key of this JSON file (other runs kept)")
    ap.add_argument("--golden-key", help="the run's name in --golden (default: METHOD-SPARSITY or METHOD-N:M)")
    ap.add_argument("--save-nll", metavar="PREFIX", help="save the per-token NLLs [windows, 256] as PREFIX.MAXBYTES.npy")
    a = ap.parse_args()
    pattern = None
    if a.pattern:
        try:
            pattern = tuple(int(x) for x in a.pattern.split(":"))
            if len(pattern) != 2 or not 0 < pattern[0] < pattern[1]:
                raise ValueError
        except ValueError:
            raise SystemExit(f"--pattern {a.pattern}: expected N:M with 0 < N < M, e.g. 2:4")
        if a.scope != "row":
            raise SystemExit("--pattern works on rows (--scope row)")
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    failed = []
    report = {"method": a.method, "sparsity": a.sparsity, "scope": a.scope, "pattern": a.pattern}

    m = Llama(a.model)
    print(f"model {a.model}: {m.nl} layers, d {m.d}, heads {m.nh}/{m.nkv}, head_dim {m.hd}")

    if a.check_prompt:
        ref = os.path.join(a.model, "reference")
        with open(os.path.join(ref, "prompt_ids.txt")) as f:
            pids = [int(x) for x in f.read().split()]
        want = np.fromfile(os.path.join(ref, "prompt_logits_f32.bin"), dtype="<f4").reshape(len(pids), -1)
        got = m.logits(torch.tensor([pids]), [{n: L[n] for n in LINEARS} for L in m.layers])[0].numpy()
        dmax = float(np.abs(got - want).max())
        print(f"reference prompt ({len(pids)} tokens): max |logit - fixture's f32 logit| = {dmax:.3g}")
        report["prompt_max_abs_diff"] = dmax
        if not dmax < 1e-3:
            failed.append(f"prompt logits differ by {dmax}")

    windows = None
    if a.method == "wanda" or (a.method == "magnitude" and not a.no_calib):
        with open(a.calib or a.text, "rb") as f:
            cdata = f.read()
        cdata = cdata[a.calib_offset:a.calib_end or len(cdata)]
        cids = tokenize(a.lmpress, a.model, cdata, bos=True)
        starts, windows = calib_windows(cids, a.calib_samples, a.calib_seqlen, a.seed)
        print(f"calibration: {len(cdata)} bytes from byte {a.calib_offset} -> {len(cids)} tokens (BOS first: "
              f"{cids[0] == m.bos}); {a.calib_samples} x {a.calib_seqlen}, seed {a.seed}; starts {starts[:8]}"
              f"{' ...' if len(starts) > 8 else ''}")
        report["calib_tokens"] = len(cids)
        report["calib_starts"] = starts

    if a.method == "dense":
        Ws = [{n: L[n] for n in LINEARS} for L in m.layers]
        masks, errs = None, {}
    else:
        Ws, masks, errs = prune_model(m, a.method, a.sparsity, a.scope, windows, a.chunk, pattern)
        z = sum(int((~K[n]).sum()) for K in masks for n in LINEARS)
        tot = sum(K[n].numel() for K in masks for n in LINEARS)
        print(f"{a.method} {a.pattern or a.sparsity} ({a.scope}): {z} of {tot} linear weights zero ({100 * z / tot:.3f}%)")
        if errs:
            print(f"mean relative output error over {len(errs)} linears: {sum(errs.values()) / len(errs):.4f}")
        report["errs"] = errs

    if a.lmp_json:
        with open(a.lmp_json) as f:
            lj = json.load(f)
        worst, wn = 0.0, ""
        if not errs or any(e["err"] < 0 for e in lj["layers"]):
            failed.append(f"{a.lmp_json}: no per-linear errors to compare (both runs need calibration text)")
            lj["layers"] = []
        for e in lj["layers"]:
            mine = errs.get(e["name"])
            if mine is None:
                failed.append(f"no error of ours for {e['name']}")
                continue
            rel = abs(mine - e["err"]) / max(e["err"], 1e-12)
            if rel > worst:
                worst, wn = rel, e["name"]
        if lj["layers"]:
            print(f"per-linear output error vs {a.lmp_json}: largest relative difference {worst:.3g} ({wn}); "
                  f"means ours {sum(errs.values()) / len(errs):.5f}, lmpress "
                  f"{sum(e['err'] for e in lj['layers']) / len(lj['layers']):.5f}")
        report["err_max_rel_diff"] = worst
        if not worst <= a.err_tol:
            failed.append(f"per-linear errors differ from lmpress's by {worst:.3g} relative ({wn})")

    if a.lmp_pruned:
        if masks is None:
            raise SystemExit("--lmp-pruned needs a pruning method")
        lw = read_safetensors(model_file(a.lmp_pruned))
        agree = {}
        print(f"mask agreement with {a.lmp_pruned} "
              "(fraction of identical keep/zero entries / fraction of identical rows / entries differing):")
        for l in range(m.nl):
            parts = []
            for n in LINEARS:
                theirs = torch.from_numpy(lw[hf_name(l, n)]) != 0
                mine = masks[l][n]
                frac = float((theirs == mine).double().mean())
                rows = float((theirs == mine).all(1).double().mean())
                ndiff = int((theirs != mine).sum())
                agree[hf_name(l, n)] = {"entries": frac, "rows": rows, "differing": ndiff}
                parts.append(f"{n} {frac:.5f}/{rows:.3f}/{ndiff}")
                if frac < a.min_mask_agree:
                    failed.append(f"{hf_name(l, n)}: masks agree on {frac:.4f} < {a.min_mask_agree}")
            print(f"  layer {l}: " + "  ".join(parts))
        allf = [v["entries"] for v in agree.values()]
        print(f"  min {min(allf):.5f}, mean {sum(allf) / len(allf):.5f}, "
              f"{sum(v['differing'] for v in agree.values())} entries differ in all")
        report["mask_agreement"] = agree

    with open(a.text, "rb") as f:
        tdata = f.read()
    ppls = {}
    for i, mb in enumerate(a.max_bytes):
        ids = tokenize(a.lmpress, a.model, tdata[:mb], bos=False)
        ppl, nw, nt, nll = ppl_windows(m, Ws, ids, max_windows=a.max_windows)
        ppls[mb] = ppl
        if a.save_nll:
            np.save(f"{a.save_nll}.{mb}.npy", nll)
        line = f"ppl windows, first {mb} bytes ({len(ids)} tokens, {nw} windows, {nt} scored): {ppl:.4f}"
        if a.expect_ppl and i < len(a.expect_ppl):
            want = a.expect_ppl[i]
            rel = abs(ppl - want) / want
            line += f" (expected {want}, rel. diff {rel:.2e})"
            if not rel <= a.ppl_tol:
                failed.append(f"ppl {ppl:.4f} on {mb} bytes, expected {want}")
        print(line)
    report["ppl"] = ppls
    if a.golden:
        if a.method == "dense":
            raise SystemExit("--golden needs a pruning method")
        digests = mask_digests(m, Ws)
        key = a.golden_key or f"{a.method}-{a.pattern or a.sparsity}"
        entry = {
            "command": " ".join(["python3", "tests/reference/prune_ref.py"] + sys.argv[1:]),
            "model": a.model,
            "method": a.method,
            "sparsity": None if pattern else a.sparsity,
            "pattern": a.pattern,
            "calibration": None if windows is None else {
                "text": a.calib or a.text, "offset": a.calib_offset, "end": a.calib_end or None,
                "bos": True, "samples": a.calib_samples, "seqlen": a.calib_seqlen, "seed": a.seed,
                "mode": "random", "tokens": report["calib_tokens"], "starts": report["calib_starts"]},
            "ppl": {"protocol": "windows", "ctx": 256, "max_bytes": a.max_bytes[0], "max_windows": a.max_windows,
                    "text": a.text, "value": round(ppls[a.max_bytes[0]], 6)} if a.max_bytes else None,
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "linears": digests,
        }
        write_golden(a.golden, key, entry)
        print(f"golden: {len(digests)} linear digests and the perplexity written to {a.golden} as {key!r}")
    report["failed"] = failed
    if a.out_json:
        with open(a.out_json, "w") as f:
            json.dump(report, f, indent=1)
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
