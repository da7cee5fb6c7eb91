#!/bin/sh
# Tokenizer files through the writers: a GGUF converted back to a Hugging Face folder gets
# tokenizer.json and tokenizer_config.json made from its vocabulary, and the folder
# tokenizes (and evaluates) exactly as the GGUF does; chat templates (tokenizer_config.json
# string or named list, chat_template.jinja) and the special tokens travel into GGUF
# (convert, quantize, prune) and into every output folder; Qwen-style folders (vocab.json +
# merges.txt, no tokenizer.json) load.
. tests/cli/lib.sh
F=$LMP_FIXTURES
if [ ! -d "$F/models/stories260K" ] || [ ! -d "$F/models/gutenberg-5M" ]; then
    echo "SKIP: fixtures absent ($F)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
B=$LMP_BIN
S=$F/models/stories260K
G=$F/models/gutenberg-5M
W=$F/text/wiki.test.raw
PROMPT="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
jkey() { # file key: prints a top-level JSON value (strings raw)
    $PY -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
}
meta() { # gguf key: the value inspect --json shows
    "$B" inspect "$1" --json --no-tensors | $PY -c 'import json,sys; d=json.load(sys.stdin)["metadata"]; v=d.get(sys.argv[1]); print(v if isinstance(v, str) else json.dumps(v))' "$2"
}

# --- GGUF -> HF folder: tokenizer files from the vocabulary (SentencePiece-style BPE)
ok "stories260K to GGUF" "$B" convert "$S" -o "$T/s.gguf"
ok "GGUF back to a folder" "$B" convert "$T/s.gguf" -o "$T/shf"
check "folder has tokenizer.json and tokenizer_config.json" "[ -f '$T/shf/tokenizer.json' ] && [ -f '$T/shf/tokenizer_config.json' ]"
ok "folder tokenizes" "$B" tokenize "$T/shf" --text "$PROMPT"
check "stories260K prompt ids through the converted folder (run.c reference)" "[ \"\$(cat '$T/out')\" = \"\$(cat '$S/reference/prompt1_ids.txt')\" ]"
"$B" tokenize "$T/s.gguf" -f "$W" > "$T/ids.gguf" 2>/dev/null
"$B" tokenize "$T/shf" -f "$W" > "$T/ids.hf" 2>/dev/null
check "wiki.test.raw: folder ids = GGUF ids" "[ -s '$T/ids.gguf' ] && cmp -s '$T/ids.gguf' '$T/ids.hf'"
check "bos/eos names and add_bos in tokenizer_config.json" "[ \"\$(jkey '$T/shf/tokenizer_config.json' bos_token)\" = '<s>' ] && [ \"\$(jkey '$T/shf/tokenizer_config.json' eos_token)\" = '</s>' ] && [ \"\$(jkey '$T/shf/tokenizer_config.json' add_bos_token)\" = true ]"

# --- gutenberg-5M: the same, and the evaluation through the folder equals the GGUF's
ok "gutenberg-5M to GGUF" "$B" convert "$G" -o "$T/g.gguf"
ok "and back" "$B" convert "$T/g.gguf" -o "$T/ghf"
"$B" tokenize "$T/g.gguf" -f "$W" > "$T/gids.gguf" 2>/dev/null
"$B" tokenize "$T/ghf" -f "$W" > "$T/gids.hf" 2>/dev/null
"$B" tokenize "$G" -f "$W" > "$T/gids.orig" 2>/dev/null
check "wiki.test.raw: converted folder = GGUF = original folder" "[ -s '$T/gids.gguf' ] && cmp -s '$T/gids.gguf' '$T/gids.hf' && cmp -s '$T/gids.gguf' '$T/gids.orig'"
p1=$("$B" ppl "$T/g.gguf" -f "$W" --max-bytes 3000 --ctx 128 --json 2>/dev/null)
p2=$("$B" ppl "$T/ghf" -f "$W" --max-bytes 3000 --ctx 128 --json 2>/dev/null)
check "ppl on the converted folder = ppl on the GGUF (same tokens, ppl within 1e-5)" "$PY -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); assert a[\"tokens\"]==b[\"tokens\"]>1000 and abs(a[\"ppl\"]-b[\"ppl\"])<=1e-5*a[\"ppl\"], (a,b)' '$p1' '$p2'"

# --- byte-level GGUF vocabulary (gpt2 model, tokenizer.ggml.pre) via the golden tokenizer
mkdir -p "$T/bl"
for f in config.json model.safetensors generation_config.json; do ln -s "$S/$f" "$T/bl/$f"; done
cp golden/tokenizers/falcon.json "$T/bl/tokenizer.json"
ok "folder with Falcon's tokenizer to GGUF" "$B" convert "$T/bl" -o "$T/bl.gguf"
check "tokenizer.ggml.pre is falcon" "[ \"\$(meta '$T/bl.gguf' tokenizer.ggml.pre)\" = falcon ]"
ok "and back to a folder" "$B" convert "$T/bl.gguf" -o "$T/blhf"
"$B" tokenize "$T/bl" -f "$W" > "$T/b1" 2>/dev/null
"$B" tokenize "$T/blhf" -f "$W" > "$T/b2" 2>/dev/null
check "Falcon pipeline: original = GGUF -> folder on wiki.test.raw" "[ -s '$T/b1' ] && cmp -s '$T/b1' '$T/b2'"

# --- chat templates: a named list in tokenizer_config.json
mkdir -p "$T/ct"
for f in config.json model.safetensors generation_config.json tokenizer.json special_tokens_map.json; do ln -s "$S/$f" "$T/ct/$f"; done
$PY -c 'import json,sys; c=json.load(open(sys.argv[1])); c["chat_template"]=[{"name":"default","template":"{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"},{"name":"tool use","template":"TOOLS {{ tools }}"}]; json.dump(c, open(sys.argv[2], "w"))' "$S/tokenizer_config.json" "$T/ct/tokenizer_config.json"
ok "convert with a chat template list" "$B" convert "$T/ct" -o "$T/ct.gguf"
check "tokenizer.chat_template is the default one" "[ \"\$(meta '$T/ct.gguf' tokenizer.chat_template)\" = '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}' ]"
check "named template as tokenizer.chat_template.tool_use" "[ \"\$(meta '$T/ct.gguf' tokenizer.chat_template.tool_use)\" = 'TOOLS {{ tools }}' ]"
check "special-token ids and add_bos in the GGUF" "[ \"\$(meta '$T/ct.gguf' tokenizer.ggml.bos_token_id)\" = 1 ] && [ \"\$(meta '$T/ct.gguf' tokenizer.ggml.eos_token_id)\" = 2 ] && [ \"\$(meta '$T/ct.gguf' tokenizer.ggml.add_bos_token)\" = true ]"
ok "GGUF with templates back to a folder" "$B" convert "$T/ct.gguf" -o "$T/cthf"
check "folder's tokenizer_config.json has both templates" "$PY -c 'import json; c=json.load(open(\"$T/cthf/tokenizer_config.json\"))[\"chat_template\"]; assert [e[\"name\"] for e in c]==[\"default\",\"tool_use\"] and c[1][\"template\"]==\"TOOLS {{ tools }}\"'"
ok "quantize q8_0 from the folder" "$B" quantize "$T/ct" -o "$T/ctq.gguf" --type q8_0
check "quantized GGUF keeps the template" "[ \"\$(meta '$T/ctq.gguf' tokenizer.chat_template.tool_use)\" = 'TOOLS {{ tools }}' ]"
ok "prune to GGUF" "$B" prune "$T/ct" -o "$T/ctp.gguf" --method magnitude --sparsity 0.5 --format gguf
check "pruned GGUF keeps the template" "[ \"\$(meta '$T/ctp.gguf' tokenizer.chat_template.tool_use)\" = 'TOOLS {{ tools }}' ]"

# --- chat_template.jinja: carried into GGUF and copied into output folders
mkdir -p "$T/cj"
for f in config.json model.safetensors generation_config.json tokenizer.json tokenizer_config.json; do ln -s "$S/$f" "$T/cj/$f"; done
printf '{%% for m in messages %%}<|{{ m.role }}|>{{ m.content }}{%% endfor %%}' > "$T/cj/chat_template.jinja"
ok "convert with chat_template.jinja" "$B" convert "$T/cj" -o "$T/cj.gguf"
check "chat_template.jinja in tokenizer.chat_template" "[ \"\$(meta '$T/cj.gguf' tokenizer.chat_template)\" = \"\$(cat '$T/cj/chat_template.jinja')\" ]"
ok "prune to a folder" "$B" prune "$T/cj" -o "$T/cjp" --method magnitude --sparsity 0.5
check "pruned folder has chat_template.jinja" "cmp -s '$T/cj/chat_template.jinja' '$T/cjp/chat_template.jinja'"
ok "RTN integer-group folder" "$B" quantize "$T/cj" -o "$T/cjq" --method rtn --bits 8 --group-size -1 --calib "$F/text/tinystories-valid-sample.txt" --calib-samples 2 --calib-seqlen 32
check "integer-group folder has chat_template.jinja and the tokenizer" "cmp -s '$T/cj/chat_template.jinja' '$T/cjq/chat_template.jinja' && cmp -s '$S/tokenizer.json' '$T/cjq/tokenizer.json'"
ok "converted folder from a GGUF with chat_template.jinja" "$B" convert "$T/cj.gguf" -o "$T/cjhf"
check "its tokenizer_config.json holds the template" "[ \"\$(jkey '$T/cjhf/tokenizer_config.json' chat_template)\" = \"\$(cat '$T/cj/chat_template.jinja')\" ]"

# --- Qwen-style folder: vocab.json + merges.txt + tokenizer_config.json, no tokenizer.json
Q=$F/hf-meta/qwen2.5-14b-sakura-v1.0
if [ -d "$Q" ]; then
    ok "Qwen folder tokenizes" "$B" tokenize "$Q" --text "Hello world 12345<|im_end|>"
    check "Qwen2 digits one by one, <|im_end|> special (9707 1879 220 16 17 18 19 20 151645)" "[ \"\$(cat '$T/out')\" = '9707 1879 220 16 17 18 19 20 151645' ]"
    ok "vocab.json path works too" "$B" tokenize "$Q/vocab.json" --text "Hello world"
    check "same ids via vocab.json" "[ \"\$(cat '$T/out')\" = '9707 1879' ]"
else
    skip "qwen hf-meta folder absent"
fi
mkdir -p "$T/nomerges" && cp "$F/hf-meta/gpt2-gptq-4bit/vocab.json" "$T/nomerges/" 2>/dev/null
refuses "folder without tokenizer.json or merges.txt" "vocab.json + merges.txt" "$B" tokenize "$T/nomerges" --text x
finish
