#!/usr/bin/python3
"""Checks -synth_rgb_train and -synth_rgb_val with h5py and numpy against a world
written with the default split: only the RGB collection's split changes.

Every image, every label and the MS split are the same to the bit. Each RGB class
has round(train x n) training and round(val x n) validation scenes, n its scene
count, as the stratified split rounds. The split ranks a class's scenes once by
the seed and cuts the ranking, so a smaller training fraction keeps a subset of
the default training scenes and the test split only grows: scarcer labels are
fewer of the same scenes, not other scenes."""
import argparse
import math
import pathlib
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("check_rgb_split", print_passes=False)
TRAIN, VAL, TEST = 0, 1, 2


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("default", help="a world written with the default split")
    p.add_argument("scarce", help="the same world written with -synth_rgb_train and -synth_rgb_val")
    p.add_argument("--train", type=float, required=True, help="the -synth_rgb_train it was written with")
    p.add_argument("--val", type=float, required=True, help="the -synth_rgb_val it was written with")
    a = p.parse_args()
    with h5py.File(a.default, "r") as d, h5py.File(a.scarce, "r") as s:
        for name in ("ms/images", "ms/labels", "ms/split", "rgb/images", "rgb/labels"):
            check(np.array_equal(d[name][...], s[name][...]), f"{name} differs: only the RGB split may")
        labels, split, before = s["rgb/labels"][...], s["rgb/split"][...], d["rgb/split"][...]
        check(TRAIN in split and VAL in split and TEST in split, f"an RGB split is empty: {np.bincount(split)}")
        for k in np.unique(labels):
            mine = split[labels == k]
            n = mine.size
            want_train = math.floor(a.train * n + 0.5)
            want_val = min(n - want_train, math.floor(a.val * n + 0.5))
            got = [(mine == x).sum() for x in (TRAIN, VAL)]
            check(got == [want_train, want_val], f"class {k}: {got} training and validation scenes of {n}, "
                  f"expected {want_train} and {want_val}")
        check(np.all(before[split == TRAIN] == TRAIN), "a scarce training scene was not a default training scene")
        check(np.all(split[before == TEST] == TEST), "a default test scene left the test split")
        params = s.attrs["synth_parameters"]
        params = params.decode() if isinstance(params, bytes) else str(params)
        check(f"rgb_train={a.train:g}" in params and f"rgb_val={a.val:g}" in params,
              f"synth_parameters does not record them: {params}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
