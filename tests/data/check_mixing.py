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
Each scene's recorded neighbour says more: its mean spectrum moves from the
scene without a neighbour towards its neighbour class's mean by its recorded
share (slope 0.97, correlation 0.94 at 0.4 on seed 42; checked within 0.15 and
above 0.85), and a shuffled record explains far less (correlation 0.53). The
record itself: a class other than the scene's label, shares in [0, mixing).
The RGB camera is not linear (gamma, clipping), so its images are only checked
to have changed and to stay in [0, 1].

With --multilabel, the same mixed world written with -synth_ms_multilabel: its
images, splits, RGB labels and neighbour records are the mixed world's to the
bit; its /ms/labels are the (N, K) 0/1 table with exactly two positives per
scene, the mixed world's label and the recorded neighbour; /ms/dominant_class is
the mixed world's label."""
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
    p.add_argument("--multilabel", help="the mixed world written with -synth_ms_multilabel as well")
    a = p.parse_args()
    with h5py.File(a.default, "r") as d, h5py.File(a.mixed, "r") as m:
        for name in ("ms/labels", "ms/split", "rgb/labels", "rgb/split"):
            check(np.array_equal(d[name][...], m[name][...]), f"{name} differs: only the images may")
        labels = d["ms/labels"][...]
        classes = int(labels.max()) + 1
        class_mean = class_means(d["ms/images"][...], labels, classes)
        mixed = class_means(m["ms/images"][...], labels, classes)
        others = (class_mean.sum(axis=0) - class_mean) / (classes - 1)
        pull, pulled = (others - class_mean).ravel(), (mixed - class_mean).ravel()
        fitted = float(pull @ pulled / (pull @ pull))
        expected = a.mixing / 2 + 0.01
        check(abs(fitted - expected) < 0.06, f"MS class means moved by a share of {fitted:.3f} towards the other "
              f"classes, expected {expected:.3f} +- 0.06")
        recorded = all(f"{side}/neighbour_{x}" in m for side in ("ms", "rgb") for x in ("class", "share"))
        check(recorded, "the mixed world does not record its scenes' neighbours")
        if not recorded:
            return check.summary()
        neighbour, share = m["ms/neighbour_class"][...], m["ms/neighbour_share"][...]
        spectra = d["ms/images"][...].mean(axis=(2, 3))
        moved = (m["ms/images"][...].mean(axis=(2, 3)) - spectra).ravel()

        def fit(neighbours):
            towards = (share[:, None] * (class_mean[neighbours] - spectra)).ravel()
            return float(towards @ moved / (towards @ towards)), float(np.corrcoef(towards, moved)[0, 1])

        slope, corr = fit(neighbour)
        check(abs(slope - 1) < 0.15 and corr > 0.85, f"scenes moved towards their recorded neighbour class by "
              f"{slope:.3f} of its share (correlation {corr:.3f}); expected 1 +- 0.15, above 0.85")
        _, shuffled = fit(np.random.default_rng(0).permutation(neighbour))
        check(shuffled < corr - 0.2, f"a shuffled neighbour record explains the scenes as well ({shuffled:.3f} "
              f"against {corr:.3f})")
        for side in ("ms", "rgb"):
            record, labels_ = m[f"{side}/neighbour_class"][...], m[f"{side}/labels"][...]
            shares = m[f"{side}/neighbour_share"][...]
            check(np.all(record != labels_) and record.min() >= 0 and record.max() < classes,
                  f"/{side}/neighbour_class holds a scene's own label or a class outside 0..{classes - 1}")
            check(shares.min() >= 0 and shares.max() < a.mixing, f"/{side}/neighbour_share outside [0, {a.mixing})")
        for side in ("ms", "rgb"):
            record, labels_ = m[f"{side}/neighbour_class"][...], m[f"{side}/labels"][...]
            shares, table = m[f"{side}/neighbour_share"][...], m[f"{side}/cover_fractions"][...]
            want = np.zeros((len(labels_), classes), np.float32)
            rows = np.arange(len(labels_))
            want[rows, labels_] = 1 - shares
            want[rows, record] = shares
            check(table.dtype == np.float32 and np.array_equal(table, want),
                  f"/{side}/cover_fractions {table.shape} {table.dtype} is not 1 - share on the label and the share "
                  f"on the neighbour")
        check("neighbour_class" not in d["ms"] and "cover_fractions" not in d["ms"],
              "a world without neighbours records some")
        rgb = m["rgb/images"][...]
        check(not np.array_equal(rgb, d["rgb/images"][...]), "the RGB images did not change")
        check(rgb.min() >= 0 and rgb.max() <= 1, f"RGB values outside [0, 1]: {rgb.min()}..{rgb.max()}")
        params = m.attrs["synth_parameters"]
        params = params.decode() if isinstance(params, bytes) else str(params)
        check(f"mixing={a.mixing:g}" in params, f"synth_parameters does not record it: {params}")
        params = d.attrs["synth_parameters"]
        params = params.decode() if isinstance(params, bytes) else str(params)
        check("mixing" not in params, f"a world without it names it: {params}")
        if a.multilabel:
            check_multilabel(m, a.multilabel)
    return check.summary()


def check_multilabel(mixed, path):
    with h5py.File(path, "r") as ml:
        for name in ("ms/images", "ms/split", "ms/neighbour_class", "ms/neighbour_share", "ms/cover_fractions",
                     "rgb/images", "rgb/labels", "rgb/split", "rgb/neighbour_class", "rgb/neighbour_share",
                     "rgb/cover_fractions"):
            check(np.array_equal(mixed[name][...], ml[name][...]), f"{name} differs from the single-label file")
        single, neighbour = mixed["ms/labels"][...], mixed["ms/neighbour_class"][...]
        table = ml["ms/labels"][...]
        want = np.zeros_like(table)
        want[np.arange(len(single)), single] = 1
        want[np.arange(len(single)), neighbour] = 1
        check(table.dtype == np.uint8 and table.ndim == 2 and np.array_equal(table, want),
              f"/ms/labels {table.shape} {table.dtype} is not the label and the neighbour as positives")
        check(int(ml["ms"].attrs["multilabel"]) == 1 and int(mixed["ms"].attrs["multilabel"]) == 0,
              "the multilabel attributes")
        check(np.array_equal(ml["ms/dominant_class"][...], single), "/ms/dominant_class is not the scene's label")
        check("dominant_class" not in mixed["ms"] and "dominant_class" not in ml["rgb"],
              "a single-label collection records a dominant class")
        params = ml.attrs["synth_parameters"]
        params = params.decode() if isinstance(params, bytes) else str(params)
        check(params.endswith(" ms_multilabel=1"), f"synth_parameters does not record it: {params}")


if __name__ == "__main__":
    sys.exit(main())
