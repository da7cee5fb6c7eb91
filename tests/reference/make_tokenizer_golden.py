#!/usr/bin/env python3
"""Small tokenizer.json files for the pre-tokenizer and file-form tests, and the ids the
Hugging Face `tokenizers` library gives for a set of texts (golden/tokenizers/).

The vocabulary is our own: a byte-level BPE (GPT-2 byte alphabet) trained here on the text
below, 240 merges (numbers, \u03b2, \u00bd and punctuation runs among them). Three tokenizer.json files share it:
  falcon.json   Falcon's pipeline: Punctuation(Contiguous), ByteLevel, then Digits and a
                [0-9]{3} Split that run on the byte-level alphabet
  roberta.json  a legacy RoBERTa-style file: model without "type", empty
                continuing_subword_prefix/end_of_word_suffix, RobertaProcessing
  wsplit.json   WhitespaceSplit, Punctuation(Isolated), ByteLevel(add_prefix_space, no regex)

Expected ids (expected.json) come from Hugging Face tokenizers (Rust), run offline through
its Node binding: `node tests/reference/tokenizer_golden.js` after this script (needs
`npm install @anush008/tokenizers` somewhere on NODE_PATH). `make test` only reads the files.
"""
import json, os, collections

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'golden', 'tokenizers')

TEXT = """The quick brown fox jumps over the lazy dog. In 2024 there were 12345 tokens; then 678
more!!! Prices: $100, +5% (about 3.14159). "Quoted" text -- and 'single' quotes... done?
Numbers 1000000 and 42 and 7; the end. It's what they're saying: we've, I'm, you'll, he'd.
""" + "2024 1234 100 999 " * 6 + "\u03b2 \u03b2\u03b2 \u00bd \u00b2 \u00e9t\u00e9 " * 6 + "!!! ... ?! -- " * 4

def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))

def train(text, n_merges):
    b2u = bytes_to_unicode()
    words = collections.Counter()
    for w in text.replace('\n', ' ').split(' '):
        if w:
            words[tuple(b2u[b] for b in (' ' + w).encode())] += 1
    vocab = {b2u[b]: i for i, b in enumerate(sorted(b2u))}
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        vocab[best[0] + best[1]] = len(vocab)
        nw = collections.Counter()
        for w, c in words.items():
            o, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    o.append(w[i] + w[i + 1]); i += 2
                else:
                    o.append(w[i]); i += 1
            nw[tuple(o)] += c
        words = nw
    return vocab, merges

def added(specials, base):
    out = []
    for k, (content, lstrip) in enumerate(specials):
        out.append({"id": base + k, "content": content, "single_word": False, "lstrip": lstrip,
                    "rstrip": False, "normalized": False, "special": True})
    return out

def main():
    vocab, merges = train(TEXT, 240)
    n = len(vocab)
    bl_dec = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
             "vocab": vocab, "merges": [a + ' ' + b for a, b in merges]}
    falcon = {"version": "1.0", "truncation": None, "padding": None,
              "added_tokens": added([(">>TITLE<<", False), ("<|endoftext|>", False)], n),
              "normalizer": None,
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                  {"type": "Punctuation", "behavior": "Contiguous"},
                  {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
                  {"type": "Digits", "individual_digits": False},
                  {"type": "Split", "pattern": {"Regex": "[0-9][0-9][0-9]"}, "behavior": "Isolated",
                   "invert": False}]},
              "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                 "use_regex": True},
              "decoder": bl_dec, "model": model}
    # legacy RoBERTa layout: specials first, model without "type"
    rv = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for t in vocab:
        rv[t] = len(rv)
    rv["<mask>"] = len(rv)
    roberta = {"version": "1.0", "truncation": None, "padding": None,
               "added_tokens": [{"id": rv[c], "special": True, "content": c, "single_word": False,
                                 "lstrip": c == "<mask>", "rstrip": False, "normalized": c != "<mask>"}
                                for c in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")],
               "normalizer": None,
               "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True},
               "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                                  "trim_offsets": True, "add_prefix_space": False},
               "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True},
               "model": {"dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                         "end_of_word_suffix": "", "fuse_unk": False, "vocab": rv,
                         "merges": [a + ' ' + b for a, b in merges]}}
    wsplit = {"version": "1.0", "truncation": None, "padding": None,
              "added_tokens": added([("<|endoftext|>", False)], n),
              "normalizer": None,
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                  {"type": "WhitespaceSplit"},
                  {"type": "Punctuation", "behavior": "Isolated"},
                  {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}]},
              "post_processor": None, "decoder": bl_dec, "model": model}
    os.makedirs(OUT, exist_ok=True)
    for name, j in (("falcon", falcon), ("roberta", roberta), ("wsplit", wsplit)):
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")

if __name__ == "__main__":
    main()
