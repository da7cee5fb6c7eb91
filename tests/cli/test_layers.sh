#!/bin/sh
# Layering (docs/architecture.md): lib/core <- lib/io <- lib/infer <- lib/calib <- lib/quant, lib/prune,
# lib/distill <- formats/ <- jobs/ <- tools/. Checked on the sources' #include lines and on
# the built objects' symbols (nm): no file includes a header of a higher layer, no object
# uses a symbol defined in a higher layer, and among formats/ files neither the include
# graph nor the file-level call graph has a cycle (the integer-group layout files use
# fmt_common.c and are reached through fmt_table.c; they never call each other).
. tests/cli/lib.sh
BUILD=${BUILD:-build}
cat > "$T/layers.py" <<'PY'
import os, re, subprocess, sys
build = sys.argv[1]
# Known upward edges, printed on every run, not counted. None today (issue 14 moved the
# i-quant grids the low-bit kernels read into lib/core); nothing may join this list
# without a note saying why and when it goes.
KNOWN = set()
def layer(path):
    d = path.split('/')
    if d[0] == 'lib':
        return {'core': 0, 'io': 1, 'infer': 2, 'calib': 2.5, 'quant': 3, 'prune': 3, 'distill': 3}.get(d[1])
    return {'formats': 4, 'jobs': 5, 'tools': 6}.get(d[0])
srcs = []
for top in ('lib', 'formats', 'jobs', 'tools'):
    for root, _, files in os.walk(top):
        srcs += [os.path.join(root, f) for f in files if f.endswith(('.c', '.h'))]
inc = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
def resolve(src, name):
    for cand in (os.path.join(os.path.dirname(src), name), name):
        cand = os.path.normpath(cand)
        if os.path.exists(cand):
            return cand
    return None
bad, known, edges = [], [], {}
for s in sorted(srcs):
    for name in inc.findall(open(s, errors='replace').read()):
        t = resolve(s, name)
        if not t or layer(t) is None:
            continue
        if layer(t) > layer(s):
            (known if (s, t) in KNOWN else bad).append('%s includes %s (a higher layer)' % (s, t))
        if s.startswith('formats/') and t.startswith('formats/') and s != t:
            edges.setdefault(s, set()).add(t)
def cycle(g):
    state = {}
    def dfs(v, path):
        state[v] = 1
        for w in sorted(g.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w] if w in path else path + [w]
            if not state.get(w):
                c = dfs(w, path + [w])
                if c:
                    return c
        state[v] = 2
        return None
    for v in sorted(g):
        if not state.get(v):
            c = dfs(v, [v])
            if c:
                return c
    return None
c = cycle(edges)
if c:
    bad.append('include cycle among formats/: ' + ' -> '.join(c))
print('checked %d sources, %d formats/ include edges' % (len(srcs), sum(len(v) for v in edges.values())))
# symbols
objs = []
for top in ('lib', 'formats', 'jobs'):
    for root, _, files in os.walk(os.path.join(build, 'obj', top)):
        objs += [os.path.join(root, f) for f in files if f.endswith('.o')]
if not objs:
    print('FAIL: no objects under %s/obj (build first)' % build)
    sys.exit(1)
defs, undefs = {}, {}
for o in objs:
    src = os.path.relpath(o, os.path.join(build, 'obj'))[:-2] + '.c'
    if not os.path.exists(src):
        continue  # left over from a renamed or removed source
    out = subprocess.run(['nm', '-P', o], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        if f[1] == 'U':
            undefs.setdefault(src, set()).add(f[0])
        elif f[1].isupper():  # defined and global (lower case: file-local)
            defs[f[0]] = src
# lib/core/blockcodec.h declares the block codecs the static const dtype table names at
# compile time (as ggml's type traits name ggml-quants.c's functions); lib/quant defines
# them. That one header is core's interface, bound at link time: its symbols are allowed,
# counted and printed, nothing else is.
codec = set()
if os.path.exists('lib/core/blockcodec.h'):
    for nm in re.findall(r'^LMP_BLOCK_CODEC\((\w+)\)', open('lib/core/blockcodec.h').read(), re.M):
        codec |= {'lmp_%s_to_f32' % nm, 'lmp_%s_from_f32' % nm}
bound = 0
calls = {}
for s, us in undefs.items():
    for u in us:
        t = defs.get(u)
        if not t or t == s:
            continue
        if layer(t) > layer(s) and s == 'lib/core/dtype.c' and u in codec:
            bound += 1
        elif layer(t) > layer(s):
            (known if (s, t) in KNOWN else bad).append('%s uses %s from %s (a higher layer)' % (s, u, t))
        if s.startswith('formats/') and t.startswith('formats/'):
            calls.setdefault(s, set()).add(t)
c = cycle(calls)
if c:
    bad.append('call cycle among formats/ objects: ' + ' -> '.join(c))
print('checked %d objects, %d formats/ call edges' % (len(objs), sum(len(v) for v in calls.values())))
print('dtype table: %d block codecs declared in lib/core/blockcodec.h, defined in lib/quant' % bound)
if bound == 0 and codec:
    bad.append('no block codec bound through lib/core/blockcodec.h (the checker no longer sees the table)')
for k in known:
    print('known exception: ' + k)
for b in bad:
    print('VIOLATION: ' + b)
sys.exit(1 if bad else 0)
PY
ok "layering and acyclic formats/ (includes and calls)" $PY "$T/layers.py" "$BUILD"
sed 's/^/    /' "$T/out"
# the checker itself must see a violation: a formats/ file including jobs/, and a cycle
mkdir -p "$T/neg/formats" "$T/neg/jobs" "$T/neg/lib/core" "$T/neg/tools"
printf '#include "jobs/j.h"\n' > "$T/neg/formats/a.h"
printf '#include "b.h"\n' > "$T/neg/formats/c.h"
printf '#include "c.h"\n' > "$T/neg/formats/b.h"
: > "$T/neg/jobs/j.h"
mkdir -p "$T/neg/build/obj/lib/core"
printf 'int lmp_neg_probe(void) { return 0; }\n' > "$T/neg/lib/core/p.c"
cc -c -o "$T/neg/build/obj/lib/core/p.o" "$T/neg/lib/core/p.c" 2>/dev/null
mkdir -p "$T/neg/build/obj/formats"
printf 'int neg_y(void);\nint neg_x(void) { return neg_y(); }\n' > "$T/neg/formats/x.c"
printf 'int neg_x(void);\nint neg_y(void) { return neg_x() + 1; }\n' > "$T/neg/formats/y.c"
cc -c -o "$T/neg/build/obj/formats/x.o" "$T/neg/formats/x.c" 2>/dev/null
cc -c -o "$T/neg/build/obj/formats/y.o" "$T/neg/formats/y.c" 2>/dev/null
(cd "$T/neg" && $PY "$T/layers.py" build) > "$T/neg.out" 2>&1
check "checker flags formats/ including jobs/" "grep -q 'formats/a.h includes jobs/j.h' '$T/neg.out'"
check "checker flags an include cycle" "grep -q 'include cycle among formats/' '$T/neg.out'"
check "checker flags a call cycle" "grep -q 'call cycle among formats/' '$T/neg.out'"
finish
