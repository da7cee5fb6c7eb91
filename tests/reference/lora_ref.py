#!/usr/bin/python3
"""
Float64 reference of a base model with a PEFT LoRA adapter, run unmerged as PEFT's
forward defines it (facts from peft's tuners/lora): every adapted Linear computes
  y = x W^T + scale * (x A^T) B^T,  scale = alpha / r  (alpha / sqrt(r) with use_rslora),
with r and alpha taken per module from rank_pattern / alpha_pattern (a key matches the
module name or a dot-separated suffix of it, as a regex). The base forward is
llama_ref.Model (float64, shares no code with lmpress); the adapter is read with
llama_ref's own safetensors parser (bf16/f16/f32 upcast exactly).

Writes the golden file lmpress's LoRA tests compare with (tests/unit/test_lora.c):
  OUT/ref.json        {"ids": [...], "vocab": V, "model": ..., "adapter": ...}
  OUT/ref_logits.f32  float32 little-endian logits [len(ids)][V] of base + adapter
The ids are lmpress's tokens of the held-out text (tinystories-valid-sample.txt from line
15 on), BOS first, truncated to N.

Usage: lora_ref.py LMPRESS MODEL_DIR ADAPTER_DIR TEXT OUT_DIR [--n 32]
"""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402

PREFIX = "base_model.model."


def pattern_value(patterns, module, default):
    for key, val in (patterns or {}).items():
        if re.match(r"(.*\.)?(%s)$" % key, module):
            return val
    return default


class LoraModel(llama_ref.Model):
    def __init__(self, folder, adapter):
        super().__init__(folder)
        with open(os.path.join(adapter, "adapter_config.json")) as f:
            cfg = json.load(f)
        if cfg.get("use_dora"):
            raise ValueError("DoRA is not part of this reference")
        tensors = llama_ref._read_safetensors(os.path.join(adapter, "adapter_model.safetensors"))
        self.lora = {}
        for name, t in tensors.items():
            if not name.endswith(".lora_A.weight"):
                continue
            module = name[len(PREFIX):-len(".lora_A.weight")]
            A = t
            B = tensors[PREFIX + module + ".lora_B.weight"]
            r = pattern_value(cfg.get("rank_pattern"), module, cfg["r"])
            alpha = pattern_value(cfg.get("alpha_pattern"), module, cfg["lora_alpha"])
            assert A.shape[0] == r and B.shape[1] == r, module
            s = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
            self.lora[module] = (A, B, s)

    def _lin(self, x, name):
        y = super()._lin(x, name)
        if name in self.lora:
            A, B, s = self.lora[name]
            y = y + s * ((x @ A.T) @ B.T)
        return y


def main(argv):
    lmpress, model_dir, adapter, text, out = argv[1:6]
    n = int(argv[argv.index("--n") + 1]) if "--n" in argv else 32
    with open(text) as f:
        held = "\n".join(f.read().split("\n")[14:])
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "lora-ref-%d.txt" % os.getpid())
    with open(tmp, "w") as f:
        f.write(held)
    ids = [int(x) for x in subprocess.run([lmpress, "tokenize", model_dir, "-f", tmp], check=True,
                                          capture_output=True, text=True).stdout.split()][:n]
    os.unlink(tmp)
    m = LoraModel(model_dir, adapter)
    logits = m.forward(ids)
    base = llama_ref.Model.forward(llama_ref.Model(model_dir), ids)
    print("positions %d, vocab %d, max |logit| %.3f, max |adapter effect| %.4f" %
          (len(ids), logits.shape[1], float(logits.abs().max()), float((logits - base).abs().max())))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump({"ids": ids, "vocab": int(logits.shape[1]), "model": os.path.basename(os.path.normpath(model_dir)),
                   "adapter": os.path.basename(os.path.normpath(adapter)),
                   "reference": "tests/reference/lora_ref.py (float64, unmerged)"}, f, indent=1)
        f.write("\n")
    logits.to(torch.float32).numpy().astype("<f4").tofile(os.path.join(out, "ref_logits.f32"))


if __name__ == "__main__":
    main(sys.argv)
