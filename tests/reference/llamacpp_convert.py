#!/usr/bin/env python3
"""Run llama.cpp's own HF -> GGUF converter (convert_hf_to_gguf.py) without `transformers`.

llama.cpp's converter imports `transformers` (AutoConfig when it reads config.json,
AutoTokenizer in its vocabulary code). That package is not installed here, so this driver
puts a small stand-in module named `transformers` into sys.modules before the converter is
imported, then calls the converter's own main() with the remaining arguments. Everything
else (hyperparameters, tensor names, tensor transforms, GGUF writing through llama.cpp's
gguf-py) is the converter's code, unchanged.

What the stand-in does, and everything else this driver changes, is printed on stderr at
start ("stand-in:" lines), so every output file can be traced to it.

Usage:
    /usr/bin/python3 tests/reference/llamacpp_convert.py [--llamacpp DIR] HF_DIR \
        --outfile OUT.gguf --outtype f32

--llamacpp (or $LLAMACPP) names the llama.cpp checkout (default /work/llamacpp); its
gguf-py/ is put first on sys.path. Every other argument goes to the converter as is.

Stand-ins (all in this file):
  * transformers.AutoConfig.from_pretrained(dir): config.json as written, as an object
    whose to_dict() returns that dictionary. No defaults are filled in: this is the same
    dictionary the converter itself falls back to when AutoConfig fails.
  * transformers.AutoTokenizer.from_pretrained(dir): reads dir/tokenizer.json. It gives
    .vocab / get_vocab() (model.vocab plus the added tokens), get_added_vocab(),
    added_tokens_decoder (id -> object with .content, .special, .normalized, .lstrip,
    .rstrip, .single_word), vocab_size, is_fast, and encode/decode for what the
    vocabulary code does with them: encode(text) of an added token's exact text gives its
    id, decode(ids) joins the tokens' texts (added tokens as written, byte-level tokens
    mapped back through the GPT-2 byte alphabet). Any other encode raises, so an
    unexpected use would stop the conversion instead of writing something wrong.
  * The pre-tokenizer name (TextModel.get_vocab_base_pre): the converter identifies a
    BPE pre-tokenizer by hashing the ids a real tokenizer gives for a fixed text; the
    stand-in cannot tokenize, so the driver returns a stated name instead: "gpt-2" by
    default (--pre NAME to change), because the tokenizers lmpress synth writes use the
    ByteLevel pre-tokenizer with GPT-2's split regex. It only sets tokenizer.ggml.pre;
    logits do not depend on it.
  * torch: Debian's torch 1.13 lacks torch.float8_e4m3fn / float8_e5m2, which the
    converter names in its dtype tables at import time; the driver sets them to placeholder
    objects (no F8 tensors are converted).
  * Vocabulary for gemma, gemma2 and phi3: the converter's GemmaModel, Gemma2Model and
    Phi3MiniModel read only a SentencePiece tokenizer.model; the synth folders hold a
    byte-level BPE tokenizer.json and no tokenizer.model. When the folder has no
    tokenizer.model the driver makes these classes' set_vocab call the converter's own
    _set_vocab_gpt2 (what its Gemma3Model does in that case, and Phi3MiniModel when
    tokenizer_class is GPT2Tokenizer). Gemma's CodeGemma special tokens (fixed ids
    67..70, 107) and add_space_prefix=false are therefore not written. Hyperparameters
    and tensors are untouched.
"""

import json
import os
import sys
import types
from pathlib import Path


def note(msg):
    print("stand-in: " + msg, file=sys.stderr, flush=True)


def gpt2_byte_decoder():
    # the GPT-2 byte alphabet: printable bytes map to themselves, the rest to 256 + n
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = {}
    extra = 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class StandInAddedToken:
    def __init__(self, d):
        self.content = d["content"]
        self.special = bool(d.get("special", False))
        self.normalized = bool(d.get("normalized", not self.special))
        self.lstrip = bool(d.get("lstrip", False))
        self.rstrip = bool(d.get("rstrip", False))
        self.single_word = bool(d.get("single_word", False))

    def __str__(self):
        return self.content


class StandInTokenizer:
    is_fast = True

    def __init__(self, folder):
        path = Path(folder) / "tokenizer.json"
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        model = tj.get("model") or {}
        vocab = model.get("vocab")
        if not isinstance(vocab, dict):
            raise ValueError(f"{path}: stand-in AutoTokenizer handles only a model.vocab object (BPE / WordPiece)")
        self._base = dict(vocab)
        self._added = {}
        self.added_tokens_decoder = {}
        for d in tj.get("added_tokens") or []:
            self._added[d["content"]] = d["id"]
            self.added_tokens_decoder[d["id"]] = StandInAddedToken(d)
        self.vocab = dict(self._base)
        self.vocab.update(self._added)
        self.vocab_size = len(self._base)
        self._by_id = {i: t for t, i in self.vocab.items()}
        self._bytelevel = "ByteLevel" in json.dumps(tj.get("decoder"))
        self._bytes = gpt2_byte_decoder()

    def get_vocab(self):
        return dict(self.vocab)

    def get_added_vocab(self):
        return dict(self._added)

    def __len__(self):
        return len(self.vocab)

    def encode(self, text, add_special_tokens=True, **kw):
        if text in self._added:
            return [self._added[text]]
        raise NotImplementedError(
            "stand-in AutoTokenizer.encode handles only an added token's exact text, got "
            + repr(text[:40]))

    def decode(self, ids, **kw):
        out = []
        for i in ids:
            t = self._by_id[int(i)]
            if t in self._added or not self._bytelevel:
                out.append(t)
            else:
                out.append(bytes(self._bytes[c] for c in t).decode("utf-8", errors="replace"))
        return "".join(out)


class StandInConfig:
    def __init__(self, d):
        self._d = d
        for k, v in d.items():
            setattr(self, k, v)

    def to_dict(self):
        return json.loads(json.dumps(self._d))


def install_transformers_stand_in():
    mod = types.ModuleType("transformers")
    mod.__version__ = "0.0.0-lmpress-stand-in"
    mod.__file__ = __file__

    class AutoConfig:
        @staticmethod
        def from_pretrained(folder, **kw):
            with open(Path(folder) / "config.json", encoding="utf-8") as f:
                return StandInConfig(json.load(f))

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(folder, **kw):
            return StandInTokenizer(folder)

    mod.AutoConfig = AutoConfig
    mod.AutoTokenizer = AutoTokenizer
    sys.modules["transformers"] = mod
    note("transformers = minimal stand-in module (AutoConfig reads config.json as is; "
         "AutoTokenizer reads tokenizer.json: vocab, added tokens, encode of an added token's "
         "exact text only, byte-level decode)")


class MissingTorchDtype:
    """Placeholder for a torch dtype this torch lacks (never produced by any tensor)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<missing torch.{self.name}>"


def patch_old_torch():
    import torch
    missing = [n for n in ("float8_e4m3fn", "float8_e5m2") if not hasattr(torch, n)]
    for n in missing:
        setattr(torch, n, MissingTorchDtype(n))
    if missing:
        note(f"torch {torch.__version__} lacks {', '.join('torch.' + n for n in missing)}: set to "
             "placeholder objects, used by the converter only as keys of its dtype tables "
             "(no tensor here has such a dtype; an F8 tensor would fail to load)")


def main():
    argv = sys.argv[1:]
    llamacpp = os.environ.get("LLAMACPP", "/work/llamacpp")
    pre = "gpt-2"
    rest = []
    i = 0
    while i < len(argv):
        if argv[i] == "--llamacpp" and i + 1 < len(argv):
            llamacpp = argv[i + 1]
            i += 2
        elif argv[i] == "--pre" and i + 1 < len(argv):
            pre = argv[i + 1]
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    root = Path(llamacpp)
    script = root / "convert_hf_to_gguf.py"
    if not script.is_file():
        sys.exit(f"llamacpp_convert: {script}: not found (set --llamacpp DIR or $LLAMACPP)")
    models = [a for a in rest if not a.startswith("-") and Path(a).is_dir()]
    model_dir = Path(models[0]) if models else None

    install_transformers_stand_in()
    patch_old_torch()
    sys.path.insert(0, str(root / "gguf-py"))
    sys.path.insert(0, str(root))
    os.environ["NO_LOCAL_GGUF"] = "1"  # gguf-py is already first on sys.path
    note(f"llama.cpp = {root} (gguf-py from {root / 'gguf-py'})")

    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", str(script))
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)

    from conversion import base as conv_base

    def fixed_pre(self, tokenizer):
        return pre
    conv_base.TextModel.get_vocab_base_pre = fixed_pre
    note(f"tokenizer.ggml.pre = {pre!r} (TextModel.get_vocab_base_pre replaced: the hash of a real "
         "tokenizer's ids cannot be computed; logits do not depend on it)")

    if model_dir is not None and not (model_dir / "tokenizer.model").is_file():
        from conversion import gemma as conv_gemma, phi as conv_phi

        def gpt2_vocab(self):
            self._set_vocab_gpt2()
        for cls in (conv_gemma.GemmaModel, conv_gemma.Gemma2Model, conv_phi.Phi3MiniModel):
            cls.set_vocab = gpt2_vocab
        note("GemmaModel, Gemma2Model, Phi3MiniModel .set_vocab = the converter's _set_vocab_gpt2 "
             "(no tokenizer.model in the folder; tensors and hyperparameters unchanged)")

    sys.argv = [str(script)] + rest
    conv.main()


if __name__ == "__main__":
    main()
