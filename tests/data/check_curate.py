#!/usr/bin/python3
"""Checks a dataset written by `ackd curate` from the folders of
make_image_folders.py, independently of ackd: which files were kept, skipped
and flagged, pixel values against the source arrays (and against GDAL's own
bilinear decode for resized JPEGs), normalisation against numpy, the class map
and the k-fold splits.

  check_curate.py FIXTURES FILE --normalize none|image_max|band_standardize
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("check_curate", print_passes=False)
MS_BANDS = [1, 2, 3, 4, 5, 6, 7, 10, 11, 12]
RGB_SIZE = 16


def gdal_bilinear(path, size):
    """What GDAL itself decodes for `path` resampled to size x size, band-sequential float32."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "x.raw")
        subprocess.run(["gdal_translate", "-q", "-of", "ENVI", "-co", "INTERLEAVE=BSQ", "-ot", "Float32", "-r",
                        "bilinear", "-outsize", str(size), str(size), path, out], check=True)
        return np.fromfile(out, dtype=np.float32).reshape(-1, size, size)


def expected_files(root, classes, skip):
    files, labels = [], []
    for k, cls in enumerate(classes):
        d = os.path.join(root, cls)
        for name in sorted(os.listdir(d)):
            if name.rsplit(".", 1)[-1].lower() in ("tif", "tiff", "png", "jpg", "jpeg") and name not in skip:
                files.append(os.path.join(d, name))
                labels.append(k)
    return files, np.array(labels)


def split_counts(n, folds, train, val):
    """(train, val, test) sizes of one class: the k-fold's first fold validates, or fractions."""
    if folds >= 2:
        v = sum(1 for p in range(n) if p * folds // n == 0)
        return [n - v, v, 0]
    t = int(np.floor(train * n + 0.5))
    v = min(n - t, int(np.floor(val * n + 0.5)))
    return [t, v, n - t - v]


def check_collection(g, fixtures, files, labels, sources, normalize, a, resized_jpeg):
    x, lab, split = g["images"][...], g["labels"][...], g["split"][...]
    check(len(x) == len(files), f"{g.name}: {len(x)} samples, expected {len(files)}: {files}")
    if len(x) != len(files):
        return
    check((lab == labels).all(), f"{g.name}/labels {lab} != {labels}")
    for k in np.unique(labels):
        n = int((labels == k).sum())
        got = [int((split[labels == k] == s).sum()) for s in (0, 1, 2)]
        train, val = (a.rgb_train, a.rgb_val) if g.name == "/rgb" else (a.train, a.val)
        check(got == split_counts(n, a.folds, train, val), f"{g.name} class {k} split sizes {got}")
    raw = []
    for path in files:
        if path.endswith(".jpg") and resized_jpeg:
            raw.append(gdal_bilinear(path, RGB_SIZE))
        else:
            key = os.path.relpath(path, fixtures).replace("D_zcopy.tif", "D_001.tif")  # the copy has the original's pixels
            src = sources[key]
            raw.append(src[[b - 1 for b in MS_BANDS]] if src.shape[0] == 13 else src)
    raw = np.stack(raw).astype(np.float64)
    if normalize == "none":
        ref = raw
    elif normalize == "image_max":
        ref = (raw / raw.max(axis=(1, 2, 3), keepdims=True) - 0.5) / 0.5
    else:
        train = raw[split == 0].transpose(1, 0, 2, 3).reshape(raw.shape[1], -1)
        mean, std = train.mean(1), train.std(1)
        ref = (raw - mean[None, :, None, None]) / std[None, :, None, None]
        check(np.allclose(g["source_band_mean"][...], mean, rtol=1e-9), f"{g.name}/source_band_mean")
        check(np.allclose(g["source_band_std"][...], std, rtol=1e-9), f"{g.name}/source_band_std")
        check(np.allclose(g["band_mean"][...], 0, atol=1e-6), f"{g.name}/band_mean {g['band_mean'][...]}")
        check(np.allclose(g["band_std"][...], 1, atol=1e-6), f"{g.name}/band_std {g['band_std'][...]}")
    err = np.max(np.abs(x - ref) / np.maximum(np.abs(ref), 1.0))
    check(err < 1e-6, f"{g.name}: pixels differ from the sources by {err:.3g} ({normalize})")
    check(g.attrs["normalization"] == normalize, f"{g.name} normalization attribute")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("fixtures")
    p.add_argument("file")
    p.add_argument("--normalize", default="none")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--train", type=float, default=0.8)
    p.add_argument("--val", type=float, default=0.2)
    p.add_argument("--rgb-train", type=float, help="the RGB collection's own (default: --train)")
    p.add_argument("--rgb-val", type=float, help="the RGB collection's own (default: --val)")
    p.add_argument("--drop-duplicates", action="store_true")
    a = p.parse_args()
    a.rgb_train = a.train if a.rgb_train is None else a.rgb_train
    a.rgb_val = a.val if a.rgb_val is None else a.rgb_val
    sources = dict(np.load(os.path.join(a.fixtures, "sources.npz")))
    ms_root, rgb_root = os.path.join(a.fixtures, "ms"), os.path.join(a.fixtures, "rgb")
    skip = {"A_bad_bands.tif", "B_odd_size.tif", "C_corrupt.tif", "C_truncated.tif"}
    if a.drop_duplicates:
        skip.add("D_zcopy.tif")
    ms_files, ms_labels = expected_files(ms_root, ["A", "B", "C", "D", "E_empty"], skip)
    rgb_files, rgb_labels = expected_files(rgb_root, ["A", "Bee", "X"], {"A_gray.png", "X_corrupt.jpg"})
    with h5py.File(a.file, "r") as f:
        check(f.attrs["ackd_format"] == "dataset" and f.attrs["generator"] == "curate", "root attributes")
        ms, rgb = f["ms"], f["rgb"]
        check([c.decode() for c in ms["classes"][...]] == ["A", "B", "C", "D", "E_empty"], "MS classes")
        check([c.decode() for c in rgb["classes"][...]] == ["A", "Bee", "X"], "RGB classes")
        expect = {"files_found": 29, "skipped_unreadable": 2, "skipped_band_count": 1, "skipped_odd_size": 1,
                  "skipped_not_finite": 0, "duplicates_found": 1, "duplicates_dropped": int(a.drop_duplicates),
                  "empty_class_folders": 1}
        for key, value in expect.items():
            check(ms.attrs[key] == value, f"/ms {key} = {ms.attrs[key]}, expected {value}")
        check(rgb.attrs["skipped_unreadable"] == 1 and rgb.attrs["skipped_band_count"] == 1, "/rgb skip counts")
        check_collection(ms, a.fixtures, ms_files, ms_labels, sources, a.normalize, a, False)
        check_collection(rgb, a.fixtures, rgb_files, rgb_labels, sources, a.normalize, a, True)
        check(list(f["class_map/ms_to_rgb"][...]) == [0, 1, -1, -1, -1], f"ms_to_rgb {f['class_map/ms_to_rgb'][...]}")
        check(list(f["class_map/rgb_to_ms"][...]) == [0, 1, -1], f"rgb_to_ms {f['class_map/rgb_to_ms'][...]}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
