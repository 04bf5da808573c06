#!/usr/bin/python3
"""Checks -synth_mixing with h5py and numpy against a world written without it.

Labels and splits are the same to the bit: a neighbouring parcel changes what a
scene shows, never its label or its split. The MS sensor is linear (blur,
illumination and haze are linear in the ground's reflectance, and its noise has
mean zero), so a class's mean spectrum becomes, in expectation, its own mean
moved towards its collection's other classes by the neighbours' mean share:
half of -synth_mixing, plus about 0.01 for the soft edge on a 32 x 32 tile. The
share fitted over every class and band must land within 0.06 of that: at 0.4 the
fit gave 0.189 to 0.205 over four seeds of this world's size (the neighbours'
own spread about their class means), and a world without neighbours gives 0.
The RGB camera is not linear (gamma, clipping), so its
images are only checked to have changed and to stay in [0, 1]."""
import argparse
import pathlib
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("check_mixing", print_passes=False)


def class_means(images, labels, classes):
    spectra = images.mean(axis=(2, 3))
    return np.array([spectra[labels == k].mean(axis=0) for k in range(classes)])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("default", help="a world written without -synth_mixing")
    p.add_argument("mixed", help="the same world written with -synth_mixing")
    p.add_argument("--mixing", type=float, required=True, help="the -synth_mixing it was written with")
    a = p.parse_args()
    with h5py.File(a.default, "r") as d, h5py.File(a.mixed, "r") as m:
        for name in ("ms/labels", "ms/split", "rgb/labels", "rgb/split"):
            check(np.array_equal(d[name][...], m[name][...]), f"{name} differs: only the images may")
        labels = d["ms/labels"][...]
        classes = int(labels.max()) + 1
        own = class_means(d["ms/images"][...], labels, classes)
        mixed = class_means(m["ms/images"][...], labels, classes)
        others = (own.sum(axis=0) - own) / (classes - 1)
        pull, moved = (others - own).ravel(), (mixed - own).ravel()
        share = float(pull @ moved / (pull @ pull))
        expected = a.mixing / 2 + 0.01
        check(abs(share - expected) < 0.06, f"MS class means moved by a share of {share:.3f} towards the other "
              f"classes, expected {expected:.3f} +- 0.06")
        rgb = m["rgb/images"][...]
        check(not np.array_equal(rgb, d["rgb/images"][...]), "the RGB images did not change")
        check(rgb.min() >= 0 and rgb.max() <= 1, f"RGB values outside [0, 1]: {rgb.min()}..{rgb.max()}")
        params = m.attrs["synth_parameters"]
        params = params.decode() if isinstance(params, bytes) else str(params)
        check(f"mixing={a.mixing:g}" in params, f"synth_parameters does not record it: {params}")
        params = d.attrs["synth_parameters"]
        params = params.decode() if isinstance(params, bytes) else str(params)
        check("mixing" not in params, f"a world without it names it: {params}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
