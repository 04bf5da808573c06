#!/usr/bin/python3
"""DynM re-matching against numpy: for every student, the teachers of its class (or of any class,
-dynm_class_blocks false) with the smallest KL(softmax(z_t/T) || softmax(z_s/T)), T = 3, found by
ackd's distributed OT (argmin) on 1, 2 and 4 ranks, must be numpy's, in the same order.
    rematch_check.py --mpirun 'mpirun -n' --program test_rematch --dataset D --gallery G --out DIR"""
import argparse
import os
import subprocess
import sys

import h5py
import numpy as np

p = argparse.ArgumentParser(description=__doc__)
for a in ("--mpirun", "--program", "--dataset", "--gallery", "--out"):
    p.add_argument(a, required=True)
args = p.parse_args()
os.makedirs(args.out, exist_ok=True)
with h5py.File(args.dataset, "r") as f:
    split, labels = f["rgb/split"][()], f["rgb/labels"][()]
    ms_to_rgb = f["class_map/ms_to_rgb"][()]
    K = len(f["rgb/classes"])
with h5py.File(args.gallery, "r") as g:
    zt_ms, t_labels = g["gallery/logits"][()].astype(np.float64), g["gallery/labels"][()]
students = np.flatnonzero(split == 0)
s_labels = labels[students]
rng = np.random.default_rng(5)
zs = rng.standard_normal((len(students), K)).astype(np.float32) * 3
logits = os.path.join(args.out, "logits.h5")
with h5py.File(logits, "w") as f:
    f["logits"] = zs

# Teacher logits into the student's classes, as ackd projects them (absent classes far below).
zt = np.repeat(zt_ms.min(axis=1, keepdims=True) - 50.0, K, axis=1)
for c_ms, c in enumerate(ms_to_rgb):
    if c >= 0:
        zt[:, c] = zt_ms[:, c_ms]
tl = np.where(t_labels >= 0, ms_to_rgb[t_labels], -1)
T = 3.0


def log_softmax(z):
    z = z / T
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


lpt, lps = log_softmax(zt), log_softmax(zs.astype(np.float64))
free_cost = (np.exp(lpt) * lpt).sum(axis=1)[None, :] - lps @ np.exp(lpt).T
blocked_cost = free_cost.copy()
blocked_cost[s_labels[:, None] != tl[None, :]] = np.inf
blocked_cost[:, tl < 0] = np.inf
failures = 0
# Within the student's class (DynM's default), and over every teacher (-dynm_class_blocks false).
for blocks, cost in (("true", blocked_cost), ("false", free_cost)):
    for np_ in ("1", "2", "4"):
        out = os.path.join(args.out, f"table{np_}-{blocks}.h5")
        subprocess.run(args.mpirun.split() + [np_, args.program, args.dataset, args.gallery, logits, out,
                                              "-dynm_solver", "argmin", "-dynm_class_blocks", blocks], check=True)
        with h5py.File(out, "r") as f:
            index = f["index"][()].astype(np.int64)
        k = index.shape[1]
        worst, crossed = 0, 0
        for s in range(len(students)):
            finite = np.flatnonzero(np.isfinite(cost[s]))
            want = finite[np.argsort(cost[s, finite], kind="stable")][:k]
            got = index[s][index[s] >= 0]
            crossed += np.any(tl[got] != s_labels[s])
            if len(got) != len(want) or not np.allclose(cost[s, got], cost[s, want], rtol=1e-6, atol=1e-9):
                worst += 1
        # Random student logits pick teachers of other classes once the blocks are gone.
        ok = worst == 0 and (crossed == 0) == (blocks == "true")
        failures += not ok
        print(("ok   " if ok else "FAIL ") + f"P={np_}, class blocks {blocks}: top-{k} teachers of all "
              f"{len(students)} students = numpy's argmin of the KL cost ({worst} differ; {crossed} students "
              "have a teacher of another class)")
sys.exit(1 if failures else 0)
