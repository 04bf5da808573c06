#!/usr/bin/python3
"""Stand-in for `ackd ssm` in the Slurm pipeline test, until the real stage lands: writes an
embeddings file (docs/FORMATS.md) for a dataset's training splits, so that `ackd match` has its
input. Features are each image's per-channel mean and std pushed through a fixed random
projection, plus the class one-hot (so matching within class is meaningful), L2-normalised.
    fake_ssm.py DATASET.h5 EMBEDDINGS.h5"""
import os
import sys

import h5py
import numpy as np

if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
    print(__doc__)
    sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
src, dst = sys.argv[1:]
rng = np.random.default_rng(0)
d = 16
with h5py.File(src, "r") as f:
    ms_to_rgb = f["class_map/ms_to_rgb"][...]
    k_rgb = len(f["rgb/classes"])
    sides = {}
    for side, group in (("teacher", "ms"), ("student", "rgb")):
        rows = np.flatnonzero(f[group + "/split"][...] == 0)
        x = f[group + "/images"][...][rows]
        y = f[group + "/labels"][...][rows]
        if group == "ms":
            y = ms_to_rgb[y]
        stats = np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
        proj = rng.standard_normal((stats.shape[1], d))
        onehot = np.zeros((len(y), k_rgb))
        onehot[y >= 0, y[y >= 0]] = 1.0
        feat = np.concatenate([0.1 * np.tanh(stats @ proj), onehot], axis=1)
        feat /= np.linalg.norm(feat, axis=1, keepdims=True)
        sides[side] = (feat.astype(np.float32), y.astype(np.int32), rows.astype(np.int64))
with h5py.File(dst + ".part", "w") as g:
    g.attrs["ackd_format"] = "embeddings"
    g.attrs["ackd_format_version"] = 1
    g.attrs["generator"] = "tests/jobs/fake_ssm.py (stand-in for ackd ssm)"
    for side, (feat, y, rows) in sides.items():
        g[side + "/features"] = feat
        g[side + "/labels"] = y
        g[side + "/index"] = rows
os.replace(dst + ".part", dst)
print(f"fake_ssm: {len(sides['student'][0])} students, {len(sides['teacher'][0])} teachers -> {dst}")
