#!/bin/sh
# lmpress distill export / merge, eval, compare on the stories260K fixture (vocab 512):
# the file read back with Debian's python3-h5py (shapes, attributes, values against the
# run.c reference logits), self-KLD 0, Q8_0 < Q4_0, top-k KLD within its bound, resume and
# shard merge equal to one export, refusals, the report folder.
. tests/cli/lib.sh
L=$LMP_BIN
F=$LMP_FIXTURES
M=$F/models/stories260K
TXT=$F/text/tinystories-valid-sample.txt
if ! "$L" distill --help > /dev/null 2>&1; then skip "lmpress has no distill command"; finish; exit $?; fi
if [ ! -d "$M" ] || [ ! -f "$TXT" ]; then skip "fixtures absent ($F): distill CLI tests"; finish; exit $?; fi
H5PY=/usr/bin/python3
"$H5PY" -c 'import h5py, numpy' 2> /dev/null || H5PY=

# --- export and read back
ok "export prompt1 full f32" "$L" distill export "$M" -f "$M/reference/prompt1.txt" -o "$T/p1.h5" --ctx 32 --top-k 8 --full --f32
ok "export k16 f16" "$L" distill export "$M" -f "$TXT" -o "$T/u.h5" --ctx 64 --top-k 16 --chunks 6
ok "export full+top-k f32" "$L" distill export "$M" -f "$TXT" -o "$T/full.h5" --ctx 64 --top-k 32 --full --f32 --chunks 6
if [ -n "$H5PY" ]; then
    ok "h5py reads the export" "$H5PY" - "$T/p1.h5" "$M/reference/prompt1_logits_f32.bin" "$T/u.h5" <<'EOF'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
a = f.attrs
assert a["format"] in (b"lmpress-logits", "lmpress-logits"), a["format"]
assert a["vocab_size"] == 512 and a["k"] == 8 and a["ctx"] == 32 and a["full"] == 1 and a["temperature"] == 1.0
for key in ("teacher_hash", "tokenizer_hash", "lmpress_version", "protocol", "n_sequences", "export_id"):
    assert key in a, key
assert f["tokens"].shape == (1, 32) and f["topk_ids"].shape == (1, 32, 8) and f["logprobs"].shape == (1, 32, 512)
assert f["tokens"][0, 0] == a["bos"] == 1
ref = np.fromfile(sys.argv[2], dtype="<f4").reshape(32, 512).astype(np.float64)
want = ref - ref.max(1, keepdims=True)
want -= np.log(np.exp(want).sum(1, keepdims=True))
lp = f["logprobs"][0].astype(np.float64)
assert np.abs(lp - want).max() < 2e-4, np.abs(lp - want).max()
ids = f["topk_ids"][0]; tk = f["topk_logprobs"][0]
assert (ids == np.argsort(-want, axis=1, kind="stable")[:, :8]).all()
assert np.abs(np.take_along_axis(lp, ids, 1) - tk).max() == 0
assert np.abs(np.exp(tk.astype(np.float64)).sum(1) + f["rest_mass"][0] - 1).max() < 1e-5
t = f["targets"][0]; tl = f["target_logprob"][0]
assert (t[:-1] == f["tokens"][0, 1:]).all() and np.abs(tl - lp[np.arange(32), t]).max() < 1e-6
assert np.abs(f["logsumexp"][0] - (ref[:, 0] - lp[:, 0])).max() < 1e-3
g = h5py.File(sys.argv[3], "r")
assert g["topk_logprobs"].dtype == np.float16 and g["topk_logprobs"].shape == (6, 64, 16)
assert g["topk_logprobs"].compression == "gzip" and g["topk_logprobs"].chunks == (1, 64, 16)
m = np.exp(g["topk_logprobs"][()].astype(np.float64)).sum(-1) + g["rest_mass"][()]
assert np.abs(m - 1).max() < 2e-3, np.abs(m - 1).max()
assert list(g["seq_index"][()]) == list(range(6))
EOF
else skip "no /usr/bin/python3 with h5py: file not read back"; fi

# --- eval
ok "self KLD" sh -c "'$L' eval '$M' --base '$T/full.h5' --json > '$T/self.json'"
check "self KLD == 0" "awk -v x=\$(sed -n 's/.*\"kld\": \\([-0-9.eE+]*\\).*/\\1/p' '$T/self.json') 'BEGIN{exit !(x < 1e-6 && x > -1e-6)}'"
check "self same top 1" "grep -q '\"same_top\": 1,' '$T/self.json'"
ok "quantize q8_0" "$L" quantize "$M" -o "$T/q8.gguf" --type q8_0
ok "quantize q4_0" "$L" quantize "$M" -o "$T/q4.gguf" --type q4_0
ok "eval q8_0" sh -c "'$L' eval '$T/q8.gguf' --base '$T/full.h5' --json > '$T/q8.json'"
ok "eval q4_0" sh -c "'$L' eval '$T/q4.gguf' --base '$T/full.h5' --json > '$T/q4.json'"
num() { sed -n "s/.*\"$1\": \\([-0-9.eE+]*\\).*/\\1/p" "$2"; }
check "KLD q8_0 < q4_0" "awk 'BEGIN{exit !($(num kld "$T/q8.json") < $(num kld "$T/q4.json") && $(num kld "$T/q8.json") > 0)}'"
check "top-k within bound (q4_0)" "awk 'BEGIN{k=$(num kld_topk "$T/q4.json"); e=$(num kld "$T/q4.json"); b=$(num kld_topk_gap_bound "$T/q4.json"); exit !(k <= e + 1e-7 && e <= k + b + 1e-7)}'"
ok "eval text output" "$L" eval "$T/q4.gguf" --base "$T/u.h5"
check "llama.cpp statistics printed" "grep -q 'Same top p' '$T/out' && grep -q '99.9%  KLD' '$T/out' && grep -q 'PPL ratio' '$T/out'"

# --- resume and shards
LMP_DISTILL_STOP_AFTER=2 "$L" distill export "$M" -f "$TXT" -o "$T/r.h5" --ctx 64 --top-k 16 --chunks 6 > /dev/null 2>&1; rc=$?
check "interrupted export exits non-zero, leaves a partial folder" "[ $rc -ne 0 ] && [ -d '$T/r.h5.partial' ] && [ ! -e '$T/r.h5' ]"
ok "resume" "$L" distill export "$M" -f "$TXT" -o "$T/r.h5" --ctx 64 --top-k 16 --chunks 6
check "resume said so" "grep -q 'resuming' '$T/err'"
ok "shard 0/2" "$L" distill export "$M" -f "$TXT" -o "$T/s0.h5" --ctx 64 --top-k 16 --chunks 6 --shard 0/2
ok "shard 1/2" "$L" distill export "$M" -f "$TXT" -o "$T/s1.h5" --ctx 64 --top-k 16 --chunks 6 --shard 1/2
ok "merge" "$L" distill merge "$T/m.h5" "$T/s1.h5" "$T/s0.h5"
if [ -n "$H5PY" ]; then
    ok "resumed and merged datasets == single export" "$H5PY" - "$T/u.h5" "$T/r.h5" "$T/m.h5" <<'EOF'
import sys, h5py, numpy as np
u = h5py.File(sys.argv[1], "r")
for p in sys.argv[2:]:
    v = h5py.File(p, "r")
    assert sorted(u.keys()) == sorted(v.keys()), p
    for k in u.keys():
        assert u[k].dtype == v[k].dtype and np.array_equal(u[k][()], v[k][()], equal_nan=True), (p, k)
    for k in u.attrs:
        assert str(u.attrs[k]) == str(v.attrs[k]), (p, k)
EOF
else
    ok "eval resumed" sh -c "'$L' eval '$M' --base '$T/r.h5' --json | sed 's/\"seconds.*//;s/\"base\": [^,]*,//' > '$T/e1'"
    ok "eval single" sh -c "'$L' eval '$M' --base '$T/u.h5' --json | sed 's/\"seconds.*//;s/\"base\": [^,]*,//' > '$T/e2'"
    check "resumed == single (eval)" "cmp -s '$T/e1' '$T/e2'"
fi

# --- refusals
printf 'Once upon a time' > "$T/short.txt"
refuses "short text" "tokens" "$L" distill export "$M" -f "$T/short.txt" -o "$T/x.h5"
refuses "existing output" "exists" "$L" distill export "$M" -f "$TXT" -o "$T/u.h5" --ctx 64 --chunks 6
head -c 20000 "$T/u.h5" > "$T/trunc.h5"
refuses "truncated logits file" "trunc.h5" "$L" eval "$M" --base "$T/trunc.h5"
refuses "merge of overlapping files" "duplicated" "$L" distill merge "$T/m2.h5" "$T/s0.h5" "$T/u.h5"
refuses "bad shard" "shard" "$L" distill export "$M" -f "$TXT" -o "$T/x.h5" --shard 2/2
ok "synth tiny" "$L" synth --preset tiny -o "$T/tiny" --seed 1
refuses "another model's vocabulary" "vocabulary" "$L" eval "$T/tiny" --base "$T/u.h5"
ok "tiny export" "$L" distill export "$T/tiny" -f "$T/tiny/corpus.txt" -o "$T/tiny.h5" --ctx 32 --top-k 8 --chunks 2
if [ -n "$H5PY" ]; then
    # the tiny model's file relabelled with stories260K's vocabulary size: the tokenizer check must refuse it
    "$H5PY" -c "
import h5py, sys
f = h5py.File(sys.argv[1], 'r+'); f.attrs['vocab_size'] = 512; f.attrs['bos'] = 1" "$T/tiny.h5" 2> /dev/null
    refuses "another tokenizer (both hashes named)" "tokenizer hash" "$L" eval "$M" --base "$T/tiny.h5"
    check "message has both hashes" "grep -q 'fd18e01bff74b38d' '$T/err'"
fi

# --- compare
ok "compare" "$L" compare "$M" "$T/q8.gguf" "$T/q4.gguf" -f "$TXT" -o "$T/rep" --ctx 64 --chunks 6
check "report files" "[ -s '$T/rep/report.md' ] && [ -s '$T/rep/report.json' ] && [ -s '$T/rep/bpw_ppl.svg' ] && [ -s '$T/rep/bpw_kld.svg' ]"
check "svg labelled" "grep -q '>q4.gguf<' '$T/rep/bpw_kld.svg' && grep -q '</svg>' '$T/rep/bpw_ppl.svg'"
check "report.json is JSON" "$H5PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d[\"variants\"]) == 3' '$T/rep/report.json' 2>/dev/null || grep -q '\"variants\"' '$T/rep/report.json'"
refuses "existing report" "exists" "$L" compare "$M" "$T/q8.gguf" -f "$TXT" -o "$T/rep" --ctx 64 --chunks 2
finish
