#!/bin/sh
# lmpress tokenize: output formats (ids, --json, --count), -f reads bytes exactly, --no-bos,
# HF folder / tokenizer.json / GGUF models, parity on a few llama.cpp vector cases, and
# clear errors with a non-zero exit for bad models and bad options.
. tests/cli/lib.sh
F=$LMP_FIXTURES
if [ ! -d "$F/models/stories260K" ] || [ ! -d "$F/tokenizers/llamacpp-vocab" ]; then
    echo "SKIP: fixtures absent ($F)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
S=$F/models/stories260K
V=$F/tokenizers/llamacpp-vocab
PROMPT="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."

ok "folder --text" "$LMP_BIN" tokenize "$S" --text "$PROMPT"
check "stories260K prompt1 ids (run.c reference)" "[ \"\$(cat '$T/out')\" = \"\$(cat '$S/reference/prompt1_ids.txt')\" ]"
ok "tokenizer.json path" "$LMP_BIN" tokenize "$S/tokenizer.json" --text "$PROMPT"
check "same ids via tokenizer.json" "[ \"\$(cat '$T/out')\" = \"\$(cat '$S/reference/prompt1_ids.txt')\" ]"
ok "--no-bos" "$LMP_BIN" tokenize "$S" --text "$PROMPT" --no-bos
check "--no-bos drops the leading 1" "[ \"1 \$(cat '$T/out')\" = \"\$(cat '$S/reference/prompt1_ids.txt')\" ]"
ok "--count" "$LMP_BIN" tokenize "$S" --text "$PROMPT" --count
check "--count prints 32" "[ \"\$(cat '$T/out')\" = 32 ]"
ok "--json" "$LMP_BIN" tokenize "$S" --text "Hello world" --json
check "--json parses with ids and pieces" "$PY -c 'import json; d=json.load(open(\"$T/out\")); assert d[\"ids\"][0]==1 and d[\"pieces\"][0]==\"<s>\" and len(d[\"ids\"])==len(d[\"pieces\"])'"

# -f: the file's bytes exactly (the trailing newline is a token: <0x0A> = 13)
ok "-f" "$LMP_BIN" tokenize "$S" -f "$S/reference/prompt1.txt"
check "-f keeps the final newline" "[ \"\$(cat '$T/out')\" = \"\$(cat '$S/reference/prompt1_ids.txt') 13\" ]"
printf 'a\000b' > "$T/nul.txt"
ok "-f with a NUL byte" "$LMP_BIN" tokenize "$V/ggml-vocab-gpt-2.gguf" -f "$T/nul.txt" --count
check "NUL byte is a token" "[ \"\$(cat '$T/out')\" = 3 ]"
printf 'a\377b' > "$T/bad.txt"
ok "-f with invalid UTF-8 (byte fallback)" "$LMP_BIN" tokenize "$S" -f "$T/bad.txt" --no-bos --json
check "invalid byte is <0xFF>" "grep -q '<0xFF>' '$T/out'"

# GGUF vocabularies against llama.cpp's expected ids (HF tokenizers): first two cases
ok "gpt-2 gguf" "$LMP_BIN" tokenize "$V/ggml-vocab-gpt-2.gguf" --text "ied 4 ½ months"
check "gpt-2 case 1" "[ \"\$(cat '$T/out')\" = \"\$(sed -n 1p '$V/ggml-vocab-gpt-2.gguf.out' | sed 's/^ //')\" ]"
ok "llama-spm gguf" "$LMP_BIN" tokenize "$V/ggml-vocab-llama-spm.gguf" --no-bos --text "Führer"
check "llama-spm case 2" "[ \"\$(cat '$T/out')\" = \"\$(sed -n 2p '$V/ggml-vocab-llama-spm.gguf.out' | sed 's/^ //')\" ]"
ok "llama-spm adds BOS" "$LMP_BIN" tokenize "$V/ggml-vocab-llama-spm.gguf" --text "Führer"
check "BOS first" "grep -q '^1 ' '$T/out'"
ok "empty text" "$LMP_BIN" tokenize "$V/ggml-vocab-gpt-2.gguf" --text ""
check "empty text prints an empty line" "[ \"\$(cat '$T/out')\" = '' ]"

# errors
printf '{"model": {"type": "WordPiece", "vocab": {}}}' > "$T/wp.json"
refuses "WordPiece refused" "WordPiece" "$LMP_BIN" tokenize "$T/wp.json" --text x
printf '{"model": {"type": "BPE", "vocab": {"a": 0' > "$T/trunc.json"
refuses "invalid JSON refused, file named" "trunc.json" "$LMP_BIN" tokenize "$T/trunc.json" --text x
printf '{"version": "1.0"}' > "$T/nomodel.json"
refuses "no model refused" "model" "$LMP_BIN" tokenize "$T/nomodel.json" --text x
printf '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}}' > "$T/merge.json"
refuses "unknown merge token refused" "not in the vocabulary" "$LMP_BIN" tokenize "$T/merge.json" --text x
printf '{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}' > "$T/vocab.json"
refuses "non-integer id refused" "integer" "$LMP_BIN" tokenize "$T/vocab.json" --text x
refuses "missing model file" "nope" "$LMP_BIN" tokenize "$T/nope.json" --text x
refuses "missing -f file" "missing.txt" "$LMP_BIN" tokenize "$S" -f "$T/missing.txt"
refuses "needs --text or -f" "exactly one" "$LMP_BIN" tokenize "$S"
refuses "not both --text and -f" "exactly one" "$LMP_BIN" tokenize "$S" --text a -f "$S/reference/prompt1.txt"
refuses "needs MODEL" "MODEL" "$LMP_BIN" tokenize --text a
refuses "--json with --count" "cannot be combined" "$LMP_BIN" tokenize "$S" --text a --json --count
ok "--help" "$LMP_BIN" tokenize --help
check "--help lists --count" "grep -q -- '--count' '$T/out'"
finish
