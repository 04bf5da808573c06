#!/usr/bin/python3
"""The pipeline of scripts/demo, small, on 2 ranks through one options file, with the real stages
(synth -> train -> ssm -> match -> distill x2 -> eval), then every analysis script on its outputs.
Checks that each stage's output feeds the next, and the analysis numbers against the files.

  pipeline_checks.py --mpirun 'mpirun --oversubscribe -n' --ackd ACKD --repo REPO --out DIR
"""
import argparse
import os
import pathlib
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("pipeline_checks")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("--mpirun", "--ackd", "--repo", "--out"):
        p.add_argument(a, required=True)
    a = p.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    o = a.out
    opts = os.path.join(o, "run.opts")
    with open(opts, "w") as f:
        f.write(f"""# one options file for every stage, as inputs/demo.opts
-synth_output {o}/synth.h5
-synth_ms_count 500
-synth_rgb_count 500
-synth_classes 6
-synth_size 16
-synth_seed 3
-train_data {o}/synth.h5
-train_dir {o}/teacher
-teacher_arch resnet18
-teacher_width 0.25
-train_epochs 3
-ssm_data {o}/synth.h5
-ssm_dir {o}/ssm
-ssm_arch smallcnn
-ssm_width 0.5
-ssm_epochs 1
-match_input {o}/ssm/embeddings.h5
-match_output {o}/match.h5
-match_solver sinkhorn
-match_ot_topk 2
-distill_data {o}/synth.h5
-distill_gallery {o}/teacher/gallery.h5
-distill_match {o}/match.h5
-student_arch mobilenetv2
-student_width 0.25
-distill_epochs 2
-dynm_e0 1
-dynm_delta 1
-dynm_growth 0
""")

    def stage(*args):
        checklib.run_ackd(a.mpirun.split(), 2, a.ackd, [*args, "-options_file", opts, "-quiet"])

    def script(name, *args):
        return checklib.run_or_exit(["/usr/bin/python3", os.path.join(a.repo, "analysis", name), *args],
                                    what=f"analysis/{name}", tail=None).stdout

    stage("synth")
    stage("train")
    stage("ssm")
    stage("match")
    for method in ("none", "dkd+sembridge"):
        flags = ["-kd_method", method.split("+")[0]] + (["-sembridge"] if "+" in method else [])
        stage("distill", *flags, "-distill_dir", f"{o}/student_{method}")
        stage("eval", "-eval_checkpoint", f"{o}/student_{method}/best.h5")
    stage("eval", "-eval_checkpoint", f"{o}/teacher/best.h5")

    with h5py.File(f"{o}/ssm/embeddings.h5", "r") as e, h5py.File(f"{o}/match.h5", "r") as m:
        check(m["match/teacher_index"].shape[0] == e["student/features"].shape[0],
              "match has one row per student of the SSM embeddings")
        ti = m["match/teacher_index"][:, 0]
        sl, tl = e["student/labels"][()], e["teacher/labels"][()]
        ok = ti >= 0
        check(ok.any() and np.all(sl[ok] == tl[ti[ok]]), "every matched teacher is of its student's class")

    # analysis on these outputs
    png = lambda path: open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    out = script("curves.py", f"{o}/teacher/metrics.h5", f"{o}/student_none/metrics.h5", "-o", f"{o}/curves.png")
    with h5py.File(f"{o}/teacher/metrics.h5", "r") as m:
        best = f"best val_oa {m.attrs['best_score']:.4f} at epoch {m.attrs['best_epoch']}"
    check(png(f"{o}/curves.png") and best in out, f"curves.py: PNG, and '{best}'")
    ev = f"{o}/student_dkd+sembridge/eval_test.h5"
    out = script("confusion.py", ev, "-o", f"{o}/confusion.png")
    with h5py.File(ev, "r") as e:
        oa = e.attrs["oa"]
    check(png(f"{o}/confusion.png") and f"OA {oa:.4f}" in out, f"confusion.py: PNG and OA {oa:.4f}")
    out = script("match_view.py", f"{o}/match.h5", "--embeddings", f"{o}/ssm/embeddings.h5", "-o", f"{o}/match.png")
    check(png(f"{o}/match.png") and "same class 1.0000" in out, "match_view.py: PNG, all matches within class")
    out = script("ckpt_layers.py", f"{o}/teacher/best.h5", "--csv", f"{o}/layers.csv", "-o", f"{o}/layers.png")
    with h5py.File(f"{o}/teacher/best.h5", "r") as c:
        w = c["model/conv1/weight"][()]
    rows = [l.split(",") for l in open(f"{o}/layers.csv").read().splitlines()]
    header, body = rows[0], {r[0]: r for r in rows[1:]}
    col = next(i for i, h in enumerate(header) if "norm" in h)
    check(png(f"{o}/layers.png") and abs(float(body["conv1"][col]) - np.linalg.norm(w)) < 1e-4 * np.linalg.norm(w),
          "ckpt_layers.py: conv1's norm = numpy's")
    table = script("results_table.py", o)
    cells = {}
    for method in ("none", "dkd+sembridge"):
        with h5py.File(f"{o}/student_{method}/eval_test.h5", "r") as e:
            cells[method] = (e.attrs["pair"], 100 * e.attrs["oa"])
    line_none = next(l for l in table.splitlines() if l.startswith("| Student"))
    line_sb = next(l for l in table.splitlines() if l.startswith("| DKD + SemBridge"))
    check(f"{cells['none'][1]:.2f}" in line_none and f"{cells['dkd+sembridge'][1]:.2f}" in line_sb,
          f"results_table.py: the cells are the eval files' OA ({cells['none'][1]:.2f}, {cells['dkd+sembridge'][1]:.2f})")
    check(cells["none"][0] == "R/M" and "| Method |" in table, "results table: the pair recorded as R/M")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
