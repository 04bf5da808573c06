#!/usr/bin/python3
"""Builds EuroSAT-style class folders for the curate tests, with GDAL's own
gdal_translate: 13-band uint16 GeoTIFFs (MS) and PNG/JPEG images (RGB), plus
deliberately bad files. The source arrays are saved next to them (sources.npz)
so tests can compare pixels with what went in.

  make_image_folders.py OUT [--ms-per-class N] [--size S]
"""
import argparse
import os
import shutil
import subprocess

import h5py
import numpy as np


def write_raster(path, array, fmt, dtype, extra=()):
    """array: (bands, rows, cols). Written as raw band-sequential + ENVI header, then translated by GDAL
    (`extra`: more gdal_translate arguments, e.g. georeferencing)."""
    bands, rows, cols = array.shape
    raw = path + ".raw"
    array.astype(dtype).tofile(raw)
    envi_type = {"uint8": 1, "uint16": 12}[dtype]
    with open(path + ".hdr", "w") as h:
        h.write(f"ENVI\nsamples = {cols}\nlines = {rows}\nbands = {bands}\nheader offset = 0\n"
                f"file type = ENVI Standard\ndata type = {envi_type}\ninterleave = bsq\nbyte order = 0\n")
    subprocess.run(["gdal_translate", "-q", "-of", fmt, *extra, raw, path], check=True)
    for leftover in (raw, path + ".hdr", path + ".aux.xml"):
        if os.path.exists(leftover):
            os.remove(leftover)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out")
    p.add_argument("--ms-per-class", type=int, default=6)
    p.add_argument("--size", type=int, default=16)
    a = p.parse_args()
    rng = np.random.default_rng(7)
    shutil.rmtree(a.out, ignore_errors=True)
    ms_dir, rgb_dir = os.path.join(a.out, "ms"), os.path.join(a.out, "rgb")
    sources = {}
    S = a.size

    # MS: classes A..D, 13 bands, distinct random reflectances (Sentinel-2 digital numbers).
    for k, cls in enumerate("ABCD"):
        os.makedirs(os.path.join(ms_dir, cls))
        for i in range(a.ms_per_class):
            img = rng.integers(0, 10000, size=(13, S, S)) + 1000 * k
            path = os.path.join(ms_dir, cls, f"{cls}_{i:03d}.tif")
            write_raster(path, img, "GTiff", "uint16")
            sources[os.path.relpath(path, a.out)] = img.astype(np.float32)
    os.makedirs(os.path.join(ms_dir, "E_empty"))  # an empty class folder
    write_raster(os.path.join(ms_dir, "A", "A_bad_bands.tif"), rng.integers(0, 9, size=(12, S, S)), "GTiff", "uint16")
    write_raster(os.path.join(ms_dir, "B", "B_odd_size.tif"), rng.integers(0, 9, size=(13, S + 4, S)), "GTiff", "uint16")
    with open(os.path.join(ms_dir, "C", "C_corrupt.tif"), "wb") as f:
        f.write(b"II*\x00" + bytes(rng.integers(0, 256, size=500, dtype=np.uint8)))
    with open(os.path.join(ms_dir, "C", "C_000.tif"), "rb") as f, open(os.path.join(ms_dir, "C", "C_truncated.tif"), "wb") as t:
        t.write(f.read(300))
    shutil.copy(os.path.join(ms_dir, "D", "D_001.tif"), os.path.join(ms_dir, "D", "D_zcopy.tif"))  # a duplicate
    with open(os.path.join(ms_dir, "A", "notes.txt"), "w") as f:  # not an image: ignored by extension
        f.write("field notes\n")

    # RGB: classes A, Bee (B under another name), X (RGB only); PNG at S x S, JPEG at 24 x 24.
    for cls, fmt, ext, size in (("A", "PNG", "png", S), ("Bee", "PNG", "png", S), ("X", "JPEG", "jpg", 24)):
        os.makedirs(os.path.join(rgb_dir, cls))
        for i in range(5):
            img = rng.integers(0, 256, size=(3, size, size))
            path = os.path.join(rgb_dir, cls, f"{cls}_{i:03d}.{ext}")
            write_raster(path, img, fmt, "uint8")
            sources[os.path.relpath(path, a.out)] = img.astype(np.float32)
    write_raster(os.path.join(rgb_dir, "A", "A_gray.png"), rng.integers(0, 256, size=(1, S, S)), "PNG", "uint8")
    with open(os.path.join(rgb_dir, "X", "X_corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0" + bytes(50))
    # Clean images but an empty class folder: what -curate_strict must refuse on its own.
    for cls in ("P", "Q"):
        os.makedirs(os.path.join(a.out, "ms_clean", cls))
        for i in range(2):
            write_raster(os.path.join(a.out, "ms_clean", cls, f"{i}.tif"), rng.integers(0, 99, size=(4, S, S)), "GTiff",
                         "uint16")
    os.makedirs(os.path.join(a.out, "ms_clean", "R_empty"))
    with open(os.path.join(a.out, "class_map.csv"), "w") as f:
        f.write("# ms_class,rgb_class\nA,A\nB,Bee\nC,\nD,\n,X\n")
    with open(os.path.join(a.out, "class_map_bad.csv"), "w") as f:
        f.write("A,A\nB,Zed\n")
    # Multi-label, as a one-hot table over some of the MS files (one of them corrupt) ...
    rows = ["A/A_000.tif", "A/A_001.tif", "B/B_000.tif", "C/C_corrupt.tif", "C/C_001.tif", "D/D_000.tif",
            "D/D_002.tif", "B/B_003.tif"]
    onehot = rng.integers(0, 2, size=(len(rows), 3))
    with open(os.path.join(a.out, "ms_labels.csv"), "w") as f:
        f.write("path,urban,water,trees\n")
        for r, y in zip(rows, onehot):
            f.write(r + "," + ",".join(str(v) for v in y) + "\n")
    sources["table_rows"] = np.array(rows)
    sources["table_labels"] = onehot
    # ... and as a MATLAB v7.3 file: HDF5 behind a 512-byte user block, arrays column-major, so
    # MATLAB's H x W x C x N msi and N x K label appear here as (N, C, W, H) and (K, N).
    n_mat, k_mat = 12, 4
    msi = rng.random((n_mat, 13, S, S)).astype(np.float32)  # (N, C, H, W)
    msi[5, 2, 3, 4] = np.nan                                 # a sample to skip
    label = rng.integers(0, 2, size=(n_mat, k_mat)).astype(np.float64)
    with h5py.File(os.path.join(a.out, "multilabel.mat"), "w", userblock_size=512) as f:
        f["msi"] = msi.transpose(0, 1, 3, 2)
        f["label"] = label.T
    sources["mat_msi"] = msi
    sources["mat_label"] = label
    # Cover fractions over some of the MS files (one corrupt), rounded to three decimals as a
    # spreadsheet would write them; one row ties its two largest shares. And two bad tables.
    rows = ["A/A_000.tif", "B/B_001.tif", "C/C_corrupt.tif", "C/C_002.tif", "D/D_000.tif", "D/D_003.tif",
            "A/A_004.tif"]
    shares = np.round(rng.dirichlet((1.0, 0.5, 0.5), size=len(rows)), 3)
    shares[:, 2] = np.round(1 - shares[:, 0] - shares[:, 1], 3)
    shares[3] = (0.4, 0.4, 0.2)
    with open(os.path.join(a.out, "ms_fractions.csv"), "w") as f:
        f.write("path,urban,water,trees\n")
        for r, y in zip(rows, shares):
            f.write(r + "," + ",".join(f"{v:.3f}" for v in y) + "\n")
    with open(os.path.join(a.out, "ms_fractions_short.csv"), "w") as f:
        f.write("path,urban,water,trees\nA/A_000.tif,0.5,0.2,0.1\n")
    with open(os.path.join(a.out, "ms_fractions_text.csv"), "w") as f:
        f.write("path,urban,water,trees\nA/A_000.tif,0.5,half,0.25\n")
    sources["fraction_rows"] = np.array(rows)
    sources["fraction_table"] = shares
    np.savez(os.path.join(a.out, "sources.npz"), **{k: v for k, v in sources.items()})


if __name__ == "__main__":
    main()
