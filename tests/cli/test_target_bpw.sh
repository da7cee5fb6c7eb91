#!/bin/sh
# lmpress quantize --target-bpw / --target-size (issue 21, size-targeted mixed precision):
# the plan fits the target, the written file has the planned types and size, --dry-run
# writes nothing, more bits predict less error, and bad targets / another model's imatrix
# are refused with nothing written.
. tests/cli/lib.sh
TXT="$LMP_FIXTURES/text/wiki.test.raw"
cat > "$T/config.json" <<'CFG'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 256,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
 "max_position_embeddings": 128, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": true,
 "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}
CFG
ok "synth 256-wide" "$LMP_BIN" synth --config "$T/config.json" -o "$T/m" --seed 3
ok "convert" "$LMP_BIN" convert "$T/m" -o "$T/m.gguf"
head -c 20000 "$TXT" > "$T/cal.txt" 2>/dev/null || printf 'the quick brown fox jumps over the lazy dog. %.0s' $(seq 1 300) > "$T/cal.txt"
ok "imatrix" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/q8.gguf" --type q8_0 --imatrix-calib "$T/cal.txt" \
    --calib-samples 2 --calib-seqlen 64 --imatrix-out "$T/m.dat"
J() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }

ok "dry run 3.5" sh -c "'$LMP_BIN' quantize '$T/m.gguf' --target-bpw 3.5 --dry-run --json --imatrix '$T/m.dat' > '$T/p35.json'"
check "dry run: plan within 3.5 bpw" "[ \"\$(J '$T/p35.json' 'd[\"bpw\"] <= 3.5 and d[\"bpw\"] > 3.3')\" = True ]"
check "dry run: several types chosen" "[ \"\$(J '$T/p35.json' 'len(set(t[\"type\"] for t in d[\"tensors\"])) >= 2')\" = True ]"
ok "dry run 5.0" sh -c "'$LMP_BIN' quantize '$T/m.gguf' --target-bpw 5 --dry-run --json --imatrix '$T/m.dat' > '$T/p50.json'"
check "more bits, less predicted error" "[ \"\$(python3 -c \"import json; a=json.load(open('$T/p35.json')); b=json.load(open('$T/p50.json')); print(b['predicted_err'] < a['predicted_err'])\")\" = True ]"
ok "dry run with -o writes nothing" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/dry.gguf" --target-bpw 4 --dry-run
check "dry run: no file" "[ ! -e '$T/dry.gguf' ]"
check "dry run table names tensors" "grep -q 'blk.0.ffn_down.weight' '$T/out'"

ok "write 3.5" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/mix.gguf" --target-bpw 3.5 --imatrix "$T/m.dat" --json
cp "$T/out" "$T/w35.json"
check "written tensor bytes = the plan's, within 3.5 bits per parameter" "[ \"\$(python3 -c \"import json; w=json.load(open('$T/w35.json')); p=json.load(open('$T/p35.json')); print(8 * w['bytes_out'] / w['parameters'] <= 3.5 and w['bytes_out'] == p['bytes'])\")\" = True ]"
"$LMP_BIN" inspect "$T/mix.gguf" > "$T/insp.txt" 2>/dev/null
check "written types = planned types" "python3 -c \"
import json,sys
p=json.load(open('$T/p35.json'))
rows={l.split()[0]: l.split()[1] for l in open('$T/insp.txt') if len(l.split())>1}
sys.exit(0 if all(rows.get(t['name'],'?').lower()==t['type'] for t in p['tensors']) else 1)\""
ok "the mix runs" "$LMP_BIN" ppl "$T/mix.gguf" -f "$T/cal.txt" --ctx 64 --chunks 1
ok "--target-size" sh -c "'$LMP_BIN' quantize '$T/m.gguf' -o '$T/sz.gguf' --target-size 400K --json > '$T/sz.json'"
check "--target-size: at most 400000 bytes of tensors" "[ \"\$(J '$T/sz.json' 'd[\"bytes_out\"] <= 400000')\" = True ]"

# KLD calibration (--target-calib): every tensor probed end to end; a probe's KLD is the one
# `lmpress eval` measures on a file with only that tensor quantized (independent path: the
# GGUF writer, the loader and the session engine against the planner's cached block runner)
ok "calibrated dry run 3.5" sh -c "'$LMP_BIN' quantize '$T/m.gguf' --target-bpw 3.5 --dry-run --json --imatrix '$T/m.dat' --target-calib '$T/cal.txt' --target-refine 1 > '$T/c35.json'"
check "calibrated: flag, probes, windows" "[ \"\$(J '$T/c35.json' 'd[\"calibrated\"] and d[\"probes\"] >= len(d[\"tensors\"]) and d[\"calib_windows\"] == 8 and d[\"bpw\"] <= 3.5')\" = True ]"
check "calibrated: every tensor has a probed point" "[ \"\$(J '$T/c35.json' 'all(any(c[\"kld\"] >= 0 for c in t[\"front\"]) for t in d[\"tensors\"])')\" = True ]"
PT=$(J "$T/c35.json" '[c["type"] for t in d["tensors"] if t["name"] == "blk.0.ffn_down.weight" for c in t["front"] if c["kld"] >= 0][0]')
PK=$(J "$T/c35.json" '[c["kld"] for t in d["tensors"] if t["name"] == "blk.0.ffn_down.weight" for c in t["front"] if c["kld"] >= 0][0]')
ok "one tensor alone as $PT" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/one.gguf" --type f32 --tensor-type "^blk\.0\.ffn_down\.weight\$=$PT" --imatrix "$T/m.dat"
# the teacher holds 16 windows: the planner's 8 probe windows, then its 8 validation windows
ok "teacher on the calibration windows" "$LMP_BIN" distill export "$T/m.gguf" -f "$T/cal.txt" -o "$T/cal.h5" --ctx 128 --chunks 16 --full
ok "eval the one-tensor file" sh -c "'$LMP_BIN' eval '$T/one.gguf' --base '$T/cal.h5' --chunks 8 --json > '$T/one.json'"
check "probe KLD = eval's KLD ($PK)" "[ \"\$(J '$T/one.json' 'abs(d[\"kld\"] - $PK) <= 1e-3 * d[\"kld\"] + 1e-7 and d[\"kld\"] > 0')\" = True ]"
ok "calibrated write 3.0" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/c30.gguf" --target-bpw 3 --imatrix "$T/m.dat" --target-calib "$T/cal.txt" --target-probes 1 --json
check "calibrated write: within 3 bits per parameter" "[ \"\$(J '$T/out' '8 * d[\"bytes_out\"] / d[\"parameters\"] <= 3.0')\" = True ]"
# refinement in context (--target-refine N, off by default): what is kept is decided on the
# calibration text's next 8 windows (validation), so the kept plan's KLD there is never above
# the solved one's; the plan's KLD on the probe windows is the KLD `lmpress eval` measures on
# the written file against the teacher of the same windows (the whole plan: GGUF writer,
# loader and session engine against the planner's installed model)
check "refined: 8 validation windows, kept validation KLD <= the solved plan's" "[ \"\$(J '$T/c35.json' 'd[\"val_windows\"] == 8 and d[\"calib_seqlen\"] == 128 and 0 < d[\"val_kld\"] <= d[\"val_kld_solved\"] and all(r[\"val_kld\"] > 0 for r in d[\"refine_tried\"])')\" = True ]"
ok "calibrated write 3.5 (the dry run's plan)" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/c35.gguf" --target-bpw 3.5 --imatrix "$T/m.dat" --target-calib "$T/cal.txt" --target-refine 1 --json
ok "eval the written plan" sh -c "'$LMP_BIN' eval '$T/c35.gguf' --base '$T/cal.h5' --chunks 8 --json > '$T/c35e.json'"
CK=$(J "$T/c35.json" 'd["calib_kld"]')
check "plan's calibration KLD = eval's KLD of the file ($CK)" "[ \"\$(J '$T/c35e.json' 'abs(d[\"kld\"] - $CK) <= 1e-3 * d[\"kld\"]')\" = True ]"
ok "eval the written plan on all 16 windows" sh -c "'$LMP_BIN' eval '$T/c35.gguf' --base '$T/cal.h5' --json > '$T/c35v.json'"
CV=$(J "$T/c35.json" 'd["val_kld"]')
check "plan's validation KLD ($CV) = eval's on windows 9-16" "[ \"\$(J '$T/c35v.json' 'abs(2 * d[\"kld\"] - $CK - $CV) <= 2e-3 * d[\"kld\"]')\" = True ]"
ok "no --target-refine, --target-tokens 512" sh -c "'$LMP_BIN' quantize '$T/m.gguf' --target-bpw 3.5 --dry-run --json --imatrix '$T/m.dat' --target-calib '$T/cal.txt' --target-probes 1 --target-tokens 512 > '$T/r0.json'"
check "without --target-refine: nothing measured in context" "[ \"\$(J '$T/r0.json' 'd[\"calib_kld\"] == -1 and d[\"refine_probes\"] == 0')\" = True ]"
check "--target-tokens 512: 4 windows of 128" "[ \"\$(J '$T/r0.json' 'd[\"calib_windows\"] == 4 and d[\"calib_seqlen\"] == 128')\" = True ]"
# block weights in context (--target-context N, off by default): the solved plan measured whole,
# each block restored to the original in that context; the figure of block 0 restored is the KLD
# `lmpress eval` measures on a file of the solved plan with block 0 left at f32 (independent
# path: writer, loader, session engine); the kept plan is never worse on the validation windows
# than any plan measured, and its two KLDs are eval's on the teacher's windows 1-8 and 9-16
ok "solved plan (--target-context 0)" sh -c "'$LMP_BIN' quantize '$T/m.gguf' --target-bpw 3.5 --dry-run --json --imatrix '$T/m.dat' --target-calib '$T/cal.txt' --target-probes 1 --target-context 0 > '$T/x0.json'"
check "--target-context 0: nothing measured in context" "[ \"\$(J '$T/x0.json' 'd[\"context_probes\"] == 0 and d[\"calib_kld\"] == -1')\" = True ]"
ok "context dry run 3.5" sh -c "'$LMP_BIN' quantize '$T/m.gguf' --target-bpw 3.5 --dry-run --json --imatrix '$T/m.dat' --target-calib '$T/cal.txt' --target-probes 1 --target-context 2 > '$T/x35.json'"
check "context: 2 blocks per round, kept validation KLD <= every plan's, within 3.5" "[ \"\$(J '$T/x35.json' 'len(d[\"context_blocks\"]) == 2 and d[\"context_probes\"] in (2 * len(d[\"context_tried\"]), 2 * len(d[\"context_tried\"]) + 2) and d[\"val_windows\"] == 8 and 0 < d[\"val_kld\"] <= min([d[\"val_kld_solved\"]] + [r[\"val_kld\"] for r in d[\"context_tried\"]]) and d[\"bpw\"] <= 3.5')\" = True ]"
check "context: solved plan = the plan without context" "[ \"\$(python3 -c \"import json; a=json.load(open('$T/x0.json')); b=json.load(open('$T/x35.json')); print(a['bytes'] > 0 and b['calib_kld_solved'] > 0 and (b['context_kept'] > 0 or [t['type'] for t in a['tensors']] == [t['type'] for t in b['tensors']]))\")\" = True ]"
RULES=$(J "$T/x0.json" '" ".join("--tensor-type ^%s$=%s" % (t["name"].replace(".", "\\."), t["type"]) for t in d["tensors"] if not t["name"].startswith("blk.0."))')
ok "solved plan with block 0 at f32" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/b0.gguf" --type f32 $RULES --imatrix "$T/m.dat"
ok "eval it" sh -c "'$LMP_BIN' eval '$T/b0.gguf' --base '$T/cal.h5' --chunks 8 --json > '$T/b0.json'"
B0=$(J "$T/x35.json" 'd["context_blocks"][0]')
check "block 0 restored in context ($B0) = eval's KLD of that file" "[ \"\$(J '$T/b0.json' 'abs(d[\"kld\"] - $B0) <= 1e-3 * d[\"kld\"] and d[\"kld\"] > 0')\" = True ]"
ok "context write 3.5" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/x35.gguf" --target-bpw 3.5 --imatrix "$T/m.dat" --target-calib "$T/cal.txt" --target-probes 1 --target-context 2 --json
ok "eval the context plan" sh -c "'$LMP_BIN' eval '$T/x35.gguf' --base '$T/cal.h5' --json > '$T/x35v.json'"
ok "eval the context plan, windows 1-8" sh -c "'$LMP_BIN' eval '$T/x35.gguf' --base '$T/cal.h5' --chunks 8 --json > '$T/x35e.json'"
XK=$(J "$T/x35.json" 'd["calib_kld"]'); XV=$(J "$T/x35.json" 'd["val_kld"]')
check "context plan's calibration KLD ($XK) = eval's" "[ \"\$(J '$T/x35e.json' 'abs(d[\"kld\"] - $XK) <= 1e-3 * d[\"kld\"]')\" = True ]"
check "context plan's validation KLD ($XV) = eval's on windows 9-16" "[ \"\$(J '$T/x35v.json' 'abs(2 * d[\"kld\"] - $XK - $XV) <= 2e-3 * d[\"kld\"]')\" = True ]"
refuses "bad --target-context" "target-context" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/xc.gguf" --target-bpw 4 --target-context 99
refuses "--target-context with --target-refine" "give one" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/xr.gguf" --target-bpw 4 --target-context 1 --target-refine 1
check "refused: nothing written" "[ ! -e '$T/xc.gguf' ] && [ ! -e '$T/xr.gguf' ]"
refuses "bad --target-tokens" "target-tokens" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/tk.gguf" --target-bpw 4 --target-tokens 3
refuses "bad --target-refine" "target-refine" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/tr.gguf" --target-bpw 4 --target-refine 99
refuses "--target-calib without a target" "need --target-bpw" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/tc.gguf" --type q4_0 --target-calib "$T/cal.txt"
refuses "missing --target-calib text" "nope.txt" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/tm.gguf" --target-bpw 4 --target-calib "$T/nope.txt"
check "missing calibration text: nothing written" "[ ! -e '$T/tm.gguf' ]"
refuses "bad --target-probes" "target-probes" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/tp.gguf" --target-bpw 4 --target-probes 99

# bad input: nothing written
refuses "target below the smallest" "below the smallest achievable" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/lo.gguf" --target-bpw 1
check "below: nothing written" "[ ! -e '$T/lo.gguf' ]"
refuses "target above the largest" "above the largest achievable" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/hi.gguf" --target-bpw 30
check "above: nothing written" "[ ! -e '$T/hi.gguf' ]"
refuses "bad --target-size" "target-size" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/bs.gguf" --target-size 12Q
refuses "--type with a target" "not with --type" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/tt.gguf" --type q4_k_m --target-bpw 4
refuses "--dry-run without a target" "needs --target-bpw" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/dd.gguf" --type q4_0 --dry-run
sed 's/"hidden_size": 256/"hidden_size": 512/' "$T/config.json" > "$T/other.json"
ok "another model" "$LMP_BIN" synth --config "$T/other.json" -o "$T/other" --seed 5
ok "another model's imatrix" "$LMP_BIN" quantize "$T/other" -o "$T/o8.gguf" --type q8_0 --imatrix-calib "$T/cal.txt" \
    --calib-samples 2 --calib-seqlen 32 --imatrix-out "$T/other.dat"
refuses "imatrix of another model" "another model" "$LMP_BIN" quantize "$T/m.gguf" -o "$T/om.gguf" --target-bpw 3.5 --imatrix "$T/other.dat"
check "another model: nothing written" "[ ! -e '$T/om.gguf' ]"
finish
