#!/bin/sh
# Issue 17: nothing wrong passes silently. Every case below is a broken input or a faulty
# operation, built here from a synthetic checkpoint (tests/cli/reliability_inputs.py); each
# must be refused with a message naming the defect, a non-zero exit, and nothing left under
# the output's name. The case table is what docs/status.md counts ("reliability").
. tests/cli/lib.sh
for p in "$PY" /usr/bin/python3; do
    if "$p" -c 'import numpy, h5py' 2>/dev/null; then PY=$p; break; fi
done
if ! $PY -c 'import numpy, h5py' 2>/dev/null; then
    skip "python3 with numpy and h5py is needed to build the broken inputs"
    finish; exit $?
fi
B="$T/b"; O="$T/o"; mkdir -p "$B" "$O"
M="$T/tiny"
"$LMP_BIN" synth --preset tiny -o "$M" > /dev/null 2>&1 || { echo "FAIL: synth"; exit 1; }
$PY tests/cli/reliability_inputs.py hf "$B" "$M" || { echo "FAIL: building inputs"; exit 1; }
"$LMP_BIN" convert "$M" -o "$T/tiny.gguf" > /dev/null 2>&1 || { echo "FAIL: convert"; exit 1; }
$PY tests/cli/reliability_inputs.py gguf "$B" "$T/tiny.gguf" || { echo "FAIL: building GGUF inputs"; exit 1; }
printf 'Once upon a time there was a little cat. It liked to play in the sun with its friends.\n' > "$T/text.txt"
cat "$M/corpus.txt" >> "$T/text.txt" 2>/dev/null

# refused_clean AREA NAME WORD OUT cmd... : refused (as `refuses`) and OUT absent, no temporary left
n_cases=0; areas=""
count() { # area ok(0/1): the per-area table printed at the end (docs/status.md)
    case " $areas " in *" $1 "*) ;; *) areas="$areas $1";; esac
    eval "tried_$1=\$((\${tried_$1:-0} + 1))"
    [ "$2" -eq 1 ] && eval "refused_$1=\$((\${refused_$1:-0} + 1))"
    n_cases=$((n_cases + 1))
}
refused_clean() {
    area=$1; name=$2; word=$3; out=$4; shift 4
    f0=$fail
    refuses "[$area] $name" "$word" "$@"
    check "[$area] $name: nothing written" "[ ! -e '$out' ] && [ -z \"\$(ls -a '$(dirname "$out")' | grep '\\.tmp\\.')\" ]"
    if [ "$fail" -eq "$f0" ]; then count "$area" 1; else count "$area" 0; fi
}

# ---- 1. config and weights agree (convert HF -> GGUF, ppl, run)
for c in "vocab_big:vocab_size" "layers_high:is missing" "layers_low:belongs to layer" \
         "maxpos_neg:max_position_embeddings" "no_norm:model.norm.weight" "stray_layer9:layer 9" \
         "attn_bias_missing:q_proj.bias" "unknown_tensor:model.mystery.weight" "bias_unused:q_proj.bias" \
         "bos_range:bos_token_id" "eps_zero:rms_norm_eps" "norm_empty:model.norm.weight has shape"; do
    n=${c%%:*}; w=${c#*:}
    refused_clean config "convert hf_$n" "$w" "$O/$n.gguf" "$LMP_BIN" convert "$B/hf_$n" -o "$O/$n.gguf"
done
# the table's family rows (issue 16): a qwen3 without one q_norm, a phi3 with an unfused q_proj
for fam in qwen3:model.layers.1.self_attn.q_norm.weight olmo2:model.layers.0.post_feedforward_layernorm.weight; do
    p=${fam%%:*}; t=${fam#*:}
    if "$LMP_BIN" synth --preset tiny-$p -o "$T/$p" > /dev/null 2>&1; then
        $PY -c "import sys; sys.path.insert(0, 'tests/cli'); import reliability_inputs as r; r.hf_variant('$T/$p', '$B/hf_${p}_drop', drop=('$t',))"
        refused_clean config "convert $p without $t" "$t is missing" "$O/$p.gguf" "$LMP_BIN" convert "$B/hf_${p}_drop" -o "$O/$p.gguf"
    fi
done
refused_clean config "ppl hf_layers_low" "belongs to layer" "$O/none" "$LMP_BIN" ppl "$B/hf_layers_low" -f "$T/text.txt" --ctx 64
refused_clean config "run hf_vocab_big" "vocab_size" "$O/none" "$LMP_BIN" run "$B/hf_vocab_big" -p "Once" -n 2
refused_clean config "quantize hf_stray_layer9" "layer 9" "$O/q9.gguf" "$LMP_BIN" quantize "$B/hf_stray_layer9" -o "$O/q9.gguf" --type q8_0
ok "[config] --allow-extra converts hf_unknown_tensor" "$LMP_BIN" convert "$B/hf_unknown_tensor" -o "$O/extra.gguf" --allow-extra
check "[config] --allow-extra is reported" "grep -q 'allow-extra: ignoring 1 tensor' '$T/err'"
check "[config] inspect warns on hf_layers_low" "'$LMP_BIN' inspect '$B/hf_layers_low' > /dev/null 2> '$T/e2' && grep -q 'belongs to layer' '$T/e2'"
for c in "block_count_low:belongs to layer" "block_count_high:is missing" "vocab_short:tokens" \
         "extra_tensor:blk.0.mystery.weight" "ctx_huge:context_length"; do
    n=${c%%:*}; w=${c#*:}
    refused_clean config "convert gg_$n -> HF" "$w" "$O/$n" "$LMP_BIN" convert "$B/gg_$n.gguf" -o "$O/$n"
done
refused_clean config "ppl gg_vocab_short" "tokens" "$O/none" "$LMP_BIN" ppl "$B/gg_vocab_short.gguf" -f "$T/text.txt" --ctx 64

# ---- 2. GGUF accounting
refused_clean gguf "tensor_count one too low" "belong to no tensor" "$O/tc" "$LMP_BIN" convert "$B/gg_tensor_count_low.gguf" -o "$O/tc"
refused_clean gguf "inspect tensor_count one too low" "belong to no tensor" "$O/none" "$LMP_BIN" inspect "$B/gg_tensor_count_low.gguf"
refused_clean gguf "dimension 0 (convert)" "belong to no tensor" "$O/d0" "$LMP_BIN" convert "$B/gg_dim_zero.gguf" -o "$O/d0"
refused_clean gguf "dimension 0 (quantize)" "belong to no tensor" "$O/d0.gguf" "$LMP_BIN" quantize "$B/gg_dim_zero.gguf" -o "$O/d0.gguf" --type q8_0

# ---- 3. finite numbers
refused_clean finite "convert NaN weight" "model.layers.0.mlp.up_proj.weight row 3 column 7 is NaN" "$O/nan.gguf" \
    "$LMP_BIN" convert "$B/hf_nan_up_row3" -o "$O/nan.gguf"
refused_clean finite "convert NaN weight to f16" "row 3 column 7 is NaN" "$O/nan16" \
    "$LMP_BIN" convert "$B/hf_nan_up_row3" -o "$O/nan16" --dtype f16
refused_clean finite "ppl NaN weight" "row 3 column 7 is NaN" "$O/none" "$LMP_BIN" ppl "$B/hf_nan_up_row3" -f "$T/text.txt" --ctx 64
refused_clean finite "ppl --json NaN weight" "is NaN" "$O/none" "$LMP_BIN" ppl "$B/hf_nan_up_row3" -f "$T/text.txt" --ctx 64 --json
check "[finite] ppl --json prints nothing on a refusal" "[ ! -s '$T/out' ]"
refused_clean finite "run Inf embedding" "model.embed_tokens.weight row 0 column 11 is +Inf" "$O/none" "$LMP_BIN" run "$B/hf_inf_embed" -p "Once" -n 2
refused_clean finite "quantize NaN weight" "is NaN" "$O/nanq.gguf" "$LMP_BIN" quantize "$B/hf_nan_up_row3" -o "$O/nanq.gguf" --type q4_0
# the GGUF row is reported as the file stores it (ggml's interleaved RoPE order), not permuted
refused_clean finite "GGUF NaN reported at its file row" "blk.0.attn_q.weight row 5 column 3 is NaN" "$O/ggnan" \
    "$LMP_BIN" convert "$B/gg_nan_attn_q_row5.gguf" -o "$O/ggnan"
refused_clean finite "ppl GGUF NaN row" "blk.0.attn_q.weight row 5 column 3" "$O/none" "$LMP_BIN" ppl "$B/gg_nan_attn_q_row5.gguf" -f "$T/text.txt" --ctx 64
for c in "eps_nan:layer_norm_rms_epsilon" "eps_neg:layer_norm_rms_epsilon" "theta_zero:freq_base" "theta_nan:freq_base"; do
    n=${c%%:*}; w=${c#*:}
    refused_clean finite "ppl gg_$n" "$w" "$O/none" "$LMP_BIN" ppl "$B/gg_$n.gguf" -f "$T/text.txt" --ctx 64
done
ok "[finite] ppl --json on a good model" "$LMP_BIN" ppl "$M" -f "$T/text.txt" --ctx 64 --json
check "[finite] ppl --json is valid JSON" "$PY -c 'import json,sys,math; d=json.load(open(\"$T/out\")); assert math.isfinite(d[\"ppl\"])'"

# ---- 4. tokenizers
for c in "bad_utf8:not valid UTF-8" "nul:NUL" "id_100000:100000" "bos_other_id:id 5" "past_embedding:embedding"; do
    n=${c%%:*}; w=${c#*:}
    refused_clean tokenizer "ppl tok_$n" "$w" "$O/none" "$LMP_BIN" ppl "$B/tok_$n" -f "$T/text.txt" --ctx 64
done
refused_clean tokenizer "convert tok_bad_utf8" "not valid UTF-8" "$O/tu.gguf" "$LMP_BIN" convert "$B/tok_bad_utf8" -o "$O/tu.gguf"
refused_clean tokenizer "GGUF token not UTF-8" "not valid UTF-8" "$O/none" "$LMP_BIN" tokenize "$B/gg_vocab_bad_utf8.gguf" --text "Once"

# ---- 5. HDF5 logits
if "$LMP_BIN" distill export "$M" -f "$T/text.txt" -o "$T/logits.h5" --top-k 4 --ctx 16 --chunks 2 > /dev/null 2> "$T/err"; then
    $PY tests/cli/reliability_inputs.py h5 "$B" "$T/logits.h5" || echo "FAIL: building h5 inputs"
    ok "[h5] eval of the intact file" "$LMP_BIN" eval "$M" --base "$T/logits.h5"
    for c in "lse_nan:logsumexp" "target_inf:target_logprob" "topk_positive:top-k log-prob" "topk_nan:top-k log-prob" \
             "rest_above1:rest_mass" "rest_negative:rest_mass" "topk_dup:appears twice" "topk_id_range:out of range" \
             "flipped_byte:checksum"; do
        n=${c%%:*}; w=${c#*:}
        refused_clean h5 "eval h5_$n" "$w" "$O/none" "$LMP_BIN" eval "$M" --base "$B/h5_$n.h5"
    done
    ok "[h5] a file without checksums (older lmpress) is read" "$LMP_BIN" eval "$M" --base "$B/h5_no_checksum.h5"
    check "[h5] ... with a note saying so" "grep -q 'without checksums' '$T/err'"
else
    echo "FAIL: distill export"; sed 's/^/    /' "$T/err" | head -3; fail=$((fail + 1))
fi

# ---- 6. outputs never destroy inputs (compared by device and inode, not by name)
sum0=$(cksum < "$T/text.txt")
refused_clean outputs "distill export -o onto the text (--force)" "is the input" "$O/none" \
    "$LMP_BIN" distill export "$M" -f "$T/text.txt" -o "$T/text.txt" --top-k 4 --ctx 16 --chunks 1 --force
check "[outputs] text intact" "[ \"\$(cksum < '$T/text.txt')\" = '$sum0' ]"
ln -s "$T/text.txt" "$T/text-link.txt"
refused_clean outputs "--imatrix-out onto the calibration text via a symlink" "is the input" "$O/none" \
    "$LMP_BIN" quantize "$M" -o "$O/im.gguf" --type q4_k_m --imatrix-calib "$T/text.txt" --imatrix-out "$T/text-link.txt" \
    --calib-samples 2 --calib-seqlen 16 --force
check "[outputs] text intact after --imatrix-out" "[ \"\$(cksum < '$T/text.txt')\" = '$sum0' ]"
refused_clean outputs "compare -o onto the model folder" "the input" "$O/none" \
    "$LMP_BIN" compare "$M" "$T/tiny.gguf" -f "$T/text.txt" -o "$M" --chunks 1 --ctx 16 --force
check "[outputs] model folder intact" "[ -f '$M/model.safetensors' ] && [ -f '$M/config.json' ]"
mkdir -p "$T/mine"; echo precious > "$T/mine/notes.txt"
refused_clean outputs "--force onto a folder lmpress did not write" "not written by lmpress" "$O/none" \
    "$LMP_BIN" convert "$T/tiny.gguf" -o "$T/mine" --force
check "[outputs] unrelated files kept" "[ -f '$T/mine/notes.txt' ]"
mkdir -p "$T/holder"; cp "$T/tiny.gguf" "$T/holder/in.gguf"
refused_clean outputs "output folder containing the input" "contains the input" "$O/none" \
    "$LMP_BIN" convert "$T/holder/in.gguf" -o "$T/holder" --force
refused_clean outputs "output inside the input folder" "inside the input folder" "$M/q.gguf" \
    "$LMP_BIN" quantize "$M" -o "$M/q.gguf" --type q8_0
ok "[outputs] convert to a new folder" "$LMP_BIN" convert "$T/tiny.gguf" -o "$O/ours"
check "[outputs] it carries the marker" "[ -f '$O/ours/.lmpress-output' ]"
ok "[outputs] --force replaces a folder lmpress wrote" "$LMP_BIN" convert "$T/tiny.gguf" -o "$O/ours" --force
mkdir -p "$O/empty"
ok "[outputs] --force replaces an empty folder" "$LMP_BIN" convert "$T/tiny.gguf" -o "$O/empty" --force

# ---- 7. concurrent writers: a second writer of the same output is refused
if command -v flock > /dev/null; then
    flock "$O/.busy.gguf.lmpress-lock" sleep 4 &
    lockpid=$!
    sleep 0.5
    refused_clean concurrency "second writer of one output" "another lmpress process" "$O/busy.gguf" \
        "$LMP_BIN" convert "$M" -o "$O/busy.gguf"
    wait $lockpid
    ok "[concurrency] the output once free" "$LMP_BIN" convert "$M" -o "$O/busy.gguf"
    check "[concurrency] no lock file left" "[ ! -e '$O/.busy.gguf.lmpress-lock' ]"
else
    skip "flock(1) not installed"
fi

# ---- 8. interrupted runs clean up; stale temporaries of dead processes are removed
for sig in INT TERM; do
    # (sh starts background jobs with SIGINT ignored; give the command the default back)
    LMP_DEBUG_STALL_OUTPUT=20 $PY -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
        "$LMP_BIN" convert "$M" -o "$O/sig$sig.gguf" > /dev/null 2> "$T/sigerr" &
    pid=$!
    i=0; while [ $i -lt 100 ] && ! ls "$O" | grep -q "sig$sig.gguf.tmp"; do sleep 0.1; i=$((i + 1)); done
    check "[signals] SIG$sig: a temporary existed" "ls '$O' | grep -q 'sig$sig.gguf.tmp'"
    kill -$sig $pid; wait $pid; rc=$?
    f0=$fail
    check "[signals] SIG$sig: killed by the signal" "[ $rc -ge 128 ]"
    check "[signals] SIG$sig: no temporary or lock left" "[ -z \"\$(ls -a '$O' | grep 'sig$sig')\" ]"
    if [ "$fail" -eq "$f0" ]; then count signals 1; else count signals 0; fi
done
sh -c 'exit 0' & deadpid=$!; wait $deadpid
: > "$O/stale.gguf.tmp.$deadpid"
mkdir "$O/stale.gguf.src.tmp.$deadpid.gguf.d" 2>/dev/null
ok "[signals] a later run" "$LMP_BIN" convert "$M" -o "$O/stale.gguf"
check "[signals] removed the stale temporary of a dead process" "[ ! -e '$O/stale.gguf.tmp.$deadpid' ]"
f0=$fail
check "[signals] and said so" "grep -q 'temporary left by an interrupted run' '$T/err'"
if [ "$fail" -eq "$f0" ]; then count signals 1; else count signals 0; fi

# ---- 9. errors tell the truth
if [ -w /dev/full ]; then
    for cmd in "inspect $M" "tokenize $M --text Once" "inspect $M --json"; do
        $LMP_BIN $cmd > /dev/full 2> "$T/err"; rc=$?
        f0=$fail
        check "[errors] $cmd > /dev/full fails" "[ $rc -ne 0 ] && grep -q 'No space left on device' '$T/err'"
        if [ "$fail" -eq "$f0" ]; then count errors 1; else count errors 0; fi
    done
fi
# a full disk (a 64 KiB tmpfs in a private mount namespace; needs root, else skipped)
mkdir -p "$O/small"
if unshare -m sh -c "mount -t tmpfs -o size=64k tmpfs '$O/small'" 2>/dev/null; then
    for cmd in "distill export $M -f $T/text.txt -o $O/small/l.h5 --top-k 4 --ctx 64 --chunks 4" \
               "convert $M -o $O/small/t.gguf"; do
        unshare -m sh -c "mount -t tmpfs -o size=64k tmpfs '$O/small' && exec $LMP_BIN $cmd" > /dev/null 2> "$T/err"; rc=$?
        f0=$fail
        check "[errors] full disk: ${cmd%% *} says so" "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q 'No space left on device' '$T/err' && ! grep -q 'text.txt:' '$T/err'"
        if [ "$fail" -eq "$f0" ]; then count errors 1; else count errors 0; fi
    done
else
    skip "a full disk needs a tmpfs mount (root)"
fi
refused_clean errors "quantize into a missing folder names the user's output" "$O/nodir/q.gguf" "$O/nodir/q.gguf" \
    "$LMP_BIN" quantize "$M" -o "$O/nodir/q.gguf" --type q8_0
check "[errors] ... and no internal temporary name" "! grep -q 'tmp\\.' '$T/err'"
$PY - "$B" <<'PYEOF'
import json, os, struct, sys
d = sys.argv[1]
h = json.dumps({"model.layers.0.bad\udcff\udcfe.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}).encode()
h = h.replace(b'\\udcff\\udcfe', b'\xff\xfe\x1b[31m')
h += b' ' * ((8 - len(h) % 8) % 8)
open(os.path.join(d, 'st_bad_name.safetensors'), 'wb').write(struct.pack('<Q', len(h)) + h + b'\0' * 8)
PYEOF
"$LMP_BIN" convert "$B/st_bad_name.safetensors" -o "$O/bn.gguf" > /dev/null 2> "$T/err"; rc=$?
f0=$fail
check "[errors] hostile name: refused" "[ $rc -ne 0 ]"
check "[errors] hostile name: message is printable UTF-8" "$PY -c 'import sys; b=open(\"$T/err\",\"rb\").read(); b.decode(\"utf-8\"); assert b\"\\x1b\" not in b'"
if [ "$fail" -eq "$f0" ]; then count errors 1; else count errors 0; fi

# ---- 10. configs other tools parse (compressed-tensors' own rule, transformers, vLLM)
CT_RULE='
def ct_quant(qc):  # compressed-tensors ModelCompressor.parse_quantization_config
    q = dict(qc)
    for k in ("sparsity_config", "transform_config", "version"):
        q.pop(k, None)
    m = q.pop("quant_method", None)
    if not q:
        return None
    if m is not None:
        q["quant_method"] = m
    return q
'
"$LMP_BIN" prune "$M" -o "$O/sp24" --method magnitude --pattern 2:4 --format compressed-tensors > /dev/null 2> "$T/err"
f0=$fail
check "[configs] sparse-only folder written" "[ -f '$O/sp24/config.json' ]"
check "[configs] sparse-only: compressed-tensors sees no quantization config" "$PY -c '$CT_RULE
import json; qc = json.load(open(\"$O/sp24/config.json\"))[\"quantization_config\"]
assert qc[\"quant_method\"] == \"compressed-tensors\" and ct_quant(qc) is None, qc
assert qc[\"sparsity_config\"][\"format\"] in (\"sparse-24-bitmask\", \"sparse-bitmask\")'"
if [ "$fail" -eq "$f0" ]; then count configs 1; else count configs 0; fi
f0=$fail
ok "[configs] GPTQ folder (RTN)" "$LMP_BIN" quantize "$M" -o "$O/gq" --method rtn
check "[configs] GPTQ: transformers GPTQConfig and vLLM read bits/group_size/desc_act/sym" "$PY -c '
import json; q = json.load(open(\"$O/gq/config.json\"))[\"quantization_config\"]
assert q[\"quant_method\"] == \"gptq\" and q[\"bits\"] in (2, 3, 4, 8) and isinstance(q[\"group_size\"], int)
assert isinstance(q[\"desc_act\"], bool) and isinstance(q[\"sym\"], bool), q'"
if [ "$fail" -eq "$f0" ]; then count configs 1; else count configs 0; fi
f0=$fail
ok "[configs] compressed-tensors pack-quantized (RTN)" "$LMP_BIN" quantize "$M" -o "$O/cq" --method rtn --format compressed-tensors
check "[configs] pack-quantized: compressed-tensors sees a quantization config with config_groups" "$PY -c '$CT_RULE
import json; qc = json.load(open(\"$O/cq/config.json\"))[\"quantization_config\"]
q = ct_quant(qc); assert q and q[\"format\"] == \"pack-quantized\" and q[\"quant_method\"] == \"compressed-tensors\"
for g in q[\"config_groups\"].values():
    w = g[\"weights\"]; assert g[\"targets\"] and w[\"type\"] == \"int\" and w[\"num_bits\"] in (2, 4, 8) and w[\"strategy\"] in (\"group\", \"channel\")'"
if [ "$fail" -eq "$f0" ]; then count configs 1; else count configs 0; fi
echo "reliability cases: $n_cases"
for a in $areas; do eval "echo \"  $a: tried \$tried_$a, refused or handled \${refused_$a:-0}\""; done
finish
