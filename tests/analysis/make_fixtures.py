#!/usr/bin/python3
"""Fixture files for the analysis tests, written with h5py exactly as docs/FORMATS.md describes
them, until ackd train / distill / eval write the real ones. Every number is a function of the
seed; expected.json records, computed from the raw labels and predictions, what the scripts must
report (OA per eval file, per method and pair).
    make_fixtures.py DIR"""
import json
import os
import sys

import h5py
import numpy as np

PAIRS = ["R/R", "M/M", "S/S", "R/M", "R/S", "M/S"]
ARCH = {"R": "resnet34", "M": "mobilenetv2", "S": "shufflenetv2"}
CLASSES = ["annual_crop", "forest", "river", "highway", "residential"]


def root_attrs(f, kind):
    f.attrs["ackd_format"] = kind
    f.attrs["ackd_format_version"] = 1


def metrics(path, epochs, rng, extra=()):
    e = np.arange(1, epochs + 1, dtype=np.float64)
    val_oa = 0.9 - 0.6 * np.exp(-e / 4) + 0.01 * rng.standard_normal(epochs)
    with h5py.File(path, "w") as f:
        root_attrs(f, "metrics")
        f["epoch"], f["step"], f["lr"] = e, 50 * e, 1e-3 * 0.5 * (1 + np.cos(np.pi * e / epochs))
        f["train_loss"], f["val_loss"] = 2.0 * np.exp(-e / 5), 2.1 * np.exp(-e / 6)
        f["train_accuracy"], f["val_oa"], f["seconds"] = 1 - 0.8 * np.exp(-e / 4), val_oa, np.full(epochs, 3.5)
        for name in extra:
            f[name] = np.exp(-e / 3) * (1 + 0.1 * len(name))
        f.attrs["stage"], f.attrs["role"] = "train", os.path.basename(os.path.dirname(path))
        f.attrs["architecture"] = "resnet34"
        f.attrs["best_epoch"], f.attrs["best_score"] = int(e[np.argmax(val_oa)]), float(val_oa.max())
        f.attrs["score"] = "val_oa"


def evaluation(path, rng, accuracy, attrs=None):
    n, k = 200, len(CLASSES)
    labels = rng.integers(0, k, n)
    wrong = rng.random(n) > accuracy
    pred = np.where(wrong, (labels + rng.integers(1, k, n)) % k, labels)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (labels, pred), 1)
    count = conf.sum(axis=1)
    with h5py.File(path, "w") as f:
        root_attrs(f, "eval")
        f.attrs.update({"checkpoint": "best.h5", "data": "synth.h5", "modality": "rgb", "split": "test",
                        "count": n, "architecture": "mobilenetv2", "multilabel": 0,
                        "oa": float(np.trace(conf) / n),
                        "mean_class_accuracy": float(np.mean(np.diag(conf) / np.maximum(count, 1)))})
        f.attrs.update(attrs or {})
        f["confusion"] = conf
        f["per_class_accuracy"] = np.diag(conf) / np.maximum(count, 1)
        f["per_class_count"] = count
        f["classes"] = np.array(CLASSES, dtype=h5py.string_dtype())
        f["prediction"] = pred.astype(np.int32)
        f["index"] = np.arange(n, dtype=np.int64)
    return float(np.mean(pred == labels)), labels, pred


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(8)
    expected = {"table": {}}
    for d in ("teacher", "student_kd", "eval_single", "sweep"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    metrics(os.path.join(out, "teacher/metrics.h5"), 12, rng)
    metrics(os.path.join(out, "student_kd/metrics.h5"), 12, rng, extra=("loss_ce", "loss_kd", "loss_ska"))
    oa, labels, pred = evaluation(os.path.join(out, "eval_single/eval_test.h5"), rng, 0.8)
    expected["single"] = {"oa": oa, "confusion_pairs": int(np.sum(labels != pred))}
    for m, base in (("none", 0.6), ("kd", 0.7), ("dkd+sembridge", 0.8)):
        for p in PAIRS:
            if (m, p) == ("kd", "S/S"):
                continue  # a missing cell, shown as a dash
            run = os.path.join(out, "sweep", f"{m}_{p.replace('/', '')}")
            os.makedirs(run, exist_ok=True)
            acc, labels, pred = evaluation(os.path.join(run, "eval_test.h5"), rng, base + 0.15 * rng.random())
            expected["table"][f"{m}|{p}"] = acc
            evaluation(os.path.join(run, "eval_val.h5"), rng, 0.5)  # another split: must be ignored
    # a result named by its attributes, in a directory whose name says nothing
    os.makedirs(os.path.join(out, "sweep", "misc"), exist_ok=True)
    acc, _, _ = evaluation(os.path.join(out, "sweep/misc/eval_test.h5"), rng, 0.75, {"method": "at", "pair": "R/S"})
    expected["table"]["at|R/S"] = acc
    json.dump(expected, open(os.path.join(out, "expected.json"), "w"), indent=1)
    print(f"fixtures in {out}")


if __name__ == "__main__":
    main()
