#!/usr/bin/python3
"""Checks -synth_rgb_variability with h5py and numpy against a world written with
the default (the RGB collection as variable as the MS one): the MS collection is
the same to the bit, and the RGB collection's scenes of one class spread further.

The spread measured is the within-class standard deviation of each scene's mean
display value. Variability scales every scene draw (illumination, season,
material condition, haze, layout), so at 1.0 against 0.5 that spread grows in
every class; a factor of 1.2 on average is far below what the scaling gives
and far above the sampling error of 60 scenes per class."""
import argparse
import pathlib
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("check_rgb_variability", print_passes=False)


def class_spread(f):
    images, labels = f["rgb/images"][...], f["rgb/labels"][...]
    brightness = images.mean(axis=(1, 2, 3))
    return np.array([brightness[labels == k].std() for k in range(int(labels.max()) + 1)])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("default", help="a world written with the default RGB variability")
    p.add_argument("wider", help="the same world written with -synth_rgb_variability 1")
    a = p.parse_args()
    with h5py.File(a.default, "r") as d, h5py.File(a.wider, "r") as w:
        check(np.array_equal(d["ms/images"][...], w["ms/images"][...]), "MS images differ: MS must not change")
        check(np.array_equal(d["ms/labels"][...], w["ms/labels"][...]), "MS labels differ")
        check(np.array_equal(d["rgb/labels"][...], w["rgb/labels"][...]), "RGB labels differ: only pixels may")
        check(np.array_equal(d["rgb/split"][...], w["rgb/split"][...]), "RGB splits differ: only pixels may")
        check(not np.array_equal(d["rgb/images"][...], w["rgb/images"][...]), "RGB images did not change")
        ratio = class_spread(w) / class_spread(d)
        check(ratio.mean() > 1.2, f"within-class spread of RGB brightness grew by {ratio.mean():.2f} on average")
        check((ratio > 1.0).all(), f"within-class spread shrank in some class: {np.round(ratio, 2)}")
        params = w.attrs["synth_parameters"]
        params = params.decode() if isinstance(params, bytes) else str(params)
        check("rgb_variability=1" in params, f"synth_parameters does not record it: {params}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
