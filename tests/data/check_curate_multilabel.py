#!/usr/bin/python3
"""Checks datasets written by `ackd curate` from the tables and the MATLAB v7.3
file of make_image_folders.py: which samples were kept, their pixels, and their
labels: (N, K) from the one-hot table and the .mat file, with splits stratified
by the first class; single labels and cover fractions from the fraction table.

  check_curate_multilabel.py FIXTURES FILE table|mat|fractions [ACKD]

With ACKD, the fraction table's file is also summarised by `ackd inspect`, whose
cover-fraction line must agree with numpy's.
"""
import os
import pathlib
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402


def fold_counts(n, folds=5):
    return sum(1 for p in range(n) if p * folds // n == 0)


def main():
    fixtures, path, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    check = checklib.Checks(f"check_curate_multilabel {kind}", print_passes=False)
    src = np.load(os.path.join(fixtures, "sources.npz"))
    if kind == "table":
        rows, onehot = list(src["table_rows"]), src["table_labels"]
        keep = [i for i, r in enumerate(rows) if "corrupt" not in r]
        images = np.stack([src["ms/" + rows[i]][[0, 1, 2]] for i in keep])  # bands 1,2,3
        labels, names, skipped = onehot[keep], ["urban", "water", "trees"], ("skipped_unreadable", 1)
    else:
        msi, label = src["mat_msi"], src["mat_label"]
        keep = [i for i in range(len(msi)) if np.isfinite(msi[i]).all()]
        images, labels = msi[keep], label[keep].astype(np.uint8)
        names, skipped = ["a", "b", "c", "d"], ("skipped_not_finite", 1)
    if kind == "fractions":
        check_fractions(check, src, path)
        if len(sys.argv) > 4:  # ackd: its inspect summary of the fractions
            check_summary(check, sys.argv[4], path)
        return check.summary()
    with h5py.File(path, "r") as f:
        g = f["ms"]
        check(g.attrs["multilabel"] == 1, "multilabel attribute")
        check([c.decode() for c in g["classes"][...]] == names, f"classes {g['classes'][...]}")
        check(g["labels"].dtype == np.uint8 and g["labels"].shape == labels.shape, f"labels {g['labels'].shape}")
        check((g["labels"][...] == labels).all(), "labels differ from the source")
        check(np.array_equal(g["images"][...], images.astype(np.float32)), "pixels differ from the source")
        check(g.attrs[skipped[0]] == skipped[1], f"{skipped[0]} = {g.attrs[skipped[0]]}")
        split = g["split"][...]
        first = np.array([np.flatnonzero(r)[0] if r.any() else len(names) for r in labels])
        for k in np.unique(first):
            n = int((first == k).sum())
            check(int((split[first == k] == 1).sum()) == fold_counts(n), f"first-class group {k}: fold sizes")
    return check.summary()


def check_fractions(check, src, path):
    """A fraction table: single labels (the largest share, the first of equals), the rows scaled to sum
    to 1 as /ms/cover_fractions, splits stratified by the label."""
    rows, table = list(src["fraction_rows"]), src["fraction_table"]
    keep = [i for i, r in enumerate(rows) if "corrupt" not in r]
    images = np.stack([src["ms/" + rows[i]][[0, 1, 2]] for i in keep])
    fractions = table[keep] / table[keep].sum(axis=1, keepdims=True)
    labels = np.argmax(table[keep], axis=1)  # numpy's argmax takes the first of equals too
    with h5py.File(path, "r") as f:
        g = f["ms"]
        check(int(g.attrs["multilabel"]) == 0, "a fraction table gives a single-label collection")
        check([c.decode() for c in g["classes"][...]] == ["urban", "water", "trees"], f"classes {g['classes'][...]}")
        check(np.array_equal(g["labels"][...], labels), f"labels {g['labels'][...]} are not the largest shares {labels}")
        got = g["cover_fractions"][...]
        check(got.dtype == np.float32 and got.shape == fractions.shape
              and np.abs(got - fractions).max() <= 1e-6, f"cover_fractions {got} differ from the table's rows {fractions}")
        check(np.array_equal(g["images"][...], images.astype(np.float32)), "pixels differ from the source")
        check(g.attrs["skipped_unreadable"] == 1, f"skipped_unreadable = {g.attrs['skipped_unreadable']}")
        split = g["split"][...]
        for k in np.unique(labels):
            n = int((labels == k).sum())
            check(int((split[labels == k] == 1).sum()) == fold_counts(n), f"class {k}: fold sizes")


def check_summary(check, ackd, path):
    with h5py.File(path, "r") as f:
        labels, fractions = f["ms/labels"][...], f["ms/cover_fractions"][...].astype(np.float64)
    own = fractions[np.arange(len(labels)), labels]
    others = fractions.copy()
    others[np.arange(len(labels)), labels] = 0
    want = (f"cover fractions: the label's class covers {own.mean():.3f} of a scene on average ({own.min():.3f} at "
            f"least); {100 * np.mean((others > 0).any(axis=1)):.1f}% of the scenes hold another class")
    text = subprocess.run([ackd, "inspect", path], capture_output=True, text=True).stdout
    check(want in text, f"ackd inspect: '{want}' not in its summary:\n{text}")


if __name__ == "__main__":
    sys.exit(main())
