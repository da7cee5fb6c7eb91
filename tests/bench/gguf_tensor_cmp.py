#!/usr/bin/env python3
"""Compares two GGUF files tensor by tensor (bench_quantize.sh: lmpress quantize against
llama-quantize on the same input): type, shape and data bytes of every tensor, and the
metadata values. Prints one line per difference and a summary; exit status 0 when every
tensor is identical in type, shape and bytes (metadata differences are only reported).
Usage: python3 gguf_tensor_cmp.py A.gguf B.gguf"""
import struct
import sys

SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
TYPES = {0: 'f32', 1: 'f16', 2: 'q4_0', 3: 'q4_1', 6: 'q5_0', 7: 'q5_1', 8: 'q8_0', 10: 'q2_K', 11: 'q3_K',
         12: 'q4_K', 13: 'q5_K', 14: 'q6_K', 30: 'bf16', 16: 'iq2_xxs', 17: 'iq2_xs', 18: 'iq3_xxs', 19: 'iq1_s',
         20: 'iq4_nl', 21: 'iq3_s', 22: 'iq2_s', 23: 'iq4_xs', 29: 'iq1_m', 34: 'tq1_0', 35: 'tq2_0', 39: 'mxfp4',
         41: 'q1_0', 42: 'q2_0'}
# (block size, bytes per block) of the types lmpress writes
BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
         16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
         23: (256, 136), 29: (256, 56), 34: (256, 54), 35: (256, 66), 39: (32, 17), 41: (128, 18), 42: (64, 18)}


def rd(f, fmt):
    return struct.unpack('<' + fmt, f.read(struct.calcsize('<' + fmt)))


def rstr(f):
    (n,) = rd(f, 'Q')
    return f.read(n).decode('utf-8', 'replace')


def rval(f, t):
    if t == 8:
        return rstr(f)
    if t == 9:
        (at,) = rd(f, 'I')
        (n,) = rd(f, 'Q')
        return [rval(f, at) for _ in range(n)]
    return rd(f, SCALAR[t])[0]


def parse(path):
    f = open(path, 'rb')
    if f.read(4) != b'GGUF':
        sys.exit('%s: not a GGUF file' % path)
    rd(f, 'I')
    nt, nkv = rd(f, 'QQ')
    kv, tensors = {}, {}
    order = []
    for _ in range(nkv):
        k = rstr(f)
        (t,) = rd(f, 'I')
        kv[k] = rval(f, t)
    for _ in range(nt):
        name = rstr(f)
        (nd,) = rd(f, 'I')
        dims = rd(f, 'Q' * nd)
        (typ,) = rd(f, 'I')
        (off,) = rd(f, 'Q')
        tensors[name] = (dims, typ, off)
        order.append(name)
    align = kv.get('general.alignment', 32)
    base = (f.tell() + align - 1) // align * align
    return f, kv, tensors, order, base


def nbytes(dims, typ):
    bs, bb = BLOCK[typ]
    n = 1
    for d in dims:
        n *= d
    return n // bs * bb


def main():
    fa, kva, ta, order, ba = parse(sys.argv[1])
    fb, kvb, tb, _, bb = parse(sys.argv[2])
    for k in sorted(set(kva) | set(kvb)):
        if kva.get(k) != kvb.get(k):
            print('metadata %s: %.60s | %.60s' % (k, kva.get(k, '(absent)'), kvb.get(k, '(absent)')))
    same = diff = 0
    counts = {}
    for name in order:
        dims, typ, off = ta[name]
        counts[TYPES.get(typ, typ)] = counts.get(TYPES.get(typ, typ), 0) + 1
        if name not in tb:
            print('%s: only in %s' % (name, sys.argv[1]))
            diff += 1
            continue
        dims2, typ2, off2 = tb[name]
        if dims != dims2 or typ != typ2:
            print('%s: %s %s vs %s %s' % (name, TYPES.get(typ, typ), list(dims), TYPES.get(typ2, typ2), list(dims2)))
            diff += 1
            continue
        if typ not in BLOCK:
            print('%s: type %d not compared' % (name, typ))
            diff += 1
            continue
        n = nbytes(dims, typ)
        fa.seek(ba + off)
        fb.seek(bb + off2)
        a, b = fa.read(n), fb.read(n)
        if a == b:
            same += 1
        else:
            k = next(i for i in range(n) if a[i] != b[i])
            print('%s (%s): data differs from byte %d of %d' % (name, TYPES.get(typ, typ), k, n))
            diff += 1
    for name in tb:
        if name not in ta:
            print('%s: only in %s' % (name, sys.argv[2]))
            diff += 1
    print('%d tensors identical in type, shape and bytes, %d differ (%s)' %
          (same, diff, ', '.join('%s %d' % kv for kv in sorted(counts.items()))))
    return 0 if diff == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
