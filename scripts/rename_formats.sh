#!/bin/sh
# Issue 14: format-side (layout) functions named for the layout, so that the folder shows
# in the name: formats/fmt_gptq.c, fmt_awq.c, fmt_ct.c and fmt_common.c export
# lmp_fmt_gptq_* / lmp_fmt_awq_* / lmp_fmt_ct_* / lmp_fmt_*, while lib/quant keeps the
# algorithms' lmp_gptq_* / lmp_awq_* (lmp_gptq_hessian_add, lmp_awq_fold, ...).
# Idempotent: re-run it after merging branches that still use the old names
#   sh scripts/rename_formats.sh && make && make test
# It rewrites whole words only, in tracked C sources/headers, shell scripts and docs.
set -eu
cd "$(dirname "$0")/.."
pairs='
lmp_gptq_pack lmp_fmt_gptq_pack
lmp_gptq_unpack lmp_fmt_gptq_unpack
lmp_gptq_config_json lmp_fmt_gptq_config_json
lmp_gptq_config_read lmp_fmt_gptq_config_read
lmp_awq_pack lmp_fmt_awq_pack
lmp_awq_unpack lmp_fmt_awq_unpack
lmp_awq_config_json lmp_fmt_awq_config_json
lmp_awq_config_read lmp_fmt_awq_config_read
lmp_ct_pack lmp_fmt_ct_pack
lmp_ct_unpack lmp_fmt_ct_unpack
lmp_ct_config_json lmp_fmt_ct_config_json
lmp_ct_config_read lmp_fmt_ct_config_read
lmp_pack_check_tensor lmp_fmt_check_tensor
lmp_pack_scale_at lmp_fmt_scale_at
lmp_pack_scale_dtype_ok lmp_fmt_scale_dtype_ok
'
expr=$(printf '%s\n' "$pairs" | awk 'NF == 2 { printf "s/\\<%s\\>/%s/g;", $1, $2 }')
pattern=$(printf '%s\n' "$pairs" | awk 'NF == 2 { printf "%s%s", sep, $1; sep = "\\|" }')
files=$(git ls-files -- '*.c' '*.h' '*.sh' '*.md' | grep -v '^scripts/rename_formats.sh$' |
        xargs grep -l -- "\\<\\($pattern\\)\\>" 2>/dev/null || true)
for f in $files; do
    sed -i "$expr" "$f"
    echo "renamed in $f"
done
left=$(git ls-files -- '*.c' '*.h' | grep -v '^scripts/' | xargs grep -n -- "\\<\\($pattern\\)\\>" || true)
if [ -n "$left" ]; then
    echo "old names left:" >&2
    echo "$left" >&2
    exit 1
fi
