#!/bin/sh
# CLI tests of `lmpress tasks`: the JSON names scripts rely on, --limit/--seed, --items,
# both protocols, every task-file format (small files written here), and the errors a
# user can trigger (file and line named, non-zero exit, no --items output left behind).
# The scores themselves are checked in tests/unit/test_tasks.c. Skipped without fixtures.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
. tests/cli/lib.sh
B=$LMP_BIN
F=$LMP_FIXTURES
S=$F/models/stories260K
TK=$F/tasks

ok "tasks --help" "$B" tasks --help
check "tasks listed in lmpress --help" "'$B' --help | grep -q '^  tasks '"
if [ ! -f "$S/model.safetensors" ] || [ ! -f "$TK/arc_easy.jsonl" ]; then
    skip "fixtures not found at $F: tasks CLI tests skipped"
    finish
    exit $?
fi

# jq-free JSON checks with python3 (CI has it)
jq_py() { $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# --- the JSON names (binding: tasks.NAME.acc, acc_norm, their stderrs, n)
ok "arc_easy + lambada, --limit 12, --json" sh -c "'$B' tasks '$S' --task arc=$TK/arc_easy.jsonl \
    --task lam=$TK/lambada_openai.jsonl --limit 12 --seed 3 --json -t 1 > '$T/a.json'"
for k in acc acc_stderr acc_norm acc_norm_stderr n chance; do
    check "json tasks.arc.$k" "[ \"\$(jq_py '$T/a.json' \"type(d['tasks']['arc']['$k']).__name__\")\" != NoneType ]"
done
check "n = 12" "[ \"\$(jq_py '$T/a.json' \"d['tasks']['arc']['n']\")\" = 12 ]"
check "acc in [0, 1] and stderr = sqrt(p(1-p)/(n-1))" \
    "jq_py '$T/a.json' \"abs(d['tasks']['arc']['acc_stderr'] - (d['tasks']['arc']['acc']*(1-d['tasks']['arc']['acc'])/11)**0.5) < 1e-9\" | grep -q True"
check "lambada: ppl and acc, acc_norm null" \
    "jq_py '$T/a.json' \"d['tasks']['lam']['ppl'] > 1 and d['tasks']['lam']['acc_norm'] is None\" | grep -q True"
check "protocol lm-eval in json" "jq_py '$T/a.json' \"d['protocol']\" | grep -qx lm-eval"

# --- the same seed gives the same subset; another seed another one; thread count irrelevant
"$B" tasks "$S" --task arc=$TK/arc_easy.jsonl --limit 12 --seed 3 --items "$T/i1.jsonl" -t 2 > /dev/null 2>&1
"$B" tasks "$S" --task arc=$TK/arc_easy.jsonl --limit 12 --seed 3 --items "$T/i2.jsonl" -t 1 > /dev/null 2>&1
"$B" tasks "$S" --task arc=$TK/arc_easy.jsonl --limit 12 --seed 4 --items "$T/i3.jsonl" > /dev/null 2>&1
ok "same seed, same items and scores (1 and 2 threads)" cmp "$T/i1.jsonl" "$T/i2.jsonl"
check "another seed, other items" "! cmp -s '$T/i1.jsonl' '$T/i3.jsonl'"
check "--items: one line per item" "[ \$(wc -l < '$T/i1.jsonl') = 12 ]"
check "--items: acc agrees with the summary" \
    "[ \"\$(grep -c '\"acc\": 1' '$T/i1.jsonl')\" = \"\$(jq_py '$T/a.json' \"round(d['tasks']['arc']['acc']*12)\")\" ]"
refuses "--items exists without --force" "exists" "$B" tasks "$S" --task arc=$TK/arc_easy.jsonl --limit 2 --items "$T/i1.jsonl"

# --- every format, both protocols (small files written here)
cat > "$T/mc.jsonl" <<'EOF'
{"query": "Question: What do cats say?", "choices": ["Meow.", "Moo."], "gold": 0}
{"query": "Question: What is big?\n", "choices": ["an elephant", "a mouse", "an ant"], "gold": 0}
EOF
cat > "$T/hs.txt" <<'EOF'
Cooking: A girl puts a cake in the oven. she
1
eats the oven.
waits for it to bake.
flies to the moon.
sings a song.
EOF
cat > "$T/wg.csv" <<'EOF'
0,Lily gave Tom a ball because _ had two.,Lily,Tom,1
1,"Tom was sad, so _ hugged Lily.",Tom,Lily,2
EOF
$PY - "$T/mc.bin" <<'EOF'
import struct, sys
def s(x): b = x.encode(); return struct.pack('<I', len(b)) + b
task = s("Once upon a time there was a") + struct.pack('<I', 3) + s("cat.") + s("dog.") + s("table.") \
       + struct.pack('<3i', 0, 1, 0) + struct.pack('<I', 0)
open(sys.argv[1], 'wb').write(struct.pack('<I', 1) + struct.pack('<I', 8) + task)
EOF
for pr in lm-eval llamacpp; do
    ok "four formats, --protocol $pr" sh -c "'$B' tasks '$S' --protocol $pr --json --task mc=$T/mc.jsonl \
        --task hs=$T/hs.txt --task wg=$T/wg.csv --task bin=$T/mc.bin > '$T/f.json'"
    check "$pr: n per format" "jq_py '$T/f.json' \"[d['tasks'][k]['n'] for k in ('mc','hs','wg','bin')]\" | grep -qx '\[2, 1, 2, 1\]'"
    check "$pr: formats detected" \
        "jq_py '$T/f.json' \"[d['tasks'][k]['format'] for k in ('mc','hs','wg','bin')]\" | grep -q \"'jsonl', 'hellaswag-txt', 'winogrande-csv', 'mc-binary'\""
done
"$B" tasks "$S" --task mc=$T/mc.jsonl > "$T/text.txt" 2>&1
check "text output: acc +/- stderr, acc_norm, chance" "grep -q '^mc .*n *2 *acc .*+/- .*acc_norm .*chance' '$T/text.txt'"

# --- errors: file and line named, non-zero exit, nothing written
: > "$T/empty.jsonl"
refuses "empty task file" "empty.jsonl: empty task file" "$B" tasks "$S" --task x=$T/empty.jsonl
printf '{"query": "q", "choices": ["a"], "gold": 0}\n{"query": "q", "choices": ["a", "b"], "gold": 0\n' > "$T/bad.jsonl"
refuses "malformed JSON names line 2" "bad.jsonl:2: malformed JSON" "$B" tasks "$S" --task x=$T/bad.jsonl
printf '{"query": "q", "choices": [], "gold": 0}\n' > "$T/noch.jsonl"
refuses "item without choices" "noch.jsonl:1: item without choices" "$B" tasks "$S" --task x=$T/noch.jsonl
printf '{"query": "q", "choices": ["a", "b"], "gold": 2}\n' > "$T/gold.jsonl"
refuses "gold out of range" "gold.jsonl:1: gold index 2 out of range" "$B" tasks "$S" --task x=$T/gold.jsonl
printf 'c\n0\na\nb\n' > "$T/short.txt"
refuses "hellaswag lines not a multiple of 6" "4 lines, not a multiple of 6" "$B" tasks "$S" --task x=$T/short.txt
refuses "missing task file" "nope.jsonl" "$B" tasks "$S" --task x=$T/nope.jsonl
refuses "--task without =" "NAME=FILE" "$B" tasks "$S" --task $T/mc.jsonl
refuses "task name twice" "twice" "$B" tasks "$S" --task a=$T/mc.jsonl --task a=$T/mc.jsonl
refuses "no --task" "at least one --task" "$B" tasks "$S"
refuses "unknown protocol" "unknown protocol" "$B" tasks "$S" --task a=$T/mc.jsonl --protocol gptq
refuses "bad task file checked before the model" "bad.jsonl:2" "$B" tasks "$T/no-model" --task x=$T/bad.jsonl
refuses "bad model" "no-model" "$B" tasks "$T/no-model" --task x=$T/mc.jsonl
refuses "sequence longer than --ctx" "exceeds the context" "$B" tasks "$S" --protocol llamacpp --ctx 8 --task x=$T/mc.jsonl
refuses "bad file after a good one leaves no --items" "gold.jsonl" \
    "$B" tasks "$S" --task a=$T/mc.jsonl --task b=$T/gold.jsonl --items "$T/none.jsonl"
check "no --items output after a failure" "[ ! -e '$T/none.jsonl' ] && ! ls '$T'/none.jsonl.tmp* > /dev/null 2>&1"
finish
