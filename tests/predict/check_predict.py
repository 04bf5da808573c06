#!/usr/bin/python3
"""ackd predict end to end, each number against a second path.

A dataset is curated from 13-band GeoTIFF class folders (five of the bands,
standardised), a small teacher trained on it, and a georeferenced scene tiled
from the same images (make_scene.py). Then:

  folder  predict on the class folders: its logits equal ackd eval's on the same
          images (curate's decoding and normalisation, redone by predict); the
          CSV agrees with the HDF5 file; unreadable and short-banded files are
          reported, not fatal.
  scene   windows on the tile grid: each window's logits equal the folder
          prediction of the image tiled there; the class map takes its class
          over the tile; nodata stays nodata; gdalinfo reads the scene's grid,
          CRS, colour table and class names back.
          overlapping windows: the class map and the probability raster equal a
          NumPy recomposition of the windows file; the same map on 1, 2 and 4
          ranks; a run stopped by SIGTERM continues to the same outputs.
  errors  one line naming the fault and the fix.

  check_predict.py --repo REPO --ackd ACKD --mpirun "mpirun --oversubscribe -n" --out DIR
"""
import argparse
import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np
from osgeo import gdal

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/
import checklib

LOGIT_TOL = 1e-5  # float32 logits of the same inputs through batches of other sizes


def gdal_json(path):
    return json.loads(subprocess.run(["gdalinfo", "-json", path], capture_output=True, text=True, check=True).stdout)


def read_band_stack(path):
    """All bands of a raster (bands, rows, cols), read by GDAL."""
    ds = gdal.Open(str(path))
    return np.stack([ds.GetRasterBand(b + 1).ReadAsArray() for b in range(ds.RasterCount)])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repo", required=True)
    p.add_argument("--ackd", required=True)
    p.add_argument("--mpirun", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    out = pathlib.Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    launcher = a.mpirun.split()
    check = checklib.Checks("predict")

    def ackd(ranks, *args, expect=0):
        return checklib.run_ackd(launcher, ranks, a.ackd, [str(x) for x in args], expect)

    fx = out / "fx"
    checklib.run_or_exit([sys.executable, str(pathlib.Path(__file__).with_name("make_scene.py")), str(fx)])
    truth = np.load(fx / "scene_truth.npz")
    classes = [str(c) for c in truth["classes"]]
    K, S = len(classes), int(truth["size"])
    data, ckpt = fx / "data.h5", fx / "t" / "best.h5"
    ackd(2, "curate", "-curate_ms_dir", fx / "ms", "-curate_ms_bands", "2,3,4,8,11", "-curate_normalize",
         "band_standardize", "-curate_folds", 0, "-curate_train", 0.6, "-curate_val", 0.2, "-curate_output", data,
         "-quiet")
    ackd(2, "train", "-train_data", data, "-train_dir", fx / "t", "-teacher_arch", "mlp", "-teacher_width", 0.25,
         "-train_epochs", 8, "-quiet")

    # ---------------------------------------------------------------- folder
    folder = out / "folder" / "pred.h5"
    ackd(2, "predict", "-predict_checkpoint", ckpt, "-predict_input", fx / "ms", "-predict_output", folder,
         "-predict_batch", 5, "-quiet")
    with h5py.File(folder) as f:
        paths = [s.decode() for s in f["path"][:]]
        logits, prob, pred, status = f["logits"][:], f["probability"][:], f["prediction"][:], f["status"][:]
        check(f.attrs["ackd_format"] == "predictions" and [c.decode() for c in f["classes"][:]] == classes,
              "the predictions file names its format and the classes")
    check(len(paths) == 48 and paths == sorted(paths) and (status == 0).all(), "48 images, sorted, all classified")
    eval_logits = np.full((len(paths), K), np.nan)
    for split in ("train", "val", "test"):
        ev = out / "folder" / f"eval_{split}.h5"
        ackd(2, "eval", "-eval_checkpoint", ckpt, "-eval_split", split, "-eval_output", ev, "-quiet")
        with h5py.File(ev) as f:
            eval_logits[f["index"][:]] = f["logits"][:]
    # curate keeps images sorted by class folder, then name: dataset row i is the i-th path here
    checklib.compare(check, "folder logits vs ackd eval's on the dataset", logits, eval_logits, LOGIT_TOL)
    check(np.allclose(prob.sum(1), 1, atol=1e-5) and (pred == prob.argmax(1)).all(),
          "probabilities are a softmax and the prediction its argmax")
    with open(folder.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    check([r["path"] for r in rows] == paths and all(r["class"] == classes[c] for r, c in zip(rows, pred)),
          "the CSV lists every image with its class")
    check(np.allclose([[float(r["p_" + c]) for c in classes] for r in rows], prob, atol=1e-6),
          "the CSV's probabilities are the HDF5 file's")

    # -predict_precision bf16 rounds the convolutions' operands; this MLP has none, so the logits stay
    # float32's to the bit, and the file says which arithmetic ran.
    bf16 = out / "folder" / "pred_bf16.h5"
    if checklib.cpu_has_bf16():
        ackd(2, "predict", "-predict_checkpoint", ckpt, "-predict_input", fx / "ms", "-predict_output", bf16,
             "-predict_batch", 5, "-predict_precision", "bf16", "-quiet")
        with h5py.File(bf16) as f, h5py.File(folder) as g:
            check(f.attrs["precision"] == "bf16" and g.attrs["precision"] == "fp32"
                  and np.array_equal(f["logits"][:], logits), "bf16 predictions: recorded, and an MLP's unchanged")
    else:
        proc = ackd(2, "predict", "-predict_checkpoint", ckpt, "-predict_input", fx / "ms", "-predict_output", bf16,
                    "-predict_precision", "bf16", "-quiet", expect=2)
        check("use -predict_precision fp32" in proc.stderr, "without bf16 instructions -predict_precision bf16 is refused")

    messy = out / "messy"
    (messy / "sub").mkdir(parents=True)
    shutil.copy(fx / "ms" / "water" / "water_000.tif", messy / "sub" / "a.tif")
    (messy / "b.tif").write_bytes(b"II*\x00" + bytes(200))
    subprocess.run(["gdal_translate", "-q", "-b", "1", "-b", "2", "-b", "3", str(fx / "ms" / "water" / "water_001.tif"),
                    str(messy / "c.tif")], check=True)
    (messy / "notes.txt").write_text("not an image\n")
    ackd(1, "predict", "-predict_checkpoint", ckpt, "-predict_input", messy, "-predict_output", messy / "p.h5",
         "-quiet")
    with h5py.File(messy / "p.h5") as f:
        got = dict(zip((s.decode() for s in f["path"][:]), zip(f["status"][:], f["prediction"][:])))
    check(set(got) == {"b.tif", "c.tif", "sub/a.tif"}, f"recursive scan by extension: {sorted(got)}")
    check(got.get("b.tif", (0,))[0] == 1 and got.get("c.tif", (0,))[0] == 2 and got["b.tif"][1] == -1,
          f"a corrupt file is 'unreadable', a 3-band one 'band_count', neither predicted: {got}")
    check(got.get("sub/a.tif", (1,))[0] == 0, "the good file beside them is classified")

    # ---------------------------------------------------------------- scene, windows on the tile grid
    tiles = out / "tiles"
    ackd(2, "predict", "-predict_checkpoint", ckpt, "-predict_input", fx / "scene.tif", "-predict_output",
         tiles / "map.tif", "-predict_stride", S, "-predict_batch", 3, "-quiet")
    with h5py.File(tiles / "map.h5") as f:
        origin, wlogits, wstatus = f["origin"][:], f["logits"][:], f["status"][:]
        check(f.attrs["patch"] == S and f.attrs["stride"] == S, "the windows file records patch and stride")
    cmap = read_band_stack(str(tiles / "map.tif"))[0]
    gy, gx = truth["tile_class"].shape
    check(len(origin) == gx * gy and {tuple(o) for o in origin} ==
          {(x * S, y * S) for y in range(gy) for x in range(gx)}, "one window per tile")
    by_path = dict(zip(paths, logits))
    nodata_rows = truth["nodata_rows"]
    full = [w for w, (x, y) in enumerate(origin) if y + S <= nodata_rows[0]]
    ref = np.array([by_path[str(truth["tile_file"][(y // S) * gx + x // S])] for x, y in origin[full]])
    checklib.compare(check, "scene window logits vs the folder logits of the tiled image", wlogits[full], ref,
                     LOGIT_TOL)
    agree = all((cmap[y:y + S, x:x + S] == wlogits[w].argmax()).all() for w, (x, y) in zip(full, origin[full]))
    check(agree, "each tile of the class map holds its window's class")
    check((cmap[nodata_rows] == 255).all(), "nodata rows of the scene are nodata (255) in the map")
    truth_map = np.kron(truth["tile_class"], np.ones((S, S), np.int32))
    hit = (cmap == truth_map)[:nodata_rows[0]].mean()
    check(hit >= 0.9, f"the map finds the tiles' true classes ({100 * hit:.1f}% of the valid pixels; the classes' "
          "spectra are far apart, so a trained model gets nearly all)")
    check((wstatus == 0).all(), "a window half nodata is still classified at -predict_min_valid 0.5")
    ackd(2, "predict", "-predict_checkpoint", ckpt, "-predict_input", fx / "scene.tif", "-predict_output",
         tiles / "strict.tif", "-predict_stride", S, "-predict_min_valid", 0.6, "-quiet")
    with h5py.File(tiles / "strict.h5") as f:
        skipped = f["status"][:] == 8
    strict = read_band_stack(str(tiles / "strict.tif"))[0]
    check(skipped.sum() == gx and (strict[(gy - 1) * S:] == 255).all(),
          "at -predict_min_valid 0.6 the half-nodata windows are skipped and their pixels left nodata")

    info, scene_info = gdal_json(str(tiles / "map.tif")), gdal_json(str(fx / "scene.tif"))
    check(np.allclose(info["geoTransform"], truth["geotransform"]) and info["geoTransform"] == scene_info["geoTransform"],
          f"the map has the scene's geotransform: {info.get('geoTransform')}")
    check(f'ID["EPSG",{int(truth["epsg"])}]' in info["coordinateSystem"]["wkt"],
          "the map has the scene's CRS (EPSG:32632)")
    band = info["bands"][0]
    check(band.get("noDataValue") == 255 and band.get("colorInterpretation") == "Palette",
          "byte class map with nodata 255 and a palette")
    check(band.get("categories", [])[:K] == classes, f"class names as categories: {band.get('categories', [])[:K]}")
    colours = [tuple(e) for e in band.get("colorTable", {}).get("entries", [])[:K]]
    check(len(set(colours)) == K, "a distinct colour per class")

    # ---------------------------------------------------------------- overlapping windows, ranks, resume
    maps = {}
    for ranks in (1, 2, 4):
        d = out / f"overlap_np{ranks}"
        ackd(ranks, "predict", "-predict_checkpoint", ckpt, "-predict_input", fx / "scene.tif", "-predict_output",
             d / "map.tif", "-predict_probabilities", d / "prob.tif", "-predict_batch", 4, "-quiet")
        maps[ranks] = (read_band_stack(str(d / "map.tif"))[0], read_band_stack(str(d / "prob.tif")), d / "map.h5")
    cmap, pmap, windows = maps[2]
    with h5py.File(windows) as f:
        origin, wprob, wstatus = f["origin"][:], f["probability"][:], f["status"][:]
    H, W = cmap.shape
    scene = read_band_stack(str(fx / "scene.tif"))[[1, 2, 3, 7, 10]]
    valid = (scene != 0).all(0)
    acc, votes = np.zeros((K, H, W)), np.zeros((H, W))
    for (x, y), q, s in zip(origin, wprob, wstatus):
        if s == 0:
            acc[:, y:y + S, x:x + S] += q[:, None, None]
            votes[y:y + S, x:x + S] += 1
    covered = valid & (votes > 0)
    mean = np.where(covered, acc / np.maximum(votes, 1), np.nan)
    expect = np.where(covered, np.nan_to_num(mean, nan=-1).argmax(0), 255)
    top2 = np.sort(np.nan_to_num(mean, nan=0), axis=0)[-2:]
    clear = ~covered | (top2[1] - top2[0] > 1e-5)
    check(len(origin) == 9 * 7, f"stride 8 over 80 x 64: 9 x 7 windows, got {len(origin)}")
    check((cmap[clear] == expect[clear]).all(), "the class map is the argmax of the windows' mean probabilities")
    check(np.array_equal(np.isnan(pmap), np.isnan(mean)) and
          np.nanmax(np.abs(pmap - mean)) < 1e-6, "the probability raster is that mean, NaN where nodata")
    prob_info = gdal_json(str(out / "overlap_np2" / "prob.tif"))
    check([b.get("description") for b in prob_info["bands"]] == classes, "probability bands are named after classes")
    for ranks in (1, 4):
        check(np.array_equal(maps[ranks][0][clear], cmap[clear]) and np.nanmax(np.abs(maps[ranks][1] - pmap)) < 1e-5,
              f"the same map on {ranks} and 2 ranks")

    d = out / "resume"
    args = ["predict", "-predict_checkpoint", ckpt, "-predict_input", fx / "scene.tif", "-predict_output",
            d / "map.tif", "-predict_probabilities", d / "prob.tif", "-predict_batch", 4, "-quiet"]
    ackd(2, *args, "-predict_debug_signal_after", 1, expect=75)
    journal = d / "map.tif.journal.h5"
    with h5py.File(journal) as f:
        done = int(f.attrs["done"])
    check(done == 32 and not (d / "map.tif").exists(),
          f"stopped after one round of 4 x 4 x 2 windows ({done}), no map yet")
    ackd(2, *args)
    check(not journal.exists(), "the journal is gone once the outputs are written")
    check(np.array_equal(read_band_stack(str(d / "map.tif"))[0], cmap) and
          np.array_equal(read_band_stack(str(d / "prob.tif")), pmap, equal_nan=True),
          "the continued run writes the uninterrupted run's maps")

    # ---------------------------------------------------------------- errors
    def refused(message, *args, ranks=None):
        """ranks None: one process without mpirun, which ends at once; under mpirun a failed rank costs
        Open MPI's teardown (odls_base_sigkill_timeout, 1 s twice), which no refusal here needs."""
        command = [a.ackd, "predict", "-quiet", *map(str, args)]
        env = dict(os.environ, OMPI_MCA_odls_base_sigkill_timeout="0")
        proc = subprocess.run(launcher + [str(ranks)] + command if ranks else command, capture_output=True,
                              text=True, env=env)
        check(proc.returncode != 0 and message in proc.stderr,
              f"refused with '{message}': exit {proc.returncode}, {proc.stderr.strip()[-300:]}")

    base = ["-predict_checkpoint", ckpt, "-predict_output", out / "err" / "x.tif"]
    refused("has 13 bands, but the model reads band 14", *base, "-predict_input", fx / "scene.tif",
            "-predict_bands", "2,3,4,8,14", ranks=2)
    refused("option -predict_bands lists 3 bands, but the model takes 5", *base, "-predict_input",
            fx / "scene.tif", "-predict_bands", "1,2,3")
    refused("option -predict_input: 'nope.tif' does not exist", *base, "-predict_input", "nope.tif")
    refused("is larger than the patch", *base, "-predict_input", fx / "scene.tif", "-predict_stride", 40)
    refused("is smaller than one window of 100 pixels", *base, "-predict_input", fx / "scene.tif", "-predict_patch",
            100)
    refused("cannot read scene", *base, "-predict_input", messy / "b.tif")
    refused("predict writes the windows file beside it under that very name", "-predict_checkpoint", ckpt,
            "-predict_input", fx / "scene.tif", "-predict_output", out / "err" / "map.h5")
    other = out / "err" / "other.h5"
    checklib.run_or_exit([a.ackd, "synth", "-synth_output", str(other), "-synth_ms_count", "40", "-synth_rgb_count", "40",
                          "-synth_size", "8", "-quiet"])
    refused("takes 5 bands and 4 classes, but /ms in", *base, "-predict_input", fx / "scene.tif", "-predict_data",
            other)
    refused("unknown option -predict_strid", *base, "-predict_input", fx / "scene.tif", "-predict_strid", 4)
    check(not (out / "err" / "x.tif").exists(), "no map left behind by a refused run")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
