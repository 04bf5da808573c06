#!/usr/bin/python3
"""Makes the damaged `ackd match` inputs that must be refused cleanly, from a good problem (features of
at least 16 columns, so that -match_features index gets as far as the index arrays):
  labels_rank2.h5  /student/labels (N, 1) and /teacher/labels (M): a vector written as a matrix
  mass_rank0.h5    /teacher/mass a scalar
  half_index.h5    /student/index but no /teacher/index
    make_bad_inputs.py GOOD.h5 OUTDIR"""
import shutil
import sys

import h5py
import numpy as np

good, out = sys.argv[1], sys.argv[2]


def copy(name):
    path = f"{out}/{name}"
    shutil.copy(good, path)
    return h5py.File(path, "r+")


with h5py.File(good, "r") as f:
    ns, nt = len(f["student/features"]), len(f["teacher/features"])
with copy("labels_rank2.h5") as f:
    f["student/labels"] = np.zeros((ns, 1), np.int32)
    f["teacher/labels"] = np.zeros(nt, np.int32)
with copy("mass_rank0.h5") as f:
    del f["teacher/mass"]
    f["teacher/mass"] = 1.0
with copy("half_index.h5") as f:
    f["student/index"] = np.arange(ns, dtype=np.int64)
