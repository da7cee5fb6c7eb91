#!/bin/sh
# Sparse kernels (lib/prune/spkernel.c: CSR f32 and 2:4 f32) against the engine's dense
# lmp_gemm on the same f32 matrices (the pruned weights with their zeros), M = 1 (decoding)
# and M = 512 (prompt processing), gutenberg-5M and TinyLlama-1.1B linear shapes.
# Prints best-of-2 milliseconds per product and the speedup (dense / sparse; > 1 means the
# sparse kernel is faster). Usage: BUILD=build sh tests/bench/bench_prune.sh [threads]
set -e
BUILD=${BUILD:-build}
make --no-print-directory BUILD="$BUILD" "$BUILD/tests/test_prune" >/dev/null
if [ -n "$1" ]; then export LMP_THREADS=$1; fi
echo "threads: ${LMP_THREADS:-all cores}; ISA: $(grep -o -m1 'avx512f' /proc/cpuinfo || echo no-avx512)"
"$BUILD/tests/test_prune" --bench
