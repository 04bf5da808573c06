#!/usr/bin/python3
"""scripts/study end to end on a tiny world: it runs the real pipeline through mpirun, resumes
without redoing finished steps, and its table agrees with an independent computation from the
eval files (OA from the confusion matrices, the paired t-test from scipy); a `matching` line's
variant distills from its own match file, which crosses the class blocks, made from its own
matcher run (the line's -ssm_* options); `jobs` writes grids
whose every row ackd's option parsing accepts; a misspelt variant is one line and exit 2.

  study_checks.py --repo DIR --ackd ACKD --out DIR"""
import argparse
import csv
import glob
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("study_checks")
SEEDS, METHODS, PAIR = [1, 2], ["none", "kd+hot+free", "kd+sembridge+noska"], "C/C"
HOT = "-kd_temperature 2"  # the study's own modifier +hot
FREE = "-match_class_blocks false"  # the study's own matching +free
FREE_SSM = "-ssm_standardize false"  # ... with a matcher run of its own
SET_EPOCHS = 3  # the study's `set` line; tiny.opts says 4


def study_cli(args, *words, expect=0):
    r = subprocess.run(["/usr/bin/python3", os.path.join(args.repo, "scripts", "study"), *words],
                       capture_output=True, text=True)
    check(r.returncode == expect, f"scripts/study {' '.join(words)}: exit {r.returncode} (expected {expect})")
    if r.returncode != expect:
        print(r.stdout[-3000:], r.stderr[-3000:])
    return r


def confusion_oa(path):
    with h5py.File(path, "r") as e:
        confusion = np.asarray(e["confusion"], dtype=float)  # rows: true class
    return 100 * np.trace(confusion) / confusion.sum(), confusion


def independent_table(study_out):
    """{method: {seed: (oa, one_sided_oa, train_oa)}} from each eval file's confusion matrix and the class
    map; train_oa from the evaluation on the training split."""
    cells = {}
    for seed in SEEDS:
        world = os.path.join(study_out, "overlap-0.6", f"seed-{seed}")
        with h5py.File(os.path.join(world, "data.h5"), "r") as f:
            one_sided = np.asarray(f["class_map/rgb_to_ms"]) < 0
            train_count = int(np.sum(np.asarray(f["rgb/split"]) == 0))
        for method in METHODS:
            cell = os.path.join(world, "sweep", f"{method}_{PAIR.replace('/', '')}")
            oa, confusion = confusion_oa(os.path.join(cell, "eval_test.h5"))
            sided = 100 * np.diag(confusion)[one_sided].sum() / confusion[one_sided].sum()
            train_oa, train_confusion = confusion_oa(os.path.join(cell, "eval_train.h5"))
            check(train_confusion.sum() == train_count, f"{method}, seed {seed}: eval_train.h5 counts "
                  f"{train_confusion.sum():.0f} scenes, the training split has {train_count}")
            cells.setdefault(method, {})[seed] = (oa, sided, train_oa)
    return cells


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repo", required=True)
    p.add_argument("--ackd", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    study = os.path.join(args.out, "tiny.study")
    with open(study, "w") as f:
        f.write(f"options {args.repo}/tests/study/tiny.opts\nout {args.out}/study\n"
                f"seeds {' '.join(map(str, SEEDS))}\noverlaps 0.6\npairs {PAIR}\nmethods {' '.join(METHODS)}\n"
                f"set -distill_epochs {SET_EPOCHS}\nmodifier hot {HOT}\nmatching free {FREE} {FREE_SSM}\n")

    first = study_cli(args, "run", study, "--ackd", args.ackd)
    steps = [line for line in first.stdout.splitlines() if line.startswith("study: ")]
    # per seed: synth, teacher, its eval, ssm, match, ssm-free, match-free, then per method a distill and the
    # evals on the test and on the training split
    check(len(steps) == len(SEEDS) * (7 + 3 * len(METHODS)), f"first run: {len(steps)} steps")
    again = study_cli(args, "run", study, "--ackd", args.ackd)
    check(not [l for l in again.stdout.splitlines() if l.startswith("study: ")],
          "second run: every finished step is skipped")

    for seed in SEEDS:
        world = os.path.join(args.out, "study", "overlap-0.6", f"seed-{seed}")
        with h5py.File(os.path.join(world, "ssm", "embeddings.h5"), "r") as e:
            ls, lt = e["student/labels"][()], e["teacher/labels"][()]
        crossed = {}
        for name in ("match", "match-free"):
            with h5py.File(os.path.join(world, name + ".h5"), "r") as f:
                top1 = f["match/teacher_index"][:, 0]
            crossed[name] = int(np.sum((top1 >= 0) & (lt[np.maximum(top1, 0)] != ls)))
        check(crossed["match"] == 0 and crossed["match-free"] > 0,
              f"seed {seed}: top-1 teachers of another class: {crossed['match']} in match.h5, "
              f"{crossed['match-free']} in match-free.h5 ({FREE})")
        standardized = {}
        for d in ("ssm", "ssm-free"):
            with h5py.File(os.path.join(world, d, "embeddings.h5"), "r") as e:
                standardized[d] = int(e.attrs["standardized"])
        marker = open(os.path.join(world, ".done", "match-free")).read().split()
        check(standardized == {"ssm": 1, "ssm-free": 0} and
              marker[marker.index("-match_input") + 1] == os.path.join(world, "ssm-free", "embeddings.h5"),
              f"seed {seed}: matching +free runs its own matcher ({FREE_SSM}) and matches its embeddings")
        marker = open(os.path.join(world, ".done", f"{PAIR.replace('/', '-')}-kd+hot+free")).read().split()
        check(marker[marker.index("-distill_match") + 1] == os.path.join(world, "match-free.h5"),
              f"seed {seed}: kd+hot+free distills from match-free.h5")

    table_csv = os.path.join(args.out, "table.csv")
    md = study_cli(args, "table", study, "--csv", table_csv).stdout
    check(f"| none | {len(SEEDS)} |" in md and f"| kd+sembridge+noska | {len(SEEDS)} |" in md,
          f"the Markdown table has every variant, {len(SEEDS)} seeds")
    for metrics in glob.glob(os.path.join(args.out, "study", "overlap-0.6", "seed-*", "sweep", "*", "metrics.h5")):
        with h5py.File(metrics, "r") as m:
            check(len(m["epoch"]) == SET_EPOCHS, f"the study's set line reaches distill: {len(m['epoch'])} epochs in "
                  f"{os.path.relpath(metrics, args.out)}")
    rows = {r["method"]: r for r in csv.DictReader(open(table_csv))}
    ref = independent_table(os.path.join(args.out, "study"))
    for method in METHODS:
        oa = [ref[method][s][0] for s in SEEDS]
        check(abs(float(rows[method]["oa_mean"]) - np.mean(oa)) < 1e-9,
              f"{method}: mean OA {float(rows[method]['oa_mean']):.4f} = {np.mean(oa):.4f} from the confusions")
        check(abs(float(rows[method]["oa_std"]) - np.std(oa, ddof=1)) < 1e-9, f"{method}: OA std over seeds")
        check(abs(float(rows[method]["one_sided_mean"]) - np.mean([ref[method][s][1] for s in SEEDS])) < 1e-9,
              f"{method}: one-sided classes' OA")
        check(abs(float(rows[method]["train_oa_mean"]) - np.mean([ref[method][s][2] for s in SEEDS])) < 1e-9,
              f"{method}: the clean training split's OA")
        fitted = []
        for s in SEEDS:
            world = os.path.join(args.out, "study", "overlap-0.6", f"seed-{s}")
            with h5py.File(os.path.join(world, "sweep", f"{method}_{PAIR.replace('/', '')}", "metrics.h5"), "r") as m:
                fitted.append(100 * m["train_accuracy"][SET_EPOCHS - 1])
        check(0 < np.mean(fitted) <= 100 and abs(float(rows[method]["train_accuracy_mean"]) - np.mean(fitted)) < 1e-9,
              f"{method}: the last epoch's training accuracy {np.mean(fitted):.2f}% over the seeds")
        if method == "none":
            continue
        base = [ref["none"][s][0] for s in SEEDS]
        t, pvalue = stats.ttest_rel(oa, base)
        d = np.subtract(oa, base)
        check(abs(float(rows[method]["delta_mean"]) - d.mean()) < 1e-9, f"{method}: paired difference")
        check(abs(float(rows[method]["delta_se"]) - d.std(ddof=1) / np.sqrt(len(d))) < 1e-9,
              f"{method}: its standard error")
        ds = np.subtract([ref[method][s][1] for s in SEEDS], [ref["none"][s][1] for s in SEEDS])
        check(abs(float(rows[method]["delta_one_sided"]) - ds.mean()) < 1e-9 and
              abs(float(rows[method]["delta_one_sided_se"]) - ds.std(ddof=1) / np.sqrt(len(ds))) < 1e-9,
              f"{method}: the one-sided classes' paired difference and its standard error")
        if np.isfinite(t):
            check(abs(float(rows[method]["t"]) - t) < 1e-9 * max(1, abs(t)), f"{method}: t = {t:.4f} (scipy)")
            check(abs(float(rows[method]["p"]) - pvalue) < 1e-9, f"{method}: p = {pvalue:.6f} (scipy ttest_rel)")

    # Batch jobs: every grid row through the job library and ackd's real option parsing.
    printed = study_cli(args, "jobs", study, "--scheduler", "slurm").stdout
    check("submit-pipeline -s synth,ssm,match" in printed and "submit-pipeline -s ssm,match -a $SYNTH" in printed
          and "submit-sweep -a $MATCH:$MATCH_FREE -g" in printed,
          "jobs: the pipeline's data stages, matching +free's own matcher and match after synth, then the sweep after "
          "both matches")
    for opts in glob.glob(os.path.join(args.out, "study", "overlap-0.6", "seed-*", "world.opts")):
        check(f"-distill_epochs {SET_EPOCHS}" in open(opts).read().split("the study's 'set' line")[-1],
              f"jobs: {os.path.relpath(opts, args.out)} ends with the study's set line")
    for grid in sorted(glob.glob(os.path.join(args.out, "study", "overlap-0.6", "seed-*", "sweep.grid"))):
        world = os.path.dirname(grid)
        rows = [line.split() for line in open(grid)]
        free = f"-distill_match {os.path.abspath(world)}/match-free.h5"
        check([" ".join(r[2:]) for r in rows if r[0] == "kd+hot+free"] == [f"{HOT} {free}"],
              f"jobs: the +hot+free row of {os.path.relpath(grid, args.out)} carries {HOT} and {free}")
        extra = open(os.path.join(world, "world-free.opts")).read().split("matching 'free'")[-1]
        here = os.path.abspath(world)
        check(FREE in extra and FREE_SSM in extra and f"-match_output {here}/match-free.h5" in extra and
              f"-ssm_dir {here}/ssm-free" in extra and f"-match_input {here}/ssm-free/embeddings.h5" in extra,
              f"jobs: world-free.opts ends with {FREE_SSM}, {FREE} and its own -ssm_dir, -match_input, -match_output")
        for stage in ("ssm", "match"):
            r = subprocess.run([args.ackd, stage, "-options_file", os.path.join(world, "world-free.opts"),
                                "-check_options", "-quiet"], capture_output=True, text=True)
            check(r.returncode == 0, f"jobs: world-free.opts parses for ackd {stage} (exit {r.returncode}: "
                  f"{(r.stdout + r.stderr).strip()[-300:]})")
        script = (f"source {args.repo}/jobs/lib/ackd-job.sh; export ACKD={args.ackd} ACKD_MPIRUN=env "
                  f"ACKD_OPTS={world}/world.opts ACKD_RUN={world}; n=$(grep -c . {grid}); "
                  f"for ((i = 0; i < n; i++)); do ackd_grid_row {grid} $i && "
                  f"ackd_stage_argv {args.repo}/jobs/sweep.stages distill && "
                  f"\"${{ACKD_ARGV[@]}}\" -check_options -quiet || exit 1; done")
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
        check(r.returncode == 0 and r.stdout.count("options ok") == len(METHODS),
              f"jobs: the {len(METHODS)} rows of {os.path.relpath(grid, args.out)} parse ({r.stderr.strip()[-300:]})")

    # the two-sided p of the table against scipy, at the edges too (t = 0, large t, df = 1)
    from importlib.machinery import SourceFileLoader
    study_module = SourceFileLoader("study", os.path.join(args.repo, "scripts", "study")).load_module()
    for t, df in [(0.0, 4), (0.3, 4), (-2.1, 4), (5.0, 1), (12.0, 9), (-40.0, 4)]:
        mine, ref = study_module.t_two_sided_p(t, df), 2 * stats.t.sf(abs(t), df)
        check(abs(mine - ref) <= 1e-10 + 1e-8 * ref, f"p(t = {t}, df = {df}) = {mine:.6g}, scipy {ref:.6g}")

    # the teacher's score: OA from a single-label eval file; mAP from a multi-label one, which has no OA
    teacher_eval = os.path.join(args.out, "study", "overlap-0.6", f"seed-{SEEDS[0]}", "teacher_smallcnn",
                                "eval_test.h5")
    score = study_module.teacher_score(teacher_eval)
    check(score == (study_module.overall_accuracy(teacher_eval), "OA"), f"single-label teacher score {score}")
    multi = os.path.join(args.out, "teacher_multilabel_eval.h5")
    shutil.copy(teacher_eval, multi)
    with h5py.File(multi, "r+") as f:
        f.attrs["multilabel"], f.attrs["map"] = 1, 0.8125
        del f["per_class_accuracy"]
    score = study_module.teacher_score(multi)
    check(score == (81.25, "mAP"), f"multi-label teacher score {score}")

    bad = os.path.join(args.out, "bad.study")
    open(bad, "w").write(open(study).read().replace("kd+sembridge+noska", "kd+sembrige"))
    err = study_cli(args, "run", bad, "--dry-run", expect=2).stderr.strip()
    check(err.count("\n") == 0 and "unknown modifier '+sembrige'" in err, f"a misspelt variant: {err}")
    open(bad, "w").write(open(study).read().replace("kd+hot+free", "kd+free+other") + "matching other -match_solver "
                         "sinkhorn\n")
    err = study_cli(args, "run", bad, "--dry-run", expect=2).stderr.strip()
    check(err.count("\n") == 0 and "names two matchings (free, other)" in err, f"two matchings in a variant: {err}")
    open(bad, "w").write(open(study).read().replace("modifier hot", "modifier noska"))
    err = study_cli(args, "run", bad, "--dry-run", expect=2).stderr.strip()
    check(err.count("\n") == 0 and "modifier 'noska' must be a new name" in err, f"a modifier that exists: {err}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
