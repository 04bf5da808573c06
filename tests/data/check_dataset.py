#!/usr/bin/python3
"""Checks a dataset written by `ackd synth` with h5py and numpy, independently
of ackd's own reader: layout, shapes, types, balanced labels, stratified splits,
the class map, and the per-band statistics recomputed from the pixels."""
import argparse
import math
import pathlib
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("check_dataset", print_passes=False)


def rounded(x):
    return int(math.floor(x + 0.5))


def check_collection(f, name, count, channels, size, classes, train, val, compress, label_noise, known_noise=0.0):
    g = f[name]
    images, labels, split = g["images"], g["labels"][...], g["split"][...]
    check(images.shape == (count, channels, size, size), f"/{name}/images shape {images.shape}")
    check(images.dtype == np.float32, f"/{name}/images dtype {images.dtype}")
    check(images.chunks == (1, channels, size, size), f"/{name}/images chunks {images.chunks}")
    check((images.compression == "gzip") == (compress > 0), f"/{name}/images compression {images.compression}")
    check(labels.dtype == np.int32 and labels.shape == (count,), f"/{name}/labels {labels.dtype} {labels.shape}")
    check(split.dtype == np.uint8 and split.shape == (count,), f"/{name}/split {split.dtype} {split.shape}")
    names = [s.decode() for s in g["classes"][...]]
    check(len(names) == classes and len(set(names)) == classes, f"/{name}/classes {names}")
    check(len(g["bands"]) == channels, f"/{name}/bands has {len(g['bands'])} names")
    check(g.attrs["count"] == count and g.attrs["channels"] == channels, f"/{name} attrs")

    # Sample i shows scene class i mod K; label noise relabels some, splits follow the scene class.
    scene = np.arange(count) % classes
    flipped = int((labels != scene).sum())
    check(g.attrs["labels_flipped"] == flipped, f"/{name} labels_flipped {g.attrs['labels_flipped']}, counted {flipped}")
    if known_noise > 0:  # -synth_rgb_label_noise: the training and validation labels only, the test split true
        check((labels[split == 2] == scene[split == 2]).all(), f"/{name} test labels flipped")
        known = int((split != 2).sum())
        sigma = math.sqrt(known * known_noise * (1 - known_noise)) + 1e-9
        check(abs(flipped - known * known_noise) <= 5 * sigma,
              f"/{name} {flipped} flipped labels of {known} training and validation ones for p={known_noise}")
    else:
        sigma = math.sqrt(count * label_noise * (1 - label_noise)) + 1e-9
        check(abs(flipped - count * label_noise) <= 5 * sigma, f"/{name} {flipped} flipped labels for p={label_noise}")
    check(((labels >= 0) & (labels < classes)).all(), f"/{name} labels outside 0..{classes - 1}")
    for k in range(classes):
        n = count // classes + (1 if k < count % classes else 0)
        members = split[scene == k]
        check(len(members) == n, f"/{name} class {k} has {len(members)} samples, want {n}")
        n_train = rounded(train * n)
        n_val = min(n - n_train, rounded(val * n))
        got = [int((members == s).sum()) for s in (0, 1, 2)]
        check(got == [n_train, n_val, n - n_train - n_val], f"/{name} class {k} split {got}")

    pixels = images[...]
    check(np.isfinite(pixels).all(), f"/{name} has non-finite pixels")
    if name == "rgb":
        check(pixels.min() >= 0.0 and pixels.max() <= 1.0, f"/rgb range {pixels.min()} {pixels.max()}")
    # Statistics over the training split, recomputed in float64 by numpy.
    x = pixels[split == 0].astype(np.float64).transpose(1, 0, 2, 3).reshape(channels, -1)
    for key, ref in (("band_mean", x.mean(1)), ("band_std", x.std(1)), ("band_min", x.min(1)), ("band_max", x.max(1))):
        got = g[key][...]
        err = np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12))
        check(err < 1e-9, f"/{name}/{key} differs from numpy by {err:.3g} (relative)")
    return names


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("file")
    p.add_argument("--ms-count", type=int, required=True)
    p.add_argument("--rgb-count", type=int, required=True)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--bands", type=int, default=10)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--overlap", type=float, default=0.7)
    p.add_argument("--train", type=float, default=0.7)
    p.add_argument("--val", type=float, default=0.15)
    p.add_argument("--compress", type=int, default=1)
    p.add_argument("--label-noise", type=float, default=0.0)
    p.add_argument("--rgb-label-noise", type=float, default=0.0)
    a = p.parse_args()

    with h5py.File(a.file, "r") as f:
        check(f.attrs["ackd_format"] == "dataset", f"ackd_format {f.attrs.get('ackd_format')}")
        check(f.attrs["ackd_format_version"] == 1, "format version")
        common = (a.classes, a.train, a.val, a.compress, a.label_noise)
        ms = check_collection(f, "ms", a.ms_count, a.bands, a.size, *common)
        rgb = check_collection(f, "rgb", a.rgb_count, 3, a.size, *common, known_noise=a.rgb_label_noise)
        shared = rounded(a.overlap * a.classes)
        m2r, r2m = f["class_map/ms_to_rgb"][...], f["class_map/rgb_to_ms"][...]
        check(int((m2r >= 0).sum()) == shared, f"class map shares {(m2r >= 0).sum()} classes, want {shared}")
        check(f["class_map"].attrs["shared"] == shared, "class_map.attrs['shared']")
        for i, j in enumerate(m2r):
            check(j < 0 or (rgb[j] == ms[i] and r2m[j] == i), f"class map entry {i}->{j}")
        check(set(ms) & set(rgb) == {ms[i] for i in range(len(ms)) if m2r[i] >= 0}, "class map matches names")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
