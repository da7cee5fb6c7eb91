#!/bin/sh
# Mixture-of-experts models through the command line: synth presets and --config with a
# depth override, inspect (HF and GGUF), convert HF -> GGUF (stacked expert tensors) -> HF,
# quantize to GGUF block types (routers kept in f32), ppl and run, the same perplexity from
# HF, GGUF and back, and the refusals: top-k above the expert count in config.json (file
# and key named, nothing written), calibrated methods on expert models (nothing written);
# magnitude 2:4 pruning of every expert; GPTQ / RTN folders (GPTQ and compressed-tensors) and
# Wanda / SparseGPT and AWQ on experts, each expert on its routed tokens, loaded and
# evaluated; granitemoe integer-group folders refused; pruned expert models (magnitude 2:4,
# Wanda 50%) in compressed-tensors and GGUF against the dense pruned folder; structured
# heads, KV heads and layers of expert models against the original with those parts zeroed;
# structured FFN and joint quantization refused. The real configs' parsing and the
# per-expert Hessians against the float64 reference are in tests/unit/test_moe.c.
. tests/cli/lib.sh
# one thread: the thread-count independence is in tests/unit/test_moe.c, and on a loaded
# 2-core machine decoding with two threads spends its time at barriers
export OMP_NUM_THREADS=1
type_of() { "$LMP_BIN" inspect "$1" 2>/dev/null | awk -v n="$2" '$1 == n {print $2; exit}'; }
kv_of() { "$LMP_BIN" inspect "$1" 2>/dev/null | awk -v k="$2" '$1 == k {print $2; exit}'; }

for p in tiny-mixtral tiny-qwen3-moe tiny-granitemoe; do
    ok "synth $p" "$LMP_BIN" synth --preset $p -o "$T/$p" --seed 7
    ok "inspect $p" "$LMP_BIN" inspect "$T/$p" --no-tensors
    check "inspect $p describes the experts" "grep -q '^experts:' '$T/out'"
    ok "convert $p to GGUF" "$LMP_BIN" convert "$T/$p" -o "$T/$p.gguf"
    ok "inspect $p GGUF" "$LMP_BIN" inspect "$T/$p.gguf"
    check "$p GGUF: stacked ffn_down_exps" "grep -q 'blk.0.ffn_down_exps.weight' '$T/out'"
    check "$p GGUF: expert_count" "grep -q 'expert_count' '$T/out'"
    ok "convert $p GGUF back to HF" "$LMP_BIN" convert "$T/$p.gguf" -o "$T/$p-back"
    cp "$T/$p/tokenizer.json" "$T/$p-back/" # GGUF -> HF writes no tokenizer.json (yet)
    ok "quantize $p q4_k_m" "$LMP_BIN" quantize "$T/$p.gguf" -o "$T/$p-q4km.gguf" --type q4_k_m
    check "$p q4_k_m: router kept f32" "[ \"\$(type_of $T/$p-q4km.gguf blk.0.ffn_gate_inp.weight)\" = f32 ]"
    ok "quantize $p q8_0 from HF" "$LMP_BIN" quantize "$T/$p" -o "$T/$p-q8.gguf" --type q8_0
    check "$p q8_0: experts q8_0" "[ \"\$(type_of $T/$p-q8.gguf blk.0.ffn_up_exps.weight)\" = q8_0 ]"
    for f in "$T/$p.gguf" "$T/$p-q4km.gguf"; do
        ok "ppl $(basename $f)" "$LMP_BIN" ppl "$f" -f "$T/$p/corpus.txt" --protocol llamacpp --ctx 64 --chunks 2 --json
    done
    ok "run $p" "$LMP_BIN" run "$T/$p.gguf" -p "The river" -n 8
done
# importance matrix from calibration: experts see their routed tokens; with 4 tokens some
# experts are never reached and the command names them
ok "q4_0 with --imatrix-calib" "$LMP_BIN" quantize "$T/tiny-mixtral" -o "$T/mix-im.gguf" --type q4_0 \
    --imatrix-calib "$T/tiny-mixtral/corpus.txt" --calib-samples 1 --calib-seqlen 4
check "unreached experts listed" "grep -q 'experts no calibration token was routed to' '$T/err'"

# the same model in every form gives the same perplexity (f32 weights)
ppl_of() { "$LMP_BIN" ppl "$1" -f "$T/tiny-mixtral/corpus.txt" --protocol llamacpp --ctx 64 --chunks 2 2>/dev/null | awk '{print $2}'; }
a=$(ppl_of "$T/tiny-mixtral"); b=$(ppl_of "$T/tiny-mixtral.gguf"); c=$(ppl_of "$T/tiny-mixtral-back")
check "mixtral HF/GGUF/HF ppl agree ($a $b $c)" "awk -v a=$a -v b=$b -v c=$c 'BEGIN{exit !(a>0 && (a-b)^2 < 1e-6*a*a && a==c)}'"
check "mixtral q8_0 file type" "[ \"\$(kv_of $T/tiny-mixtral-q8.gguf general.file_type)\" = 7 ]"

# real configs (fixtures): accepted unmodified; inspect of a bare config.json is fam's
if [ -d "$LMP_FIXTURES/hf-meta/configs" ]; then
    for cfg in mixtral-8x7b qwen3-30b-a3b granite-3.1-1b-a400m-moe; do
        # a vocabulary cut to 512 rows keeps this to seconds; the other shapes are real
        sed 's/"vocab_size": *[0-9]*/"vocab_size": 512/; s/"hidden_size": *[0-9]*/"hidden_size": 256/' \
            "$LMP_FIXTURES/hf-meta/configs/$cfg.json" > "$T/$cfg.json"
        ok "synth --config $cfg (depth 1)" "$LMP_BIN" synth --config "$T/$cfg.json" --layers 1 -o "$T/c-$cfg" \
            --dtype bf16
    done
else
    skip "fixtures absent: real MoE configs"
fi

# the real configs, unmodified: inspect describes them (synth of their depth-1 shapes takes
# minutes, measured in docs/status.md; parsing and parameter counts: tests/unit/test_moe.c)
if [ -d "$LMP_FIXTURES/hf-meta/configs" ]; then
    for cfg in mixtral-8x7b qwen3-30b-a3b granite-3.1-1b-a400m-moe; do
        ok "inspect $cfg config" "$LMP_BIN" inspect "$LMP_FIXTURES/hf-meta/configs/$cfg.json"
        check "inspect $cfg: experts" "grep -q '^experts: ' '$T/out'"
    done
else
    skip "fixtures absent: real MoE configs"
fi

# refusals: top-k above the expert count in config.json (file and key named, nothing
# written), calibrated methods and pruning on expert models (nothing written).
sed 's/"num_experts_per_tok":[[:space:]]*[0-9]*/"num_experts_per_tok": 9/' "$T/tiny-mixtral/config.json" > "$T/bad.json"
refuses "top-k above the expert count" "num_experts_per_tok" "$LMP_BIN" synth --config "$T/bad.json" -o "$T/bad"
check "nothing written for the bad config" "[ ! -e '$T/bad' ]"
# calibrated methods on experts: each expert's statistics from the tokens routed to it;
# the folders load and run, perplexity near float's (random-weight tiny models: ppl ~ vocab)
ppl_n() { "$LMP_BIN" ppl "$1" -f "$T/$2/corpus.txt" --protocol llamacpp --ctx 64 --chunks 2 2>/dev/null | awk '{print $2}'; }
# (random-weight models: 50% sparsity moves ppl by up to ~30% either way; a broken expert
# load gives an error or a non-finite / far-off value)
near() { awk -v a="$1" -v b="$2" 'BEGIN{exit !(a > 0 && b > 0 && b < 1.5 * a && b > 0.6 * a)}'; }
C="--calib-samples 2 --calib-seqlen 32"
for p in tiny-mixtral tiny-qwen3-moe; do
    f=$(ppl_n "$T/$p" $p)
    ok "GPTQ on $p experts" "$LMP_BIN" quantize "$T/$p" -o "$T/$p-gptq" --method gptq --calib "$T/$p/corpus.txt" $C \
        --group-size 32
    g=$(ppl_n "$T/$p-gptq" $p)
    check "$p GPTQ folder loads, ppl near float ($f -> $g)" "near $f $g"
    ok "RTN on $p experts, compressed-tensors" "$LMP_BIN" quantize "$T/$p" -o "$T/$p-ct" --method rtn \
        --format compressed-tensors --group-size 32
    g=$(ppl_n "$T/$p-ct" $p)
    check "$p compressed-tensors folder loads, ppl near float ($f -> $g)" "near $f $g"
    check "$p routers listed unconverted" "grep -q 'gate\"' '$T/$p-ct/config.json'"
    for meth in wanda sparsegpt; do
        ok "$meth on $p experts" "$LMP_BIN" prune "$T/$p" -o "$T/$p-$meth" --method $meth --sparsity 0.5 \
            --calib "$T/$p/corpus.txt" $C --json
        check "$p $meth: half the linear weights zero" "grep -q '\"linear_sparsity\": 0.500000' '$T/out'"
        g=$(ppl_n "$T/$p-$meth" $p)
        check "$p $meth output loads, ppl near float ($f -> $g)" "near $f $g"
    done
done
check "mixtral GPTQ: expert tensors by name" "$LMP_BIN inspect $T/tiny-mixtral-gptq | grep -q 'block_sparse_moe.experts.7.w2.qweight'"
check "qwen3_moe compressed-tensors: expert tensors by name" \
    "$LMP_BIN inspect $T/tiny-qwen3-moe-ct | grep -q 'mlp.experts.15.down_proj.weight_packed'"
# experts no calibration token reached: RTN (GPTQ) / magnitude (Wanda), named
ok "GPTQ with 4 calibration tokens" "$LMP_BIN" quantize "$T/tiny-qwen3-moe" -o "$T/gq4" --method gptq \
    --calib "$T/tiny-qwen3-moe/corpus.txt" --calib-samples 1 --calib-seqlen 4 --group-size 32
check "GPTQ names the unreached experts" "grep -q 'saw no calibration token.*quantized by RTN' '$T/err'"
ok "Wanda with 4 calibration tokens" "$LMP_BIN" prune "$T/tiny-mixtral" -o "$T/wa4" --method wanda --sparsity 0.5 \
    --calib "$T/tiny-mixtral/corpus.txt" --calib-samples 1 --calib-seqlen 4
check "Wanda names the unreached experts" "grep -q 'saw no calibration token.*pruned by magnitude' '$T/err'"
# granitemoe: pruning works (3-D tensors rebuilt), integer-group folders refused precisely
ok "SparseGPT on granitemoe experts" "$LMP_BIN" prune "$T/tiny-granitemoe" -o "$T/gr-sg" --method sparsegpt \
    --sparsity 0.5 --calib "$T/tiny-granitemoe/corpus.txt" $C
f=$(ppl_n "$T/tiny-granitemoe" tiny-granitemoe); g=$(ppl_n "$T/gr-sg" tiny-granitemoe)
check "granitemoe SparseGPT output loads, ppl near float ($f -> $g)" "near $f $g"
refuses "GPTQ folder of granitemoe" "fused 3-D" "$LMP_BIN" quantize "$T/tiny-granitemoe" -o "$T/gq" \
    --method gptq --calib "$T/tiny-granitemoe/corpus.txt" $C --group-size 16
check "nothing written for granitemoe GPTQ" "[ ! -e '$T/gq' ]"
# AWQ: one gate/up scale shared by the experts (folded into the norm and the router), the
# down scales per expert; AWQ-format folder with expert names, loads and runs
for p in tiny-mixtral tiny-qwen3-moe; do
    f=$(ppl_n "$T/$p" $p)
    ok "AWQ on $p experts" "$LMP_BIN" quantize "$T/$p" -o "$T/$p-awq" --method awq --calib "$T/$p/corpus.txt" \
        $C --group-size 32 --no-act-order
    g=$(ppl_n "$T/$p-awq" $p)
    check "$p AWQ folder loads, ppl near float ($f -> $g)" "near $f $g"
done
check "mixtral AWQ: expert qweight and folded router" \
    "$LMP_BIN inspect $T/tiny-mixtral-awq | grep -q 'block_sparse_moe.experts.3.w3.qweight'"
refuses "AWQ on granitemoe" "granitemoe" "$LMP_BIN" quantize "$T/tiny-granitemoe" -o "$T/aw" \
    --method awq --calib "$T/tiny-granitemoe/corpus.txt" $C --group-size 16 --no-act-order
check "nothing written for granitemoe AWQ" "[ ! -e '$T/aw' ]"
ok "magnitude 2:4 on every linear and expert" "$LMP_BIN" prune "$T/tiny-granitemoe" -o "$T/pr" \
    --method magnitude --pattern 2:4 --json
check "prune: half the linear weights zero" "grep -q '\"linear_sparsity\": 0.500000' '$T/out'"
ok "ppl of the pruned experts" "$LMP_BIN" ppl "$T/pr" -f "$T/tiny-granitemoe/corpus.txt" --ctx 64
# pruned expert models in compressed-tensors (every 2-D Linear compressed, experts by their
# own names; routers kept dense and listed in `ignore`; granitemoe's 3-D expert tensors are
# not Linear modules and stay dense with their zeros) and GGUF (stacked *_exps): numpy
# decodes the compressed folders from the layout alone and finds the dense pruned folder's
# weights; the engine's log-probs are the dense folder's bit for bit (compressed) or within
# 1e-4 (GGUF: llama.cpp's row order of q/k), and far from the unpruned model's.
H5=
for p in /usr/bin/python3 "$PY"; do
    if "$p" -c 'import h5py, numpy' 2>/dev/null; then H5=$p; break; fi
done
for p in "$PY" /usr/bin/python3; do
    if "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done
lp() { "$LMP_BIN" distill export "$1" -f "$2" -o "$1.h5" --full --f32 --ctx 32 --chunks 2 -t 1 > /dev/null 2>&1; }
lp_diff() { "$H5" -c "
import h5py, numpy as np
a, b = h5py.File('$1.h5', 'r')['logprobs'][()], h5py.File('$2.h5', 'r')['logprobs'][()]
print(float(np.abs(a - b).max()) if a.shape == b.shape and a.shape[2] > 1 else 1e9)"; }
router_of() { case $1 in tiny-mixtral) echo block_sparse_moe.gate.weight;; tiny-qwen3-moe) echo mlp.gate.weight;;
              *) echo block_sparse_moe.router.layer.weight;; esac; }
for p in tiny-mixtral tiny-qwen3-moe tiny-granitemoe; do
    X="$T/$p/corpus.txt"
    for v in "m24 --method magnitude --pattern 2:4" "w50 --method wanda --sparsity 0.5 --calib $X $C"; do
        set -- $v
        n=$1
        shift
        [ $p = tiny-granitemoe ] && [ $n = w50 ] && continue
        ok "$p $n dense" "$LMP_BIN" prune "$T/$p" -o "$T/$p-d$n" "$@"
        ok "$p $n compressed-tensors" "$LMP_BIN" prune "$T/$p" -o "$T/$p-c$n" "$@" --format compressed-tensors --json
        check "$p $n compressed: format named" "grep -q '\"format\": \"sparse-' '$T/out'"
        ok "$p $n GGUF" "$LMP_BIN" prune "$T/$p" -o "$T/$p-g$n.gguf" "$@" --format gguf
        check "$p $n GGUF: stacked experts" "$LMP_BIN inspect $T/$p-g$n.gguf | grep -q 'blk.0.ffn_gate_exps'"
        if "$PY" -c 'import numpy' 2>/dev/null; then
            ok "$p $n: compressed folder decodes to the dense pruned weights" "$PY" tests/cli/ct_sparse_check.py \
                "$T/$p-d$n" "$T/$p-c$n"
            check "$p $n: only the routers dense among 2-D weights" \
                "grep -q ' 2 2-D weights dense ($(router_of $p))\$' '$T/out'"
            check "$p $n: routers ignored in sparsity_config" "grep -q 're:' '$T/$p-c$n/config.json'"
        else
            skip "python3 with numpy is needed to read the folders"
        fi
        if [ -n "$H5" ]; then
            for f in "$T/$p" "$T/$p-d$n" "$T/$p-c$n" "$T/$p-g$n.gguf"; do
                [ -e "$f.h5" ] || ok "log-probs of $(basename $f)" lp "$f" "$X"
            done
            check "$p $n: compressed log-probs = dense pruned ($(lp_diff $T/$p-d$n $T/$p-c$n))" \
                "[ \"\$(lp_diff $T/$p-d$n $T/$p-c$n)\" = 0.0 ]"
            a=$(lp_diff "$T/$p-d$n" "$T/$p-g$n.gguf"); b=$(lp_diff "$T/$p-d$n" "$T/$p")
            check "$p $n: GGUF log-probs within 1e-4 of the dense pruned ($a; unpruned model: $b)" \
                "awk -v a=$a -v b=$b 'BEGIN{exit !(a < 1e-4 && b > 1e-2)}'"
        else
            skip "h5py is needed to compare the log-probs"
        fi
    done
done
# structured heads, KV heads and layers of expert models (attention and whole blocks; the
# experts and routers are copied): numpy finds every tensor to be the original's kept rows /
# columns or unchanged (tests/cli/moe_struct_check.py) and builds the original with the
# removed heads' o_proj columns (removed layers' o_proj and FFN outputs) zeroed instead,
# whose log-probs must be the pruned model's; FFN channels of experts and joint quantization
# are refused with the reason
for p in tiny-mixtral tiny-qwen3-moe tiny-granitemoe; do
    X="$T/$p/corpus.txt"
    for k in heads kv-heads layers; do
        ok "$p --structured $k" "$LMP_BIN" prune "$T/$p" -o "$T/$p-s$k" --structured $k --ratio 0.5 --calib "$X" $C -t 1
        if "$PY" -c 'import numpy' 2>/dev/null; then
            ok "$p $k: kept parts are the original's, the rest unchanged" "$PY" tests/cli/moe_struct_check.py \
                "$T/$p" "$T/$p-s$k" $k "$T/$p-z$k"
            if [ -n "$H5" ]; then
                [ -e "$T/$p.h5" ] || ok "log-probs of $p" lp "$T/$p" "$X"
                ok "log-probs of $p-s$k" lp "$T/$p-s$k" "$X"
                ok "log-probs of $p-z$k" lp "$T/$p-z$k" "$X"
                d=$(lp_diff "$T/$p-s$k" "$T/$p-z$k"); u=$(lp_diff "$T/$p-s$k" "$T/$p")
                check "$p $k: log-probs = the zeroed original's ($d; unpruned: $u)" \
                    "awk -v a=$d -v b=$u 'BEGIN{exit !(a < 1e-5 && b > 1e-2)}'"
            fi
        fi
    done
done
ok "mixtral --structured kv-heads to GGUF" "$LMP_BIN" prune "$T/tiny-mixtral" -o "$T/mix-skv.gguf" --structured kv-heads \
    --ratio 0.5 --calib "$T/tiny-mixtral/corpus.txt" $C -t 1
check "GGUF: head_count_kv halved" "[ \"\$(kv_of $T/mix-skv.gguf llama.attention.head_count_kv)\" = 1 ]"
if [ -n "$H5" ]; then
    ok "log-probs of the GGUF" lp "$T/mix-skv.gguf" "$T/tiny-mixtral/corpus.txt"
    d=$(lp_diff "$T/tiny-mixtral-skv-heads" "$T/mix-skv.gguf")
    check "structured GGUF log-probs within 1e-4 of the folder's ($d)" "awk -v a=$d 'BEGIN{exit !(a < 1e-4)}'"
fi
refuses "structured ffn of experts" "structured ffn on a mixture-of-experts" "$LMP_BIN" prune "$T/tiny-granitemoe" \
    -o "$T/pw" --structured ffn --ratio 0.25 --calib "$T/tiny-granitemoe/corpus.txt"
check "nothing written for structured ffn" "[ ! -e '$T/pw' ]"
refuses "joint quantization of experts" "joint quantization" "$LMP_BIN" prune "$T/tiny-mixtral" -o "$T/pq" \
    --method sparsegpt --sparsity 0.5 --then-quantize 4 --calib "$T/tiny-mixtral/corpus.txt" $C
check "nothing written for joint quantization" "[ ! -e '$T/pq' ]"
finish
