#!/bin/sh
# Issue 14: --help is generated from the same option tables the parser reads, so they
# cannot disagree. Checked from outside for every subcommand: every option --help shows is
# accepted by the parser (no "unknown option", no value complaint), a made-up option is
# refused with exit 2, and quantize's help shows both of its tables. Each command runs
# without its positional arguments in a scratch folder, so it stops at "need MODEL".
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
cmds=$("$LMP_BIN" --help | sed -n '/^commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
check "command list read" "[ \$(echo '$cmds' | wc -w) -ge 10 ]"
# distill has subcommands of its own: their tables are checked instead
cmds=$(echo "$cmds" | sed 's/^distill$/distill:export distill:merge/')
for cc in $cmds; do
    c=$(echo "$cc" | tr ':' ' ')
    cc=$(echo "$cc" | tr ':' '_')
    "$LMP_BIN" $c --help > "$T/h.$cc" 2>&1
    check "$c --help exits 0" "[ \$? -eq 0 ] && grep -q '^usage: lmpress $c' '$T/h.$cc'"
    # option lines: "  -o, --output OUT", "      --sym, --asym", "      --calib-samples N"
    grep -E '^(  -[A-Za-z], |      )--[a-z]' "$T/h.$cc" | grep -v -- '--help' > "$T/o.$cc"
    n=0
    while IFS= read -r line; do
        set -- $(echo "$line" | sed -E 's/^ +//; s/  .*//; s/,//g') # the left column
        [ "${1#--}" = "$1" ] && shift # the short form
        opt=$1; shift
        vals=""
        if [ "$#" -gt 0 ] && [ "${1#--}" = "$1" ]; then
            mv=$1
            case "$mv" in *"|"*) vals=${mv%%|*} ;; *) vals=1 ;; esac
        fi
        names="$opt"
        [ "$#" -gt 0 ] && [ "${1#--}" != "$1" ] && names="$opt $1" # --x, --no-x
        for o in $names; do
            n=$((n + 1))
            if [ -n "$vals" ]; then timeout 20 "$LMP_BIN" $c "$o" "$vals" > /dev/null 2> "$T/e"
            else timeout 20 "$LMP_BIN" $c "$o" > /dev/null 2> "$T/e"; fi
            if grep -qE "unknown option|takes no value|needs a value|is not an integer|is not a number|: unknown ${o#--} " "$T/e"; then
                fail=$((fail + 1)); echo "FAIL: $c $o (shown in --help) refused by the parser:"; sed 's/^/    /' "$T/e" | head -3
            else pass=$((pass + 1)); fi
        done
    done < "$T/o.$cc"
    check "$c --help lists options" "[ $n -ge 1 ]"
    refuses "$c refuses a made-up option" "unknown option" "$LMP_BIN" $c --no-such-option-xyz
    check "$c made-up option exits 2" "\"$LMP_BIN\" $c --no-such-option-xyz 2>/dev/null; [ \$? -eq 2 ]"
done
check "quantize --help shows the GGUF table" "grep -q '^GGUF block types' '$T/h.quantize' && grep -q -- '--imatrix-calib' '$T/h.quantize'"
check "quantize --help shows the integer-group table" "grep -q '^integer groups' '$T/h.quantize' && grep -q -- '--sym, --asym' '$T/h.quantize'"
check "prune --help shows both tables" "grep -q '^unstructured' '$T/h.prune' && grep -q '^structured' '$T/h.prune'"
refuses "options of both quantize tables refused" "do not mix" "$LMP_BIN" quantize m -o x --type q4_0 --bits 4
refuses "both names of a pair refused" "conflict" "$LMP_BIN" quantize m -o x --method gptq --act-order --no-act-order
finish
