#!/bin/sh
# The same lmpress binary under `mpirun -np 2` and `-np 3` on this machine (loopback,
# oversubscribed, one OpenMP thread per rank) against the single-process run: the process
# group's collectives (build/tests/test_dist under mpirun); ppl, eval, distill export and
# compare, which split their windows across ranks; GPTQ, SparseGPT, Wanda, RTN, imatrix
# (windows and solves split among ranks) and AWQ (windows split, its sums per window group,
# also with its stores spilled; its search sample gathered, the candidates split) on gutenberg-5M, GPTQ on tiny-mixtral (expert Hessians
# combined per group) and AWQ on tiny-mixtral / tiny-qwen3-moe (routed inputs per window,
# expert sums per window group, also spilled) at -np 1, 2, 3 (byte-identical outputs; each rank held its share);
# ranks other than 0 print nothing; a rank
# killed mid-run and an unreachable host end the job non-zero with a message and no output.
# Skipped when mpirun or the fixtures are absent.
. tests/cli/lib.sh
B=$LMP_BIN
F=$LMP_FIXTURES
G=$F/models/gutenberg-5M
TXT=$F/text/wiki.test.raw
BUILD=${BUILD:-build}
if ! command -v mpirun > /dev/null 2>&1; then skip "mpirun not found (Debian: openmpi-bin)"; finish; exit $?; fi
# as root OpenMPI refuses to start without these; one thread per rank on 2 shared cores;
# the sanitizer build: OpenMPI's own allocations at exit are not ours to report
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
# vader (shared memory) and self only: no network interfaces probed
MPI="mpirun --oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
run_np() { n=$1; shift; $MPI -np "$n" "$@"; }

# --- the collectives, with 1000-byte transfers so that every buffer crosses chunks
if [ -x "$BUILD/tests/test_dist" ]; then
    for n in 2 3; do
        LMP_DEBUG_DIST_CHUNK=1000 run_np $n "$BUILD/tests/test_dist" > "$T/dist$n.out" 2> "$T/dist$n.err"
        rc=$?
        check "test_dist under mpirun -np $n (exit $rc: $(tail -n 1 "$T/dist$n.out"))" \
            "[ $rc = 0 ] && grep -q '^[1-9][0-9]* passed, 0 failed' '$T/dist$n.out' && grep -q '^$n ranks' '$T/dist$n.err'"
    done
else
    skip "$BUILD/tests/test_dist not built"
fi

if [ ! -f "$G/model.safetensors" ]; then skip "fixtures not found at $F: MPI command tests skipped"; finish; exit $?; fi

# drops the fields that measure time
untimed() { sed 's/"\(seconds\|tokens_per_s\)": [0-9.eE+-]*//g; s/[0-9.]* tokens\/s//g' "$1"; }
same_untimed() { untimed "$1" > "$T/u1"; untimed "$2" > "$T/u2"; cmp -s "$T/u1" "$T/u2"; }

# --- ppl: every protocol's sums over gathered per-token NLLs
for proto in llamacpp gptq; do
    "$B" ppl "$G" -f "$TXT" --protocol $proto --ctx 128 --chunks 7 --json > "$T/ppl1.$proto" 2> /dev/null
    for n in 2 3; do
        run_np $n "$B" ppl "$G" -f "$TXT" --protocol $proto --ctx 128 --chunks 7 --json > "$T/ppl$n.$proto" 2> "$T/ppl$n.err"
        check "ppl $proto -np $n: same JSON as one process" "[ -s '$T/ppl1.$proto' ] && same_untimed '$T/ppl1.$proto' '$T/ppl$n.$proto'"
    done
done
check "ppl under mpirun: one line on stdout (rank 0's)" "[ \$(wc -l < '$T/ppl3.gptq') = 1 ]"
check "ppl under mpirun: nothing on stderr" "[ ! -s '$T/ppl3.err' ]"

# --- distill export: the datasets and attributes of the file (HDF5 bytes hold times)
"$B" distill export "$G" -f "$TXT" -o "$T/x1.h5" --ctx 128 --chunks 5 --top-k 16 --full --f32 > /dev/null 2>&1
for n in 2 3; do
    ok "distill export -np $n" run_np $n "$B" distill export "$G" -f "$TXT" -o "$T/x$n.h5" --ctx 128 --chunks 5 --top-k 16 --full --f32
    check "export -np $n: no partial folder or temporary left" "! ls -d '$T'/x$n.h5.* 2> /dev/null | grep -q ."
done
H5PY=/usr/bin/python3
"$H5PY" -c 'import h5py, numpy' 2> /dev/null || H5PY=
if [ -n "$H5PY" ]; then
    for n in 2 3; do
        ok "export -np $n: same datasets and attributes as one process" "$H5PY" - "$T/x1.h5" "$T/x$n.h5" <<'EOF'
import sys, h5py
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def attrs(o): return {k: (v.tobytes() if hasattr(v, "tobytes") else v) for k, v in o.attrs.items()}
assert attrs(a) == attrs(b), "attributes differ"
assert sorted(a.keys()) == sorted(b.keys()) and len(a.keys()) >= 8, (list(a.keys()), list(b.keys()))
for k in a.keys():
    x, y = a[k][()], b[k][()]
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k
    assert attrs(a[k]) == attrs(b[k]), k
EOF
    done
else
    skip "no /usr/bin/python3 with h5py: export files not compared"
fi

# --- eval against those logits (a q4_0 student, so the KLD is not zero)
"$B" quantize "$G" -o "$T/q4.gguf" --type q4_0 > /dev/null 2>&1
"$B" eval "$T/q4.gguf" --base "$T/x1.h5" --json > "$T/e1.json" 2> /dev/null
check "eval: a real KLD" "grep -q '\"kld\": 0\\.0[0-9]*[1-9]' '$T/e1.json'"
for n in 2 3; do
    run_np $n "$B" eval "$T/q4.gguf" --base "$T/x1.h5" --json > "$T/e$n.json" 2> /dev/null
    check "eval -np $n: same JSON as one process" "same_untimed '$T/e1.json' '$T/e$n.json'"
done

# --- compare (perplexity, the base's logits exported, KLD): the same report
"$B" compare "$G" "$T/q4.gguf" -f "$TXT" -o "$T/c1" --protocol llamacpp --ctx 128 --chunks 4 > /dev/null 2>&1
run_np 3 "$B" compare "$G" "$T/q4.gguf" -f "$TXT" -o "$T/c3" --protocol llamacpp --ctx 128 --chunks 4 > /dev/null 2>&1
check "compare -np 3: same report.json as one process" \
    "[ -s '$T/c1/report.json' ] && same_untimed '$T/c1/report.json' '$T/c3/report.json'"
check "compare -np 3: nothing left beside the report" "[ \$(ls -d '$T'/c3* | wc -l) = 1 ]"

# --- calibrated methods (lib/calib/dist_stats.c): each rank runs its window groups'
# windows (statistics combined in group order) and its share of the per-linear solves;
# -np 1, 2 and 3 write byte-identical files, those of a plain run
C="--calib $TXT --calib-samples 8 --calib-seqlen 128"
calibrated() { # name, output (a folder, or a file ending .gguf), lmpress arguments before -o
    cal=$1; o=$2; shift 2
    "$B" "$@" -o "$T/1.$o" > /dev/null 2>&1
    if [ ! -e "$T/1.$o" ]; then check "$cal: single-process run" false; return; fi
    for n in 1 2 3; do
        run_np $n "$B" "$@" -o "$T/np$n.$o" > /dev/null 2> "$T/$cal.$n.err"
        check "$cal -np $n: byte-identical output" "diff -r '$T/1.$o' '$T/np$n.$o' > /dev/null"
    done
}
split_line() { # name, the windows per rank of -np 3 (3/3/2 of 8)
    check "$1 -np 3: each rank held its share of the windows ($2)" \
        "grep -q 'windows per rank $2 of 8 (8 window groups), activations per rank 0.38/0.38/0.25 MiB' '$T/$1.3.err'"
}
# shellcheck disable=SC2086
calibrated gptq gptq quantize "$G" --method gptq $C
split_line gptq 3/3/2
check "gptq -np 3: rank 0 reports the bytes it moved" "grep -q 'MiB per layer' '$T/gptq.3.err'"
# shellcheck disable=SC2086
calibrated sparsegpt sgpt prune "$G" --method sparsegpt --sparsity 0.5 $C
split_line sparsegpt 3/3/2
# shellcheck disable=SC2086
calibrated wanda wanda prune "$G" --method wanda --sparsity 0.5 $C
split_line wanda 3/3/2
# shellcheck disable=SC2086
calibrated rtn rtn quantize "$G" --method rtn --bits 4 $C
split_line rtn 3/3/2
# imatrix (streamed window by window) from a GGUF: the importance file and the q4_k file
"$B" convert "$G" -o "$T/g.gguf" > /dev/null 2>&1
for n in 1 2 3; do
    run_np $n "$B" quantize "$T/g.gguf" --type q4_k --imatrix-calib "$TXT" --calib-samples 8 --calib-seqlen 128 \
        --imatrix-out "$T/imx$n.gguf" -o "$T/im$n.gguf" > /dev/null 2> "$T/imatrix.$n.err"
done
"$B" quantize "$T/g.gguf" --type q4_k --imatrix-calib "$TXT" --calib-samples 8 --calib-seqlen 128 \
    --imatrix-out "$T/imx0.gguf" -o "$T/im0.gguf" > /dev/null 2>&1
for n in 1 2 3; do
    check "imatrix -np $n: byte-identical importance file and q4_k file" \
        "[ -s '$T/imx0.gguf' ] && cmp -s '$T/imx0.gguf' '$T/imx$n.gguf' && cmp -s '$T/im0.gguf' '$T/im$n.gguf'"
done
check "imatrix -np 3: windows per rank 3/3/2" "grep -q 'windows per rank 3/3/2 of 8' '$T/imatrix.3.err'"
# AWQ (awqdist): each rank walks its groups' windows; 12 x 32 tokens give groups of one and
# two windows, Gram matrices for the 256-wide inputs and direct sums for down_proj's 768
calibrated awq awq quantize "$G" --method awq --calib "$TXT" --calib-samples 12 --calib-seqlen 32
check "awq -np 3: each rank held its share of the windows (6/4/2)" \
    "grep -q 'windows per rank 6/4/2 of 12 (8 window groups)' '$T/awq.3.err'"
check "awq -np 3: states its captured inputs' size up front" "grep -q 'awq memory: captured inputs' '$T/awq.3.err'"
LMP_CALIB_SPILL=0 run_np 2 "$B" quantize "$G" --method awq --calib "$TXT" --calib-samples 12 --calib-seqlen 32 \
    -o "$T/spill.awq" > /dev/null 2> "$T/awq.spill.err"
check "awq -np 2, hidden states and captured inputs spilled: byte-identical output" \
    "grep -q \"AWQ's captured inputs.*spilled\" '$T/awq.spill.err' && diff -r '$T/1.awq' '$T/spill.awq' > /dev/null"
# AWQ's search sample (--awq-search-tokens under the 384 tokens: 128 sampled tokens, 4 q/k/v
# windows spread over the ranks' shares): the rows gathered on every rank, the grid's
# candidates split among the ranks
calibrated awq-sample awqs quantize "$G" --method awq --calib "$TXT" --calib-samples 12 --calib-seqlen 32 \
    --awq-search-tokens 100
check "awq-sample -np 3: says what it searched on" "grep -q '128 sampled tokens of 384 (q/k/v: 4 whole windows' '$T/awq-sample.3.err'"
check "awq-sample: not the full search's bytes" "[ -d '$T/1.awqs' ] && ! diff -r '$T/1.awq' '$T/1.awqs' > /dev/null"
# expert models (awqdist): every expert's Hessian combined per window group
"$B" synth --preset tiny-mixtral -o "$T/mix" --seed 7 > /dev/null 2>&1
# shellcheck disable=SC2086
calibrated moe-gptq moe-gptq quantize "$T/mix" --method gptq --calib "$T/mix/corpus.txt" --calib-samples 8 \
    --calib-seqlen 32 --group-size 32
check "moe-gptq -np 3: split (3/3/2 windows)" "grep -q 'windows per rank 3/3/2 of 8 (8 window groups)' '$T/moe-gptq.3.err'"
# AWQ on expert models (awqmoe): each rank walks its windows, keeps their routed expert
# inputs in its store and sums every expert loss per window group; each expert's clip
# search on one rank. tiny-mixtral (8 experts, top 2) and tiny-qwen3-moe (16 experts, top 4,
# a dense layer between sparse ones), 12 x 32 tokens; spilled at -np 3.
"$B" synth --preset tiny-qwen3-moe -o "$T/q3m" --seed 7 > /dev/null 2>&1
for m in mix q3m; do
    # shellcheck disable=SC2086
    calibrated moe-awq-$m moe-awq-$m quantize "$T/$m" --method awq --calib "$T/$m/corpus.txt" --calib-samples 12 \
        --calib-seqlen 32 --group-size 32
    check "moe-awq-$m -np 3: split (6/4/2 windows), data moved" \
        "grep -q 'windows per rank 6/4/2 of 12 (8 window groups)' '$T/moe-awq-$m.3.err' && grep -q 'rank 0 sent and received [1-9]' '$T/moe-awq-$m.3.err'"
    check "moe-awq-$m -np 3: states its captured inputs (routed) up front" \
        "grep -q 'awq memory: captured inputs .*(6 of 12 windows .*routed down inputs' '$T/moe-awq-$m.3.err'"
    LMP_CALIB_SPILL=0 run_np 3 "$B" quantize "$T/$m" --method awq --calib "$T/$m/corpus.txt" --calib-samples 12 \
        --calib-seqlen 32 --group-size 32 -o "$T/spill.moe-awq-$m" > /dev/null 2> "$T/moe-awq-$m.spill.err"
    check "moe-awq-$m -np 3, hidden states and captured inputs spilled: byte-identical output" \
        "grep -q \"AWQ's captured inputs.*spilled\" '$T/moe-awq-$m.spill.err' && diff -r '$T/1.moe-awq-$m' '$T/spill.moe-awq-$m' > /dev/null"
done

# --- failures: a rank killed mid-run (SIGKILL on its 4th collective, as the OOM killer
# would): mpirun ends every rank, says which died, exits non-zero; no output, no temporary
# (the ranks' scratch under a TMPDIR of this test's own: other tests may run ranks at the
# same time; short, as OpenMPI puts its sockets there too)
KT=$(mktemp -d /tmp/lmpk.XXXXXX)
TMPDIR=$KT LMP_DEBUG_DIST_KILL=1:4 run_np 2 "$B" distill export "$G" -f "$TXT" -o "$T/k.h5" --ctx 128 --chunks 5 \
    --top-k 16 > "$T/k.out" 2> "$T/k.err"
rc=$?
check "killed rank: job exits non-zero (got $rc)" "[ $rc -ne 0 ]"
check "killed rank: mpirun names the rank" "grep -q 'rank 1' '$T/k.err'"
check "killed rank: no output file" "[ ! -e '$T/k.h5' ]"
check "killed rank: no temporary file" "! ls '$T' | grep -q 'k.h5.tmp'"
check "killed rank: no scratch folder of the ranks left" "! ls -d '$KT'/lmpress-rank1.* 2> /dev/null | grep -q ."
rm -rf "$KT"
# a rank that fails alone (its own error, no agreement): MPI_Abort ends the job
LMP_DEBUG_DIST_KILL= run_np 2 sh -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then exec "$0" ppl "$1" -f /nonexistent/text.txt; else exec "$0" ppl "$1" -f "$2" --ctx 128 --chunks 4; fi' \
    "$B" "$G" "$TXT" > "$T/a.out" 2> "$T/a.err"
rc=$?
check "rank failing alone: job exits non-zero (got $rc)" "[ $rc -ne 0 ]"
check "rank failing alone: its message" "grep -q '/nonexistent/text.txt' '$T/a.err'"
# an unreachable host: mpirun cannot start its daemon and the command never runs
$MPI --host localhost:1,lmpress-no-such-host.invalid:1 -np 2 "$B" distill export "$G" -f "$TXT" -o "$T/h.h5" \
    --ctx 128 --chunks 2 > /dev/null 2> "$T/h.err"
rc=$?
check "unreachable host: non-zero exit (got $rc)" "[ $rc -ne 0 ] && [ -s '$T/h.err' ]"
check "unreachable host: no output" "[ ! -e '$T/h.h5' ]"
finish
