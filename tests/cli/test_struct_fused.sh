#!/bin/sh
# Pruning of a model that stores q/k/v and gate/up fused (phi3's qkv_proj and gate_up_proj,
# issue 16): structured heads, KV heads, FFN channels and layers on the tiny-phi3 preset;
# unstructured and 2:4 (magnitude, Wanda, SparseGPT) in the compressed-tensors formats;
# and of olmo2, whose q_norm / k_norm span every head (KV heads on tiny-olmo2: the norms keep
# the kept heads' entries).
# Each pruned folder must load and run, and its fused tensors must hold exactly the kept
# rows of the original in the fused order: the kept heads / channels are read back from
# the tensors the writer slices without fusion (o_proj's and down_proj's columns) and the
# fused rows are checked against them, independently of lmpress (numpy on the files); the
# compressed fused tensors are decoded by numpy from the compressed-tensors layout and
# compared with the dense pruned folder, and the engine's log-probs of both compared.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
. tests/cli/lib.sh
B=$LMP_BIN
TXT="$LMP_FIXTURES/text/tinystories-valid-sample.txt"
[ -f "$TXT" ] || TXT="$T/text.txt"
[ -f "$TXT" ] || awk 'BEGIN { for (i = 0; i < 400; i++) printf "the river ran past the old mill and the children watched it %d times.\n", i }' > "$TXT"
for p in "$PY" /usr/bin/python3; do
    if "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done

M="$T/phi"
ok "synth tiny-phi3" "$B" synth --preset tiny-phi3 -o "$M"
cat > "$T/check.py" <<'EOF'
# usage: check.py ORIG PRUNED KIND: the fused rows of every block against the kept heads /
# channels that o_proj / down_proj's columns show
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "cli"))  # the tests run from the repository root
from st_util import load_f32 as load, kept_blocks

o, oc = load(sys.argv[1])
n, nc = load(sys.argv[2])
kind = sys.argv[3]
L = nc["num_hidden_layers"]
hd = oc["hidden_size"] // oc["num_attention_heads"]
nh, nkv, ff = oc["num_attention_heads"], oc["num_key_value_heads"], oc["intermediate_size"]
for l in range(L):
    p = "model.layers.%d." % l
    qkv_o, qkv_n = o[p + "self_attn.qkv_proj.weight"], n[p + "self_attn.qkv_proj.weight"]
    gu_o, gu_n = o[p + "mlp.gate_up_proj.weight"], n[p + "mlp.gate_up_proj.weight"]
    if kind in ("heads", "kv-heads"):
        H = kept_blocks(o[p + "self_attn.o_proj.weight"], n[p + "self_attn.o_proj.weight"], hd)
        assert len(H) == nc["num_attention_heads"]
        if kind == "heads":
            K = list(range(nkv))
        else:  # whole GQA groups: the kv heads of the kept q heads
            g = nh // nkv
            K = sorted(set(h // g for h in H))
            assert H == [k * g + j for k in K for j in range(g)], (H, K)
            assert len(K) == nc["num_key_value_heads"]
        rows = [h * hd + j for h in H for j in range(hd)]
        rows += [(nh + k) * hd + j for k in K for j in range(hd)]
        rows += [(nh + nkv + k) * hd + j for k in K for j in range(hd)]
        assert np.array_equal(qkv_n, qkv_o[rows]), "layer %d: qkv_proj rows" % l
        assert np.array_equal(gu_n, gu_o), "layer %d: gate_up_proj changed" % l
    elif kind == "ffn":
        F = kept_blocks(o[p + "mlp.down_proj.weight"], n[p + "mlp.down_proj.weight"], 1)
        assert len(F) == nc["intermediate_size"] < ff
        assert np.array_equal(gu_n, gu_o[F + [ff + f for f in F]]), "layer %d: gate_up_proj rows" % l
        assert np.array_equal(qkv_n, qkv_o), "layer %d: qkv_proj changed" % l
print("ok", kind, L)
EOF
cat > "$T/check_norm.py" <<'EOF'
# usage: check_norm.py ORIG PRUNED: olmo2's full-width q_norm / k_norm hold the entries of
# the heads that o_proj's columns kept (load / kept_blocks from check.py)
import os, sys
exec(open(os.path.join(os.path.dirname(sys.argv[0]), "check.py")).read().split("o, oc = load")[0])
o, oc = load(sys.argv[1])
n, nc = load(sys.argv[2])
hd = oc["hidden_size"] // oc["num_attention_heads"]
for l in range(nc["num_hidden_layers"]):
    p = "model.layers.%d.self_attn." % l
    H = kept_blocks(o[p + "o_proj.weight"], n[p + "o_proj.weight"], hd)
    rows = [h * hd + j for h in H for j in range(hd)]
    assert len(H) < oc["num_attention_heads"]
    assert np.array_equal(n[p + "q_norm.weight"], o[p + "q_norm.weight"][rows]), "q_norm"
    assert np.array_equal(n[p + "k_norm.weight"], o[p + "k_norm.weight"][rows]), "k_norm (no GQA: kv = q heads)"
    assert np.array_equal(n[p + "q_proj.weight"], o[p + "q_proj.weight"][rows]), "q_proj"
print("ok norms", nc["num_hidden_layers"])
EOF
for k in heads kv-heads ffn layers; do
    ok "prune --structured $k (fused qkv_proj / gate_up_proj)" "$B" prune "$M" -o "$T/p-$k" --structured $k \
        --ratio 0.25 --calib "$TXT" --calib-samples 2 --calib-seqlen 32
    ok "$k: pruned model runs" "$B" ppl "$T/p-$k" -f "$TXT" --ctx 32 --chunks 2
    if "$PY" -c 'import numpy' 2>/dev/null; then
        [ $k = layers ] || ok "$k: fused rows are the kept heads / channels" "$PY" "$T/check.py" "$M" "$T/p-$k" $k
    else
        skip "python3 with numpy is needed to read the folders"
    fi
done
ok "synth tiny-olmo2" "$B" synth --preset tiny-olmo2 -o "$T/olmo"
ok "olmo2: prune --structured kv-heads (full-width q/k norms)" "$B" prune "$T/olmo" -o "$T/o-kv" \
    --structured kv-heads --ratio 0.25 --calib "$TXT" --calib-samples 2 --calib-seqlen 32
ok "olmo2: pruned model runs" "$B" ppl "$T/o-kv" -f "$TXT" --ctx 32 --chunks 2
if "$PY" -c 'import numpy' 2>/dev/null; then
    ok "olmo2: q_norm / k_norm keep the kept heads' entries" "$PY" "$T/check_norm.py" "$T/olmo" "$T/o-kv"
fi
heads_of() { sed -n 's/.*"num_attention_heads":[[:space:]]*\([0-9]*\).*/\1/p' "$1/config.json"; }
check "heads: fewer attention heads in config.json ($(heads_of "$M") -> $(heads_of "$T/p-heads"))" \
    "[ '$(heads_of "$T/p-heads")' -lt '$(heads_of "$M")' ]"
# Unstructured / N:M pruning of the fused tensors in the compressed-tensors sparse formats:
# qkv_proj and gate_up_proj are compressed as one Linear each (as compressed-tensors
# compresses the fused module); decoded here by numpy from the layout alone, they equal the
# dense pruned folder's tensors, every group of 4 of every fused row keeps 2 (2:4), and the
# engine's log-probs of the compressed folder are the dense folder's, bit for bit.
H5=
for p in /usr/bin/python3 "$PY"; do
    if "$p" -c 'import h5py, numpy' 2>/dev/null; then H5=$p; break; fi
done
W="--calib $TXT --calib-samples 2 --calib-seqlen 32 -t 1"
for v in "m24 --method magnitude --pattern 2:4" "m50 --method magnitude --sparsity 0.5" \
         "w24 --method wanda --pattern 2:4 $W" "s50 --method sparsegpt --sparsity 0.5 $W"; do
    set -- $v
    n=$1
    shift
    ok "$n on fused tensors, dense" "$B" prune "$M" -o "$T/d-$n" "$@"
    ok "$n on fused tensors, compressed-tensors" "$B" prune "$M" -o "$T/c-$n" "$@" --format compressed-tensors
    if "$PY" -c 'import numpy' 2>/dev/null; then
        ok "$n: compressed qkv_proj / gate_up_proj decode to the dense pruned tensors" "$PY" tests/cli/ct_sparse_check.py \
            "$T/d-$n" "$T/c-$n"
        check "$n: every linear compressed, the fused ones as one (2 per block)" \
            "grep -q ' 8 linears compressed, 4 fused, 0 2-D weights dense' '$T/out'"
    else
        skip "python3 with numpy is needed to read the folders"
    fi
    for k in d c; do
        ok "log-probs of $k-$n" "$B" distill export "$T/$k-$n" -f "$TXT" -o "$T/$k-$n.h5" --full --f32 --ctx 32 \
            --chunks 2 -t 1
    done
    if [ -n "$H5" ]; then
        ok "$n: the compressed folder's log-probs are the dense pruned folder's" "$H5" -c "
import h5py, numpy as np, sys
a, b = h5py.File('$T/d-$n.h5', 'r'), h5py.File('$T/c-$n.h5', 'r')
sys.exit(0 if np.array_equal(a['logprobs'][()], b['logprobs'][()]) and a['logprobs'].shape[2] > 1 else 1)"
    else
        skip "h5py is needed to compare the log-probs"
    fi
done
finish
