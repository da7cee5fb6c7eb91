#!/bin/sh
# make bench: runs every benchmark in tests/bench/ and prints their tables. Results and the
# commands that produced them are recorded in docs/benchmarks.md.
set -u
BUILD=${BUILD:-build}
export LMP_BIN=${LMP_BIN:-$BUILD/lmpress}
for b in tests/bench/bench_*.sh; do
    echo "== $b"
    sh "$b" || echo "(failed: $b)"
done
for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    echo "== $b"
    "$b" || echo "(failed: $b)"
done
