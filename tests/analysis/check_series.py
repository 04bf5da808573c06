#!/usr/bin/python3
"""The checkpoint-series scripts on real distill runs (the distill fixture's data, teacher gallery
and matching): A = KD with SemBridge and DynM re-matching at epochs 1 and 2, B = plain KD, same
seed, 3 epochs, a checkpoint per epoch, all kept. Each number is held against a second path:

  ckpt_eval.py   OA and loss of every checkpoint on the val split (ackd eval of the files) against
                 the val_oa and val_loss that training recorded at the same steps;
  ckpt_dynm.py   distinct top-1 teachers, largest hub and share changed against the statistics DynM
                 recorded at each epoch; B's matching never changes;
  ckpt_drift.py  the Adam moments' slices (parameter_order_model) cover the moments exactly; every
                 step's update is within Adam's bound lr (1 - b1) / sqrt(1 - b2) (Kingma and Ba);
  runs_diff.py   per-epoch differences against both metrics files, per-class accuracy differences
                 against both confusion matrices, McNemar's discordant counts against predictions.

  check_series.py --repo DIR --ackd ACKD --mpirun "mpirun --oversubscribe -n" --fixture DIR --out DIR"""
import argparse
import csv
import os
import shlex
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("series")
LR = 2e-3


def script(args, name, *words):
    r = subprocess.run(["/usr/bin/python3", os.path.join(args.repo, "analysis", name), *words], capture_output=True,
                       text=True)
    check(r.returncode == 0, f"{name} {' '.join(os.path.basename(w) for w in words[:1])}: exit {r.returncode} "
          f"{r.stderr.strip()[-400:]}")
    return r


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def distill(args, directory, extra):
    f = args.fixture
    command = shlex.split(args.mpirun) + ["2", args.ackd, "distill", "-distill_data", os.path.join(f, "data.h5"),
                                          "-distill_gallery", os.path.join(f, "teacher", "gallery.h5"),
                                          "-distill_match", os.path.join(f, "match.h5"), "-distill_dir", directory,
                                          "-student_arch", "smallcnn", "-student_width", "0.5", "-distill_batch", "48",
                                          "-distill_seed", "5", "-distill_epochs", "3", "-distill_lr", str(LR),
                                          "-distill_ckpt_keep", "10", "-quiet", *extra]
    checklib.run_or_exit(command, what=f"distill {' '.join(extra)}")
    checklib.run_or_exit(shlex.split(args.mpirun) + ["2", args.ackd, "eval", "-eval_checkpoint",
                                                     os.path.join(directory, "best.h5"), "-quiet"], what="eval")


def metrics(directory):
    with h5py.File(os.path.join(directory, "metrics.h5"), "r") as m:
        return {k: m[k][...] for k in m}


def main():
    p = argparse.ArgumentParser()
    for name in ("repo", "ackd", "mpirun", "fixture", "out"):
        p.add_argument("--" + name, required=True)
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    a, b = os.path.join(args.out, "kd_sembridge"), os.path.join(args.out, "kd")
    distill(args, a, ["-kd_method", "kd", "-sembridge", "-dynm_e0", "1", "-dynm_delta", "1", "-dynm_growth", "0"])
    distill(args, b, ["-kd_method", "kd", "-sembridge", "false"])
    ma, mb = metrics(a), metrics(b)
    step_epoch = {int(s): e for e, s in enumerate(ma["step"])}

    out = lambda name: os.path.join(args.out, name)
    script(args, "ckpt_eval.py", a, "--mpirun", args.mpirun.removesuffix(" -n").removesuffix(" -np"), "--ackd",
           args.ackd, "-o", out("eval.png"), "--csv", out("eval.csv"))
    rows = rows_of(out("eval.csv"))
    check(len(rows) == 3, f"ckpt_eval: 3 checkpoints scored ({len(rows)})")
    for r in rows:
        e = step_epoch[int(r["step"])]
        oa, loss = float(r["val_oa"]), float(r["val_loss"])
        check(oa == ma["val_oa"][e] and abs(loss - ma["val_loss"][e]) <= 1e-5 * ma["val_loss"][e],
              f"ckpt_eval step {r['step']}: OA {oa:.4f}, loss {loss:.5f} = training's {ma['val_oa'][e]:.4f}, "
              f"{ma['val_loss'][e]:.5f}")

    script(args, "ckpt_dynm.py", a, "-o", out("dynm.png"), "--csv", out("dynm.csv"), "--classes-csv",
           out("dynm_classes.csv"))
    for r in rows_of(out("dynm.csv")):
        e = step_epoch[int(r["step"])]
        recorded = (ma["dynm_distinct_teachers"][e], ma["dynm_largest_hub"][e])
        check((int(r["distinct_top1_teachers"]), int(r["largest_hub"])) == recorded,
              f"ckpt_dynm step {r['step']}: {r['distinct_top1_teachers']} distinct, hub {r['largest_hub']} = "
              f"DynM's {recorded}")
        if e > 0:
            check(abs(float(r["changed_share"]) - ma["dynm_changed"][e]) <= 1e-12,
                  f"ckpt_dynm step {r['step']}: changed {float(r['changed_share']):.4f} = DynM's "
                  f"{ma['dynm_changed'][e]:.4f}")
    check(len(rows_of(out("dynm_classes.csv"))) > 0, "ckpt_dynm: per-class shares where the matching changed")
    script(args, "ckpt_dynm.py", b, "-o", out("dynm_b.png"), "--csv", out("dynm_b.csv"))
    check(all(float(r["changed_share"]) == 0 for r in rows_of(out("dynm_b.csv"))[1:]),
          "ckpt_dynm: plain KD keeps its matching")

    script(args, "ckpt_drift.py", a, "-o", out("drift.png"), "--csv", out("drift.csv"))
    drift = rows_of(out("drift.csv"))
    with h5py.File(os.path.join(a, "best.h5"), "r") as f:
        trainable = len(f.attrs["parameter_order_model"].split())
    steps = sorted({int(r["step"]) for r in drift})
    check(len(drift) == 3 * trainable, f"ckpt_drift: {trainable} trainable tensors x 3 checkpoints")
    bound = checklib.adam_step_bound(LR)
    for previous, step in zip(steps, steps[1:]):
        worst = 0.0
        with h5py.File(os.path.join(a, "checkpoints", f"ckpt_{previous:012d}.h5"), "r") as f0, \
                h5py.File(os.path.join(a, "checkpoints", f"ckpt_{step:012d}.h5"), "r") as f1:
            for name in f1.attrs["parameter_order_model"].split():
                layer, _, tensor = name.rpartition(".")
                key = f"model/{layer}/{tensor}"
                worst = max(worst, float(np.abs(f1[key][...] - f0[key][...]).max()))
            updates = int(f1.attrs["optimizer_steps_model"]) - int(f0.attrs["optimizer_steps_model"])
        check(worst <= updates * bound, f"Adam between steps {previous} and {step}: largest change {worst:.2e} <= "
              f"{updates} x {bound:.2e}")

    script(args, "runs_diff.py", a, b, "-o", out("diff.png"), "--csv", out("diff.csv"))
    with open(out("diff.csv")) as f:
        epochs_part, _, classes_part = f.read().partition("\n\n")
    epoch_rows = list(csv.DictReader(epochs_part.splitlines()))
    check(all(abs(float(r["val_oa_b_minus_a"]) - (mb["val_oa"][i] - ma["val_oa"][i])) <= 1e-12
              for i, r in enumerate(epoch_rows)) and len(epoch_rows) == 3,
          "runs_diff: val OA per epoch, B - A, from both metrics files")
    ea, eb = (h5py.File(os.path.join(d, "eval_test.h5"), "r") for d in (a, b))
    acc = lambda e: np.diag(e["confusion"][...]) / np.maximum(e["confusion"][...].sum(1), 1)
    class_rows = list(csv.DictReader(classes_part.splitlines()))
    present = ea["confusion"][...].sum(1) > 0
    check(np.allclose([float(r["b_minus_a"]) for r in class_rows][:present.size], np.where(
        present, acc(eb) - acc(ea), np.nan), equal_nan=True), "runs_diff: per-class accuracy, B - A, from the "
          "confusion matrices")
    with h5py.File(os.path.join(args.fixture, "data.h5"), "r") as f:
        truth = f["rgb/labels"][...][ea["index"][...]]
    only_a = int(np.sum((ea["prediction"][...] == truth) & (eb["prediction"][...] != truth)))
    only_b = int(np.sum((eb["prediction"][...] == truth) & (ea["prediction"][...] != truth)))
    r = script(args, "runs_diff.py", a, b, "-o", out("diff.png"))
    check(f"right only in A {only_a}, only in B {only_b}" in r.stdout,
          f"runs_diff: discordant samples {only_a} and {only_b}: {r.stdout.strip().splitlines()[-2:]}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
