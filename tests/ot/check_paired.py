#!/usr/bin/python3
"""Checks of co-registered collections (tests/ot/paired_match.sh).

  check_paired.py world WORLD.h5 EMBEDDINGS_OUT.h5   the paired world's splits, labels and pixels;
                                                     writes an embeddings file of its training rows
  check_paired.py match EMBEDDINGS.h5 MATCH.h5       every student's top-1 teacher is its own index"""
import sys

import h5py
import numpy as np


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def check_world(path, out):
    with h5py.File(path, "r") as f:
        ms, rgb = f["ms"], f["rgb"]
        if not np.array_equal(ms["split"][:], rgb["split"][:]):
            fail("the paired collections' splits differ")
        names_ms = [n.decode() for n in ms["classes"][:]]
        names_rgb = [n.decode() for n in rgb["classes"][:]]
        labels = rgb["labels"][:]
        shared = np.array([names_rgb[y] in names_ms for y in labels])
        # The RGB camera's green against the MS green band (B3), per image and less its class's mean:
        # the same ground gives the same brightness up to the sensors' responses and noise; another
        # scene of the same class (the index K further on) does not.
        K = len(names_rgb)
        green = rgb["images"][:, 1].mean(axis=(1, 2))
        b3 = ms["images"][:, [n.decode() for n in ms["bands"][:]].index("B3")].mean(axis=(1, 2))
        for y in range(K):
            green[labels == y] -= green[labels == y].mean()
            b3[labels == y] -= b3[labels == y].mean()
        same = np.corrcoef(green[shared], b3[shared])[0, 1]
        other = np.corrcoef(green[shared], np.roll(b3, K)[shared])[0, 1]
        print(f"green brightness correlation: paired {same:.3f}, shifted {other:.3f}")
        if not (same > 0.6 and abs(other) < 0.3):
            fail(f"RGB and MS samples of one index do not show the same ground ({same:.3f}, {other:.3f})")
        train = np.flatnonzero(ms["split"][:] == 0)
        ms_labels = ms["labels"][:]
        to_rgb = {k: names_rgb.index(n) if n in names_rgb else -1 for k, n in enumerate(names_ms)}
    rng = np.random.default_rng(3)
    students = rng.permutation(train)  # another order than the teachers': the index, not the row, pairs them
    with h5py.File(out, "w") as f:
        for group, rows, lab in (("student", students, labels[students]),
                                 ("teacher", train, np.array([to_rgb[y] for y in ms_labels[train]]))):
            f[f"{group}/features"] = rng.standard_normal((len(rows), 32)).astype(np.float32)
            f[f"{group}/labels"] = lab.astype(np.int32)
            f[f"{group}/index"] = rows.astype(np.int64)


def check_match(embeddings, match):
    with h5py.File(embeddings, "r") as f:
        s_index, s_labels = f["student/index"][:], f["student/labels"][:]
        t_index, t_labels = f["teacher/index"][:], f["teacher/labels"][:]
    with h5py.File(match, "r") as f:
        top = f["match/teacher_index"][:, 0]
        weight = f["match/weight"][:, 0]
    has_teacher = np.isin(s_labels, t_labels[t_labels >= 0])
    if np.any(top[~has_teacher] >= 0):
        fail("a student of a class without teachers was matched")
    got = t_index[top[has_teacher]]
    wrong = int(np.sum(got != s_index[has_teacher]))
    if wrong:
        fail(f"{wrong} of {has_teacher.sum()} students' top-1 teacher is not the sample of their index")
    if np.any(weight[has_teacher] < 0.999):
        fail(f"top-1 weights below 0.999: min {weight[has_teacher].min():.6f}")
    print(f"ok: {match}: all {has_teacher.sum()} students with teachers matched to their own index "
          f"(min weight {weight[has_teacher].min():.6f}); {(~has_teacher).sum()} one-sided unmatched")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("world", "match"):
        print(__doc__)
        sys.exit(2)
    (check_world if sys.argv[1] == "world" else check_match)(sys.argv[2], sys.argv[3])
