#!/bin/sh
# CLI tests of issue 16's dense families (phi3, gemma, gemma2, gemma3_text, qwen3, smollm3,
# granite, olmo2) through the product on the tiny-* synth presets: inspect, convert to GGUF
# and back (the same perplexity from all three), quantize to GGUF, GPTQ/AWQ (or their clear
# refusals), prune, run, distill export + eval. The engine's exactness against an
# independent reference is tests/unit/test_golden.c's job; this checks the commands agree
# with each other and refuse what they cannot do. Also: every real config in the fixtures'
# hf-meta/configs is read by inspect (skipped without fixtures).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
. tests/cli/lib.sh
B=$LMP_BIN

# value of a top-level key of a one-line JSON object (number or string)
jget() { printf '%s' "$2" | sed -n "s/.*\"$1\": *\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
# |a/b - 1| <= tol
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { if (a == "" || b == "") exit 1; r = a / b - 1; if (r < 0) r = -r; exit !(r <= t) }'; }

for fam in phi3 gemma gemma2 gemma3 qwen3 smollm3 granite olmo2; do
    M=$T/$fam
    ok "$fam: synth" "$B" synth --preset tiny-$fam --seed 3 -o "$M"
    TXT=$M/corpus.txt
    ok "$fam: inspect names the family's features" sh -c "'$B' inspect '$M' --no-tensors | grep -q 'model_type'"
    # HF -> GGUF -> HF: the same perplexity (llama.cpp protocol, 2 chunks of 32)
    ok "$fam: convert to GGUF" "$B" convert "$M" -o "$T/$fam.gguf"
    ok "$fam: convert GGUF back to HF" "$B" convert "$T/$fam.gguf" -o "$T/$fam-back"
    cp "$M/tokenizer.json" "$T/$fam-back/" # the weights' round trip (tokenizer export: issue 18)
    a=$("$B" ppl "$M" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
    b=$("$B" ppl "$T/$fam.gguf" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
    c=$("$B" ppl "$T/$fam-back" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
    pa=$(jget ppl "$a"); pb=$(jget ppl "$b"); pc=$(jget ppl "$c")
    check "$fam: ppl HF $pa = GGUF $pb = HF again $pc" "close '$pa' '$pb' 1e-5 && close '$pa' '$pc' 1e-5"
    # GGUF quantization with llama.cpp's mix rules
    ok "$fam: quantize q4_k_m" "$B" quantize "$M" -o "$T/$fam-q4km.gguf" --type q4_k_m
    q=$("$B" ppl "$T/$fam-q4km.gguf" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
    pq=$(jget ppl "$q")
    check "$fam: q4_k_m ppl $pq within 15% of $pa" "close '$pq' '$pa' 0.15"
    ok "$fam: run" sh -c "'$B' run '$T/$fam-q4km.gguf' -p 'The river' -n 4 > '$T/run.txt'"
    # integer groups, prune
    case $fam in
    phi3)
        # written as published Phi-3 GPTQ checkpoints are: one fused qkv_proj / gate_up_proj
        # (8 windows: on 2 x 32 tokens the calibration seeds alone move this ppl from 714 to
        # 908 against the float 783)
        ok "$fam: gptq (fused tensors)" "$B" quantize "$M" -o "$T/$fam-gptq" --method gptq --calib "$TXT" \
            --calib-samples 8 --calib-seqlen 32 --group-size 32
        check "$fam: gptq folder holds qkv_proj.qweight" "'$B' inspect '$T/$fam-gptq' | grep -q 'layers.0.self_attn.qkv_proj.qweight'"
        check "$fam: gptq folder holds gate_up_proj.qweight" "'$B' inspect '$T/$fam-gptq' | grep -q 'layers.0.mlp.gate_up_proj.qweight'"
        g=$("$B" ppl "$T/$fam-gptq" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
        check "$fam: gptq ppl $(jget ppl "$g") within 15% of $pa" "close '$(jget ppl "$g")' '$pa' 0.15"
        ok "$fam: awq (fused tensors)" "$B" quantize "$M" -o "$T/$fam-awq" --method awq --calib "$TXT" \
            --calib-samples 2 --calib-seqlen 32 --group-size 32
        w=$("$B" ppl "$T/$fam-awq" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
        check "$fam: awq ppl $(jget ppl "$w") within 15% of $pa" "close '$(jget ppl "$w")' '$pa' 0.15"
        ok "$fam: prune wanda 50% (fused tensors, dense)" "$B" prune "$M" -o "$T/$fam-pr" --method wanda \
            --sparsity 0.5 --calib "$TXT" --calib-samples 2 --calib-seqlen 32
        ok "$fam: pruned model runs" "$B" ppl "$T/$fam-pr" -f "$TXT" --ctx 32 --chunks 1
        ok "$fam: prune wanda 50% to compressed-tensors (fused tensors compressed)" "$B" prune "$M" -o "$T/$fam-prc" \
            --method wanda --sparsity 0.5 --calib "$TXT" --calib-samples 2 --calib-seqlen 32 --format compressed-tensors
        d=$("$B" ppl "$T/$fam-pr" -f "$TXT" --ctx 32 --chunks 1 --json 2>/dev/null)
        c=$("$B" ppl "$T/$fam-prc" -f "$TXT" --ctx 32 --chunks 1 --json 2>/dev/null)
        check "$fam: compressed folder gives the dense pruned folder's ppl ($(jget ppl "$c") = $(jget ppl "$d"))" \
            "[ -n '$(jget ppl "$d")' ] && [ '$(jget ppl "$c")' = '$(jget ppl "$d")' ]"
        ;;
    *)
        ok "$fam: gptq" "$B" quantize "$M" -o "$T/$fam-gptq" --method gptq --calib "$TXT" \
            --calib-samples 2 --calib-seqlen 32 --group-size 32
        g=$("$B" ppl "$T/$fam-gptq" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
        check "$fam: gptq ppl $(jget ppl "$g") within 15% of $pa" "close '$(jget ppl "$g")' '$pa' 0.15"
        ok "$fam: prune wanda 50%" "$B" prune "$M" -o "$T/$fam-pr" --method wanda --sparsity 0.5 \
            --calib "$TXT" --calib-samples 2 --calib-seqlen 32
        ok "$fam: pruned model runs" "$B" ppl "$T/$fam-pr" -f "$TXT" --ctx 32 --chunks 1
        ;;
    esac
    case $fam in
    olmo2)
        # no pre-norm: q/k/v and gate/up keep scale 1, v->o and up->down are searched and
        # folded into the linears; 8-bit shows the folds are exact (within 1% of float)
        ok "$fam: awq (no pre-norm)" "$B" quantize "$M" -o "$T/$fam-awq" --method awq --calib "$TXT" \
            --calib-samples 2 --calib-seqlen 32 --group-size 32
        check "$fam: awq says which scales it skips" "grep -q 'no norm in front of q/k/v and gate/up' '$T/err'"
        w=$("$B" ppl "$T/$fam-awq" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
        check "$fam: awq ppl $(jget ppl "$w") within 15% of $pa" "close '$(jget ppl "$w")' '$pa' 0.15"
        ok "$fam: awq 8-bit" "$B" quantize "$M" -o "$T/$fam-awq8" --method awq --bits 8 --format gptq \
            --calib "$TXT" --calib-samples 2 --calib-seqlen 32 --group-size 32
        w=$("$B" ppl "$T/$fam-awq8" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
        check "$fam: awq 8-bit ppl $(jget ppl "$w") within 1% of $pa" "close '$(jget ppl "$w")' '$pa' 0.01" ;;
    gemma|gemma3)
        # the (1 + w) norms with the scales folded in, written back as w
        ok "$fam: awq" "$B" quantize "$M" -o "$T/$fam-awq" --method awq --calib "$TXT" \
            --calib-samples 2 --calib-seqlen 32 --group-size 32
        w=$("$B" ppl "$T/$fam-awq" -f "$TXT" --protocol llamacpp --ctx 32 --chunks 2 --json 2>/dev/null)
        check "$fam: awq ppl $(jget ppl "$w") within 15% of $pa" "close '$(jget ppl "$w")' '$pa' 0.15" ;;
    esac
    ok "$fam: distill export" "$B" distill export "$M" -f "$TXT" -o "$T/$fam.h5" --ctx 32 --chunks 2
    ok "$fam: eval q4_k_m against it" "$B" eval "$T/$fam-q4km.gguf" --base "$T/$fam.h5"
    rm -rf "$M" "$T/$fam"*
done

# the real configs of the families: read and described (bare config.json)
C=$LMP_FIXTURES/hf-meta/configs
if [ -d "$C" ]; then
    for f in phi3-mini-4k phi3.5-mini phi4-mini phi4-14b gemma-2b gemma2-2b gemma2-9b gemma3-1b gemma3-270m \
        qwen3-0.6b smollm3-3b granite-3.3-8b olmo2-7b; do
        ok "config $f read by inspect" "$B" inspect "$C/$f.json"
    done
    check "phi4-mini described with partial RoPE and longrope" \
        "'$B' inspect '$C/phi4-mini.json' | grep -q 'partial RoPE 96/128, longrope'"
    refuses "classification head refused" "SequenceClassification" "$B" inspect "$C/smollm-135m-fx.json"
else
    skip "fixtures not found: real configs not checked"
fi
# the depth override keeps the per-layer lists in step
ok "synth --layers 2" "$B" synth --preset tiny-gemma3 --layers 2 -o "$T/g2"
ok "shrunk model loads" "$B" ppl "$T/g2" -f "$T/g2/corpus.txt" --ctx 32 --chunks 1
rm -rf "$T/g2"
printf '{"model_type":"phi3","hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":300,"partial_rotary_factor":1.5}' > "$T/bad.json"
refuses "partial_rotary_factor out of range names file and key" "partial_rotary_factor" "$B" synth --config "$T/bad.json" -o "$T/bad"
check "nothing written for a bad config" "[ ! -e '$T/bad' ]"
finish
