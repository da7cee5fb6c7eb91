#!/bin/sh
# Convert throughput and peak RSS on generated checkpoints of more than 2 GB, next to `cp`
# of the same file in the same run (the physical limit of this disk and page cache):
#   bf16 -> GGUF f16   (tinyllama-1.1b shapes in bf16, 2.2 GB)
#   f32  -> safetensors f16 (tinyllama-1.1b shapes in f32, 4.4 GB)
# lmpress fsyncs every output before renaming it into place; `cp` does not, so the table
# also shows `cp` followed by `sync FILE`, the like-for-like limit.
# Usage: sh tests/bench/bench_convert.sh [WORKDIR]   (needs ~16 GB of free disk)
set -eu
L=${LMP_BIN:-build/lmpress}
W=${1:-${TMPDIR:-/tmp}/lmpress-bench-convert}
mkdir -p "$W"
rss() { awk '/Maximum resident/ {print $6}' "$1"; } # KiB
run() { # label, bytes, command...
    label=$1; bytes=$2; shift 2
    sync; t0=$(date +%s.%N)
    /usr/bin/time -v "$@" > /dev/null 2> "$W/time.txt"
    t1=$(date +%s.%N)
    awk -v l="$label" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v r="$(rss "$W/time.txt")" \
        'BEGIN { s = t1 - t0; printf "%-34s %8.2f s %7.3f GB/s  peak RSS %8.1f MB\n", l, s, b / s / 1e9, r / 1024 }'
}
[ -d "$W/tl-bf16" ] || "$L" synth --preset tinyllama-1.1b --dtype bf16 --shard-mb 100000 -o "$W/tl-bf16" > /dev/null
[ -d "$W/tl-f32" ] || "$L" synth --preset tinyllama-1.1b --dtype f32 --shard-mb 100000 -o "$W/tl-f32" > /dev/null
B1=$(stat -c %s "$W/tl-bf16/model.safetensors"); B2=$(stat -c %s "$W/tl-f32/model.safetensors")
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo); inputs: bf16 $B1 B, f32 $B2 B"
cat "$W/tl-bf16/model.safetensors" > /dev/null; cat "$W/tl-f32/model.safetensors" > /dev/null # warm the page cache
for i in 1 2; do
    rm -f "$W/cp.bin" "$W/out.gguf"; rm -rf "$W/out-f16"
    run "cp bf16 file (limit)" "$B1" cp "$W/tl-bf16/model.safetensors" "$W/cp.bin"
    rm -f "$W/cp.bin"
    run "cp + fsync bf16 file (limit)" "$B1" sh -c "cp '$W/tl-bf16/model.safetensors' '$W/cp.bin' && sync '$W/cp.bin'"
    run "convert bf16 -> GGUF f16" "$B1" "$L" convert "$W/tl-bf16" -o "$W/out.gguf" --dtype f16
    rm -f "$W/cp.bin"
    run "cp f32 file (limit)" "$B2" cp "$W/tl-f32/model.safetensors" "$W/cp.bin"
    rm -f "$W/cp.bin"
    run "cp + fsync f32 file (limit)" "$B2" sh -c "cp '$W/tl-f32/model.safetensors' '$W/cp.bin' && sync '$W/cp.bin'"
    run "convert f32 -> safetensors f16" "$B2" "$L" convert "$W/tl-f32" -o "$W/out-f16" --dtype f16
done
rm -rf "$W/cp.bin" "$W/out.gguf" "$W/out-f16"
