#!/usr/bin/python3
"""Offline look at a --target-bpw plan's measured fronts (issue 21, docs/results.md).

Input: the JSON of `lmpress quantize BASE.gguf -o /dev/null --imatrix IMX --target-bpw X
--target-calib TEXT --target-probes 0 --dry-run --json` (every Pareto point of every tensor
probed alone, so each point's "kld" is measured; the probes do not depend on X).

  plan_fronts.py PLAN.json solve BYTES [--exclude t1,t2] [--rules OUT]
      the exact multiple-choice knapsack on the measured alone-KLDs at BYTES of tensors (the
      whole file's, as the planner counts them); prints the predicted sum and the types, and
      writes --tensor-type rules (one REGEX=TYPE a line) for `lmpress quantize`.
  plan_fronts.py PLAN.json predict TYPES.txt
      the summed alone-KLD prediction for the per-tensor types of a written file
      (TYPES.txt: `lmpress inspect FILE | awk '/weight/ {print $1, $2}'`); a type that is not
      on a tensor's front (dominated there) is interpolated in log KLD against bits per weight.
Decisions use the calibration text only: the probes ran on it.
"""
import json
import math
import sys

import numpy as np

BPW = {'iq1_s': 1.5625, 'iq1_m': 1.75, 'iq2_xxs': 2.0625, 'iq2_xs': 2.3125, 'iq2_s': 2.5625, 'iq3_xxs': 3.0625,
       'iq3_s': 3.4375, 'q2_k': 2.625, 'q3_k': 3.4375, 'q4_k': 4.5, 'q5_k': 5.5, 'q6_k': 6.5625, 'q8_0': 8.5,
       'iq4_xs': 4.25, 'iq4_nl': 4.5, 'q4_0': 4.5, 'q4_1': 5.0, 'q5_0': 5.5, 'q5_1': 6.0}


def alone(t, ty):
    fr = t['front']
    for c in fr:
        if c['type'] == ty:
            return c['kld']
    pts = sorted((BPW[c['type']], math.log(max(c['kld'], 1e-12))) for c in fr)
    b = BPW[ty]
    for (b0, e0), (b1, e1) in zip(pts, pts[1:]):
        if b0 <= b <= b1:
            return math.exp(e0 + (e1 - e0) * (b - b0) / (b1 - b0))
    return math.exp(pts[0][1] if b < pts[0][0] else pts[-1][1])


def solve(T, errs, fixed, budget, grid=65536):
    """min sum err s.t. bytes <= budget; costs rounded up to cells as lmp_plan_solve does"""
    avail = budget - fixed
    unit = max(1, -(-avail // grid))
    G = avail // unit
    dp = np.zeros(G + 1)
    chs = []
    for t, e in zip(T, errs):
        nx = np.full(G + 1, np.inf)
        ch = np.zeros(G + 1, dtype=np.int16)
        for k, c in enumerate(t['front']):
            cells = -(-c['bytes'] // unit)
            if cells > G:
                continue
            v = np.full(G + 1, np.inf)
            v[cells:] = dp[:G + 1 - cells] + e[k]
            m = v < nx
            nx[m] = v[m]
            ch[m] = k
        dp = nx
        chs.append(ch)
    if not np.isfinite(dp[G]):
        sys.exit('no plan fits %d bytes' % budget)
    b, pick, tot, err = G, [0] * len(T), fixed, 0.0
    for i in range(len(T) - 1, -1, -1):
        k = int(chs[i][b])
        pick[i] = k
        c = T[i]['front'][k]
        b -= -(-c['bytes'] // unit)
        tot += c['bytes']
        err += errs[i][k]
    return pick, tot, err


def main():
    a = sys.argv[1:]
    if len(a) < 3 or a[1] not in ('solve', 'predict'):
        sys.exit(__doc__)
    d = json.load(open(a[0]))
    T, P, fixed = d['tensors'], d['params'], d['fixed_bytes']
    if any(c['kld'] < 0 for t in T for c in t['front']):
        sys.exit('%s: not every point was probed (run the plan with --target-probes 0)' % a[0])
    if a[1] == 'predict':
        ty = dict(l.split()[:2] for l in open(a[2]) if l.strip())
        s = sum(alone(t, ty[t['name']]) for t in T)
        print('predicted (sum of alone KLDs) %.5g' % s)
        return
    budget = int(float(a[2]))
    excl = set(a[a.index('--exclude') + 1].split(',')) if '--exclude' in a else set()
    errs = [[math.inf if c['type'] in excl else c['kld'] for c in t['front']] for t in T]
    pick, tot, err = solve(T, errs, fixed, budget)
    print('bytes %d bpw %.4f predicted %.5g' % (tot, tot * 8 / P, err))
    print(' '.join(T[i]['front'][k]['type'] for i, k in enumerate(pick)))
    if '--rules' in a:
        with open(a[a.index('--rules') + 1], 'w') as f:
            for i, k in enumerate(pick):
                f.write('^%s$=%s\n' % (T[i]['name'].replace('.', '\\.'), T[i]['front'][k]['type']))


if __name__ == '__main__':
    main()
