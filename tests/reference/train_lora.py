#!/usr/bin/python3
"""
Trains a real LoRA adapter on the gutenberg-5M fixture model and saves it in PEFT's
layout (adapter_config.json + adapter_model.safetensors, written here by hand: peft and
safetensors are not needed). The adapter is committed to golden/lora-gutenberg5m/ and
drives lmpress's LoRA tests (merge, unmerged engine, adapter GGUF).

Fine-tune text: the first 14 lines of tinystories-valid-sample.txt (children's stories,
unlike the model's Project Gutenberg books); lines 15-19 are held out for evaluation.
Token ids come from lmpress's own tokenizer (`lmpress tokenize -f`), so the model sees
exactly what lmpress feeds it.

LoRA as PEFT defines it (facts from peft's tuners/lora): on each targeted Linear W (out, in)
  y = x W^T + scale * (x A^T) B^T,  A (r, in) kaiming-uniform(a=sqrt(5)), B (out, r) = 0,
  scale = lora_alpha / r (rank_pattern / alpha_pattern override r / alpha per module).
Here: r = 8 on q/k/v/gate/up/down, r = 4 on o_proj (rank_pattern), lora_alpha 16 and 8 on
down_proj (alpha_pattern), on every layer; lora_dropout 0. Training: Adam lr 5e-4, 60
steps of 4 random windows of 128 tokens (BOS + 127), float32, seed 0; factors saved in bf16.

Usage: train_lora.py LMPRESS MODEL_DIR TEXT OUT_DIR [--steps N]
"""
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402  (weights, config, RoPE: the float64 reference's own code)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
R, ALPHA = 8, 16.0
RANK_PATTERN = {"o_proj": 4}
ALPHA_PATTERN = {"down_proj": 8.0}
TRAIN_LINES = 14


def module_path(layer, t):
    return "model.layers.%d.%s.%s" % (layer, "self_attn" if t in TARGETS[:4] else "mlp", t)


def tokens_of(lmpress, model, text):
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "lora-train-%d.txt" % os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    out = subprocess.run([lmpress, "tokenize", model, "-f", tmp, "--no-bos"], check=True,
                         capture_output=True, text=True).stdout
    os.unlink(tmp)
    return [int(x) for x in out.split()]


class LoraLlama(torch.nn.Module):
    def __init__(self, folder):
        super().__init__()
        cfg = llama_ref.load_config(folder)
        self.c = cfg
        self.w = {k: v.to(torch.float32) for k, v in llama_ref.load_weights(folder).items()}
        inv, self.div = llama_ref.rope_inv_freq(cfg)
        self.inv = inv
        g = torch.Generator().manual_seed(0)
        self.A = torch.nn.ParameterDict()
        self.B = torch.nn.ParameterDict()
        self.scale = {}
        for L in range(cfg.n_layers):
            for t in TARGETS:
                name = module_path(L, t)
                W = self.w[name + ".weight"]
                r = RANK_PATTERN.get(t, R)
                a = ALPHA_PATTERN.get(t, ALPHA)
                bound = 1.0 / math.sqrt(W.shape[1])  # kaiming_uniform(a=sqrt(5)) on (r, in)
                key = name.replace(".", "_")
                self.A[key] = torch.nn.Parameter((torch.rand(r, W.shape[1], generator=g) * 2 - 1) * bound)
                self.B[key] = torch.nn.Parameter(torch.zeros(W.shape[0], r))
                self.scale[key] = a / r

    def lin(self, x, name):
        key = name.replace(".", "_")
        y = x @ self.w[name + ".weight"].T
        if key in self.A:
            y = y + (x @ self.A[key].T) @ self.B[key].T * self.scale[key]
        return y

    def forward(self, ids):  # ids [b, n]
        c = self.c
        b, n = ids.shape
        pos = torch.arange(n)
        mask = pos[None, :] > pos[:, None]
        h = self.w["model.embed_tokens.weight"][ids]
        rep = c.n_heads // c.n_kv
        ang = (pos.to(torch.float64) / self.div)[:, None] * self.inv[None, :]
        cos, sin = torch.cos(ang).float(), torch.sin(ang).float()

        def rope(x):
            hh = x.shape[-1] // 2
            x1, x2 = x[..., :hh], x[..., hh:]
            return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

        def rms(x, w):
            return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + c.eps) * w

        for L in range(c.n_layers):
            p = "model.layers.%d." % L
            x = rms(h, self.w[p + "input_layernorm.weight"])
            q = self.lin(x, p + "self_attn.q_proj").view(b, n, c.n_heads, c.head_dim).transpose(1, 2)
            k = self.lin(x, p + "self_attn.k_proj").view(b, n, c.n_kv, c.head_dim).transpose(1, 2)
            v = self.lin(x, p + "self_attn.v_proj").view(b, n, c.n_kv, c.head_dim).transpose(1, 2)
            q, k = rope(q), rope(k)
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            s = (q @ k.transpose(2, 3)) / math.sqrt(c.head_dim)
            s = s.masked_fill(mask, float("-inf"))
            a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, n, c.n_heads * c.head_dim)
            h = h + self.lin(a, p + "self_attn.o_proj")
            x = rms(h, self.w[p + "post_attention_layernorm.weight"])
            g = self.lin(x, p + "mlp.gate_proj")
            u = self.lin(x, p + "mlp.up_proj")
            h = h + self.lin(torch.nn.functional.silu(g) * u, p + "mlp.down_proj")
        h = rms(h, self.w["model.norm.weight"])
        return h @ self.w["model.embed_tokens.weight"].T


def bf16_bytes(t):
    """float32 tensor -> bf16 bytes, round to nearest even (as torch's .bfloat16())."""
    return t.detach().contiguous().to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()


def save_peft(model, out_dir, base_path):
    os.makedirs(out_dir, exist_ok=True)
    header, blobs, off = {}, [], 0
    for L in range(model.c.n_layers):
        for t in TARGETS:
            name = module_path(L, t)
            key = name.replace(".", "_")
            for which, p in (("lora_A", model.A[key]), ("lora_B", model.B[key])):
                data = bf16_bytes(p)
                header["base_model.model.%s.%s.weight" % (name, which)] = {
                    "dtype": "BF16", "shape": list(p.shape), "data_offsets": [off, off + len(data)]}
                blobs.append(data)
                off += len(data)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(os.path.join(out_dir, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    cfg = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_path,
        "r": R, "lora_alpha": ALPHA, "lora_dropout": 0.0, "bias": "none",
        "target_modules": TARGETS, "rank_pattern": RANK_PATTERN, "alpha_pattern": ALPHA_PATTERN,
        "use_rslora": False, "use_dora": False, "fan_in_fan_out": False, "modules_to_save": None,
        "layers_to_transform": None, "init_lora_weights": True, "inference_mode": True,
    }
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def main(argv):
    lmpress, model_dir, text_path, out_dir = argv[1:5]
    steps = int(argv[argv.index("--steps") + 1]) if "--steps" in argv else 60
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with open(text_path) as f:
        lines = f.read().split("\n")
    train = "\n".join(lines[:TRAIN_LINES]) + "\n"
    held = "\n".join(lines[TRAIN_LINES:])
    ids = tokens_of(lmpress, model_dir, train)
    held_ids = tokens_of(lmpress, model_dir, held)
    print("train tokens %d, held-out tokens %d" % (len(ids), len(held_ids)))
    m = LoraLlama(model_dir)
    opt = torch.optim.Adam(list(m.A.values()) + list(m.B.values()), lr=5e-4)
    rng = np.random.default_rng(0)
    T, Bsz, bos = 128, 4, 1
    data = torch.tensor(ids)
    held_t = torch.tensor(held_ids)

    def held_nll():
        with torch.no_grad():
            tot, cnt = 0.0, 0
            for s in range(0, len(held_t) - T + 1, T - 1):
                x = torch.cat([torch.tensor([bos]), held_t[s:s + T - 1]])[None]
                lg = m(x)[0, :-1]
                tot += torch.nn.functional.cross_entropy(lg, x[0, 1:], reduction="sum").item()
                cnt += T - 1
            return tot / cnt

    print("held-out nll before %.4f" % held_nll())
    for step in range(steps):
        starts = rng.integers(0, len(data) - T, size=Bsz)
        x = torch.stack([torch.cat([torch.tensor([bos]), data[s:s + T - 1]]) for s in starts])
        logits = m(x)[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            print("step %d loss %.4f" % (step, loss.item()), flush=True)
        if step % 20 == 19:
            print("  held-out nll %.4f" % held_nll(), flush=True)
    print("held-out nll after %.4f" % held_nll())
    save_peft(m, out_dir, os.path.basename(os.path.normpath(model_dir)))


if __name__ == "__main__":
    main(sys.argv)
