#!/bin/sh
# Issue 18 item 9: calibration data the way people have it. Plain, gzip, JSONL with a
# text field (default "text" or --calib-field), chat JSONL rendered with the model's chat
# template (ChatML here; an unknown template refused), several files mixed; the tokens
# and windows drawn from each file are reported, token counts checked against
# `lmpress tokenize` on the same texts (the chat rendered independently in Python).
. tests/cli/lib.sh
L=$LMP_BIN
"$L" synth --preset tiny -o "$T/m" --seed 4 >/dev/null 2>&1
$PY - "$T" <<'PYEOF'
import json, sys, gzip
T = sys.argv[1]
corpus = open(T + "/m/corpus.txt").read()
paras = [p for p in corpus.split("\n\n") if p.strip()] or [corpus]
open(T + "/a.txt", "w").write(corpus)
gzip.open(T + "/b.txt.gz", "wt").write(corpus[: len(corpus) // 2])
with open(T + "/c.jsonl", "w") as f:
    for p in paras: f.write(json.dumps({"text": p, "id": 1}) + "\n")
with open(T + "/c.txt", "w") as f: f.write("\n\n".join(paras))
with open(T + "/d.jsonl", "w") as f:
    for p in paras: f.write(json.dumps({"body": p}) + "\n")
chats = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": p[:80]},
          {"role": "assistant", "content": p[80:200]}] for p in paras[:20]]
with open(T + "/e.jsonl", "w") as f:
    for c in chats: f.write(json.dumps({"messages": c}) + "\n")
# the ChatML rendering, written independently of lmpress
r = ["".join("<|im_start|>%s\n%s<|im_end|>\n" % (m["role"], m["content"]) for m in c) for c in chats]
open(T + "/e.txt", "w").write("\n\n".join(r))
p = T + "/m/tokenizer_config.json"; d = json.load(open(p))
d["chat_template"] = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
json.dump(d, open(p, "w"))
with open(T + "/bad.jsonl", "w") as f: f.write('{"text": "fine"}\n{"title": "no text"}\n')
PYEOF
count() { "$L" tokenize "$T/m" -f "$1" --count; }
C="--method gptq --calib-samples 8 --calib-seqlen 32 -t 1"

ok "plain + gzip + JSONL + chat JSONL mixed" "$L" quantize "$T/m" -o "$T/q1" $C --calib "$T/a.txt,$T/b.txt.gz,$T/c.jsonl,$T/e.jsonl"
cp "$T/err" "$T/e1"
for f in a.txt b.txt.gz c.jsonl e.jsonl; do
    check "$f reported" "grep -q 'calibration: $T/$f: [0-9]* tokens.*[0-9]* of 8 windows of 32' '$T/e1'"
done
check "windows add up to 8" "[ \$(sed -n 's/.*, \([0-9]*\) of 8 windows.*/\1/p' '$T/e1' | awk '{s+=\$1} END {print s}') = 8 ]"
check "plain file tokens = tokenize's" "grep -q 'a.txt: '\$(count '$T/a.txt')' tokens' '$T/e1'"
check "JSONL text documents = the same text joined" "grep -q 'c.jsonl: '\$(count '$T/c.txt')' tokens (JSONL)' '$T/e1'"
check "chats rendered as ChatML" "grep -q 'e.jsonl: '\$(count '$T/e.txt')' tokens (JSONL chats rendered' '$T/e1'"
ok "--calib-field" "$L" quantize "$T/m" -o "$T/q2" $C --calib "$T/d.jsonl" --calib-field body
check "custom field = default field" "grep -q 'd.jsonl: '\$(count '$T/c.txt')' tokens' '$T/err'"
refuses "missing field named" "no string field 'nope'" "$L" quantize "$T/m" -o "$T/q3" $C --calib "$T/d.jsonl" --calib-field nope
refuses "bad JSONL line named" "bad.jsonl line 2" "$L" quantize "$T/m" -o "$T/q3" $C --calib "$T/bad.jsonl"
check "nothing written" "[ ! -e '$T/q3' ]"
ok "imatrix from mixed files" "$L" quantize "$T/m" -o "$T/i.gguf" --type q4_0 --imatrix-calib "$T/a.txt,$T/c.jsonl" --calib-samples 4 --calib-seqlen 32
check "imatrix reports both files" "grep -q 'a.txt: ' '$T/err' && grep -q 'c.jsonl: ' '$T/err'"
ok "prune from JSONL" "$L" prune "$T/m" -o "$T/p" --method wanda --sparsity 0.5 --calib "$T/c.jsonl" --calib-samples 4 --calib-seqlen 32 -t 1
check "prune reports the file" "grep -q 'c.jsonl: ' '$T/err'"
$PY - "$T/m/tokenizer_config.json" <<'PYEOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["chat_template"] = "{% for m in messages %}### {{ m['content'] }}{% endfor %}"
json.dump(d, open(p, "w"))
PYEOF
refuses "unknown chat template refused" "not one lmpress renders" "$L" quantize "$T/m" -o "$T/q4" $C --calib "$T/e.jsonl"
finish
