#!/bin/sh
# Runs the test suite: unit binaries (build/tests/test_*), CLI scripts (tests/cli/test_*.sh)
# and fuzz-corpus replays (build/tests/replay_*). Each prints "N passed, M failed" last;
# this adds them up and prints the closing line. `run_tests.sh unit` runs unit tests only.
set -u
BUILD=${BUILD:-build}
export LMP_FIXTURES=${LMP_FIXTURES:-$(cd "$(dirname "$0")/.." && pwd)/../shared/fixtures}
export LMP_BIN=${LMP_BIN:-$(pwd)/$BUILD/lmpress}
export LMP_TEST_TMP=${LMP_TEST_TMP:-$(pwd)/$BUILD/test-tmp}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# spinning OpenMP workers starve each other when the 2 cores are shared (77 s instead of 3 s)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
rm -rf "$LMP_TEST_TMP"; mkdir -p "$LMP_TEST_TMP"
[ -d "$LMP_FIXTURES" ] || echo "note: fixtures not found at $LMP_FIXTURES: tests that need them are skipped" >&2
pass=0; fail=0; skip=0; broken=""
log="$BUILD/test-log.txt"; : > "$log"

run_one() { # name, command...
    name=$1; shift
    t0=$(date +%s.%N)
    out=$("$@" 2>&1); rc=$?
    t1=$(date +%s.%N)
    printf '%s\n' "$out" >> "$log"
    last=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(echo "$last" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); p=${p:-0}
    f=$(echo "$last" | sed -n 's/.* \([0-9]*\) failed.*/\1/p'); f=${f:-0}
    s=$(echo "$last" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p'); s=${s:-0}
    if [ -z "$last" ] || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; }; then f=$((f + 1)); fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    status=ok; [ "$f" -gt 0 ] && { status=FAIL; broken="$broken $name"; }
    printf '%-28s %4s passed %3s failed %3s skipped  %6.2fs  %s\n' "$name" "$p" "$f" "$s" \
        "$(awk "BEGIN{print $t1 - $t0}")" "$status"
    if [ "$status" = FAIL ]; then printf '%s\n' "$out" | grep -E 'FAIL|error|Sanitizer|runtime error' | head -n 20 | sed 's/^/    /'; fi
}

for t in "$BUILD"/tests/test_*; do
    case $t in *.d) continue;; esac
    [ -x "$t" ] && run_one "$(basename "$t")" "$t"
done
if [ "${1:-}" != unit ]; then
    for t in tests/cli/test_*.sh; do
        [ -f "$t" ] && run_one "$(basename "$t" .sh)" sh "$t"
    done
    for t in "$BUILD"/tests/replay_*; do
        case $t in *.d) continue;; esac
        n=$(basename "$t" | sed 's/^replay_//')
        # logits_h5: libhdf5's own leak on a failed H5Fopen is suppressed (tests/fuzz/lsan-hdf5.supp,
        # matched on the library module; the target asserts lmpress leaves no HDF5 object open)
        if [ "$n" = logits_h5 ]; then
            [ -x "$t" ] && run_one "fuzz-replay $n" env LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$(pwd)/tests/fuzz/lsan-hdf5.supp" \
                "$t" "tests/fuzz/corpus/$n"
            continue
        fi
        [ -x "$t" ] && run_one "fuzz-replay $n" "$t" "tests/fuzz/corpus/$n"
    done
fi
echo "(full output in $log)"
[ -n "$broken" ] && echo "failing:$broken"
if [ "$skip" -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"; else echo "$pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
