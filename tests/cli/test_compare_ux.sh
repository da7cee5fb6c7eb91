#!/bin/sh
# Issue 18 items 1, 4, 6, 12: context defaults from the model (ppl, distill, eval, compare),
# --allow-long-ctx; compare checks every input before evaluating, --base-logits, --resume,
# protocol and ctx per row, both bits-per-weight figures; eval clamps rounding noise.
. tests/cli/lib.sh
M=$LMP_FIXTURES/models/stories260K
TXT=$LMP_FIXTURES/text/tinystories-valid-sample.txt
L=$LMP_BIN
if [ ! -d "$M" ]; then skip "no fixtures"; finish; exit; fi
jget() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# ---- item 1: ctx from the model (stories260K: max_position_embeddings 512)
ok "ppl default ctx" "$L" ppl "$M" -f "$TXT" --chunks 1 --json
check "gptq default capped to the model's 512" "[ \"\$(jget '$T/out' 'd[\"ctx\"]')\" = 512 ]"
refuses "ppl --ctx above the model's" "allow-long-ctx" "$L" ppl "$M" -f "$TXT" --ctx 1024 --chunks 1
ok "ppl --allow-long-ctx" "$L" ppl "$M" -f "$TXT" --ctx 1024 --chunks 1 --allow-long-ctx --json
check "long ctx used" "[ \"\$(jget '$T/out' 'd[\"ctx\"]')\" = 1024 ]"
ok "ppl llamacpp default 512" "$L" ppl "$M" -f "$TXT" --protocol LlamaCpp --chunks 1 --json
check "llamacpp ctx 512" "[ \"\$(jget '$T/out' 'd[\"ctx\"]')\" = 512 ]"
refuses "distill export --ctx above the model's" "allow-long-ctx" "$L" distill export "$M" -f "$TXT" -o "$T/l.h5" --ctx 600
check "nothing written" "[ ! -e '$T/l.h5' ]"
ok "distill export default ctx" "$L" distill export "$M" -f "$TXT" -o "$T/d.h5" --chunks 2 --json
check "export default ctx 512" "[ \"\$(jget '$T/out' 'd[\"ctx\"]')\" = 512 ]"

# variants
ok "q8_0 variant" "$L" quantize "$M" "$T/q8.gguf" q8_0 1
ok "q4_0 variant" "$L" quantize "$M" -o "$T/q4.gguf" --type q4_0
"$L" synth --preset tiny -o "$T/tiny" --seed 1 >/dev/null 2>&1

# ---- item 4: everything checked first
refuses "missing variant fails first" "nothing was evaluated" "$L" compare "$M" "$T/q8.gguf" "$T/nope.gguf" -f "$TXT" -o "$T/r0" --chunks 2
check "no evaluation before the error" "! grep -q '\[1/' '$T/err'"
check "missing variant named" "grep -q 'nope.gguf' '$T/err'"
refuses "vocabulary mismatch fails first" "another vocabulary" "$L" compare "$M" "$T/q8.gguf" "$T/tiny" -f "$TXT" -o "$T/r0" --chunks 2
check "no evaluation before the vocabulary error" "! grep -q '\[1/' '$T/err'"
refuses "compare ctx above the model's" "allow-long-ctx" "$L" compare "$M" "$T/q8.gguf" -f "$TXT" -o "$T/r0" --ctx 1024
check "no report folder left" "[ ! -e '$T/r0' ]"

ok "compare default ctx" "$L" compare "$M" "$T/q8.gguf" -f "$TXT" -o "$T/r1" --chunks 2 --resume
check "report ctx 512 per row" "[ \"\$(jget '$T/r1/report.json' '[v[\"ctx\"] for v in d[\"variants\"]]')\" = '[512, 512]' ]"
check "protocol per row" "[ \"\$(jget '$T/r1/report.json' '[v[\"protocol\"] for v in d[\"variants\"]]')\" = \"['gptq', 'gptq']\" ]"
check "report.md states protocol, ctx per row" "grep -q '| q8.gguf | gptq, 512' '$T/r1/report.md'"
check "both bpw figures in report" "grep -q 'bpw (linear)' '$T/r1/report.md' && [ \"\$(jget '$T/r1/report.json' 'd[\"variants\"][1][\"bpw_linear\"] > 8')\" = True ]"
check "no partial record left" "[ ! -e '$T/r1.partial.json' ] && [ ! -e '$T/r1.base-logits.h5' ]"

# --resume: the earlier rows are reused, the new variant evaluated
ok "compare --resume adds a variant" "$L" compare "$M" "$T/q8.gguf" "$T/q4.gguf" -f "$TXT" -o "$T/r1" --chunks 2 --resume
check "two rows resumed" "grep -q '2 of 3 rows taken' '$T/err'"
check "only the new variant evaluated" "! grep -q 'q8.gguf: perplexity' '$T/err' && grep -q 'q4.gguf: perplexity' '$T/err'"
check "q4 row computed, q8 row marked resumed" "grep -q 'q8.gguf (resumed)' '$T/r1/report.md' && [ \"\$(jget '$T/r1/report.json' 'len(d[\"variants\"])')\" = 3 ]"
# ---- item 5: plots
check "PNG plots written" "head -c 8 '$T/r1/bpw_ppl.png' | od -An -c | grep -q 'P   N   G' && head -c 8 '$T/r1/bpw_kld.png' | od -An -c | grep -q 'P   N   G'"
check "KLD plot on a log scale, base left out" "grep -q 'log scale' '$T/r1/bpw_kld.svg' && ! grep -q '(base)<' '$T/r1/bpw_kld.svg'"
check "legend per family" "grep -q '>GGUF<' '$T/r1/bpw_ppl.svg' && grep -q '>base<' '$T/r1/bpw_ppl.svg'"
check "error bars drawn" "[ \$(grep -c '<line' '$T/r1/bpw_ppl.svg') -gt 30 ]"
check "labels do not overlap" "$PY - '$T/r1/bpw_ppl.svg' '$T/r1/bpw_kld.svg' <<'PYEOF'
import re, sys
for f in sys.argv[1:]:
    boxes = []
    for m in re.finditer(r'<text x=\"([0-9.]+)\" y=\"([0-9.]+)\"[^>]*font-size=\"11\"[^>]*text-anchor=\"start\"[^>]*>([^<]*)<', open(f).read()):
        x, y, t = float(m.group(1)), float(m.group(2)), m.group(3)
        if y > 520: continue  # the caption
        boxes.append((x, y - 11, x + 0.58 * 11 * len(t), y + 3))
    for i in range(len(boxes)):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (f, a, b)
    assert len(boxes) >= 2, f
PYEOF"

ok "compare from scratch" "$L" compare "$M" "$T/q8.gguf" "$T/q4.gguf" -f "$TXT" -o "$T/r2" --chunks 2
check "resumed = recomputed (ppl and KLD)" "[ \"\$(jget '$T/r1/report.json' '[round(v[\"ppl\"],6) for v in d[\"variants\"]] + [round(v[\"kld\"],9) for v in d[\"variants\"]]')\" = \"\$(jget '$T/r2/report.json' '[round(v[\"ppl\"],6) for v in d[\"variants\"]] + [round(v[\"kld\"],9) for v in d[\"variants\"]]')\" ]"
ok "resume with other settings recomputes" "$L" compare "$M" "$T/q8.gguf" -f "$TXT" -o "$T/r1" --chunks 1 --resume
check "settings mismatch noticed" "grep -q '0 of 2 rows taken' '$T/err'"

# --base-logits: the KLD against a teacher exported before equals eval's
ok "teacher export" "$L" distill export "$M" -f "$TXT" -o "$T/t.h5" --ctx 64 --chunks 4 --full --top-k 8
ok "compare --base-logits" "$L" compare "$M" "$T/q4.gguf" -f "$TXT" -o "$T/r3" --ctx 64 --chunks 4 --base-logits "$T/t.h5" --json
check "no export when --base-logits" "! grep -q 'exporting' '$T/err'"
ok "eval the same" "$L" eval "$T/q4.gguf" --base "$T/t.h5" --json
check "KLD = eval's KLD on the same file" "[ \"\$(jget '$T/r3/report.json' 'round(d[\"variants\"][1][\"kld\"],9)')\" = \"\$(jget '$T/out' 'round(d[\"kld\"],9)')\" ]"
refuses "--base-logits with another vocabulary" "vocabulary" "$L" compare "$T/tiny" "$T/tiny" -f "$TXT" -o "$T/r4" --base-logits "$T/t.h5"

# ---- item 12: eval of a model against itself in f16: rounding noise clamped and said
ok "self export f16" "$L" distill export "$M" -f "$TXT" -o "$T/s.h5" --ctx 64 --chunks 2 --full --top-k 8
ok "eval self" "$L" eval "$M" --base "$T/s.h5"
check "no negative percentiles" "! grep -E '^(Maximum|Median|Minimum| *[0-9.]+%) +KLD: +-' '$T/out'"
check "clamping said" "grep -q 'below 0 by rounding' '$T/out'"
ok "eval GGUF against HF teacher" "$L" eval "$T/q8.gguf" --base "$T/s.h5"
check "no spurious tokenizer note" "! grep -q 'tokenizer hashes differ' '$T/err'"
check "gap bound explained" "grep -q 'worst case' '$T/out'"
finish
