# Shared helpers for tests/cli/*.sh: counters, checks and the closing line.
# Usage: . tests/cli/lib.sh ; ok "name" cmd... ; fails "name" cmd... ; finish
LMP_BIN=${LMP_BIN:-$(pwd)/build/lmpress}
LMP_FIXTURES=${LMP_FIXTURES:-$(pwd)/../shared/fixtures}
PY=${PYTHON:-python3}
T=$(mktemp -d "${LMP_TEST_TMP:-/tmp}/cli.XXXXXX") && [ -d "$T" ] || {
    # without its folder every check would write into the current one (or /): stop
    echo "cannot make a temporary folder under ${LMP_TEST_TMP:-/tmp}"; echo "0 passed, 1 failed"; exit 1; }
trap 'rm -rf "$T"' EXIT
pass=0; fail=0; skip=0
ok() { # name, command... : command must succeed
    name=$1; shift
    if "$@" > "$T/out" 2> "$T/err"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $name (exit $?)"; sed 's/^/    /' "$T/err" | head -n 5; fi
}
# refuses "name" "word-in-message" command... : command must exit non-zero, print an error
# naming the word (file name or defect) on stderr, and not crash (exit < 128)
refuses() {
    name=$1; word=$2; shift 2
    "$@" > "$T/out" 2> "$T/err"; rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && grep -q -- "$word" "$T/err"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $name (exit $rc, wanted '$word' in:)"; sed 's/^/    /' "$T/err" | head -n 5; fi
}
check() { # name, shell condition
    name=$1; shift
    if eval "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name: $*"; fi
}
skip() { skip=$((skip + 1)); echo "SKIP: $*"; }
finish() {
    if [ "$skip" -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"; else echo "$pass passed, $fail failed"; fi
    [ "$fail" -eq 0 ]
}
