#!/usr/bin/python3
"""Multi-label collections end to end (the paper's M2S-GL setting), through mpirun on 2 ranks.

  ml_checks.py --mpirun L --ackd A --out DIR

A small synthetic benchmark whose /ms labels are rewritten with h5py as the (N, K) uint8 table of
a multi-label collection (docs/FORMATS.md); /rgb stays single-label. Then:
  - train: a small teacher with BCE; metrics.h5 holds val_map, best.h5 is its best epoch; the
    gallery's labels are the (N_t, K) table of the teacher samples;
  - eval: mAP, per-class AP and F1 (micro, macro) recomputed in numpy from /score and the
    dataset's labels equal the file's; eval of best.h5 on val gives the best val_map again;
  - ssm: the teacher labels follow the documented rule (lowest positive class that maps);
  - with /ms/dominant_class recorded: the gallery carries it, and ssm's teacher labels and DynM's
    class blocks take the dominant class's counterpart; one that is not a positive is refused;
  - match + distill (M2S, -kd_method kd, DynM on): -kd_teacher_multilabel set automatically,
    finite metrics;
  - bad input: a multi-label /rgb (distill, ssm) and -kd_teacher_multilabel 0 with a multi-label
    gallery are refused with one line, exit code 2.
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("ml_checks")
K_MS = 5


def run(args, cmd, expect=0, np_=2):
    return checklib.run_ackd(args.mpirun.split(), np_, args.ackd, cmd, expect)


def refused(args, cmd, regex, what, code=2):
    """Exit 2 for a wrong option or argument, 1 for a file that does not hold what it should."""
    ok, account = checklib.refusal(args.mpirun.split() + ["2", args.ackd] + cmd, regex, code)
    check(ok, f"{what}: {account}")


def make_multilabel(group, rng):
    """(N) labels -> (N, K) 0/1: the class itself, and for classes 0-2 also the next class half the time."""
    y = group["labels"][...]
    k = len(group["classes"])
    table = np.zeros((len(y), k), np.uint8)
    table[np.arange(len(y)), y] = 1
    extra = (y < 3) & (rng.random(len(y)) < 0.5)
    table[np.flatnonzero(extra), (y[extra] + 1) % k] = 1
    del group["labels"]
    group.create_dataset("labels", data=table)
    group.attrs["multilabel"] = 1
    return table


def average_precision(scores, positive):
    """Step-wise: at each threshold (distinct score, decreasing) the precision, once per positive reached."""
    if not positive.any():
        return np.nan
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order].astype(float)
    ap, tp = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        at = s == t
        reached = np.count_nonzero(s >= t)
        tp += p[at].sum()
        ap += p[at].sum() * tp / reached
    return ap / p.sum()


def f1_scores(pred, truth):
    tp = (pred & truth).sum(0)
    fp = (pred & ~truth).sum(0)
    fn = (~pred & truth).sum(0)
    defined = tp + fp + fn > 0
    macro = np.mean(2 * tp[defined] / (2 * tp + fp + fn)[defined])
    micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())
    return micro, macro


def check_rematch(args, data, gallery, table, ms_to_rgb, idx, zt_ms, dominant=None):
    """DynM with a multi-label gallery (test_rematch, 2 ranks) against numpy: each teacher's class is
    its highest-logit positive that maps to a student class (its dominant class's counterpart when
    the gallery records one), and the KL cost uses log sigmoid(z)."""
    with h5py.File(data, "r") as f:
        split, s_all = f["rgb/split"][...], f["rgb/labels"][...]
        K = len(f["rgb/classes"])
    s_labels = s_all[split == 0]
    zs = np.random.default_rng(7).standard_normal((len(s_labels), K)).astype(np.float32) * 3
    tag = "" if dominant is None else "_dominant"
    logits, out = os.path.join(args.out, "student_logits.h5"), os.path.join(args.out, f"rematch{tag}.h5")
    with h5py.File(logits, "w") as f:
        f["logits"] = zs
    # the paper's argmin, which numpy recomputes (ackd's default is balanced OT)
    subprocess.run(args.mpirun.split() + ["2", args.rematch, data, gallery, logits, out, "-dynm_solver", "argmin"],
                   check=True)
    with h5py.File(out, "r") as f:
        got = f["index"][...].astype(np.int64)
    t_class = np.full(len(idx), -1)
    for j, r in enumerate(idx):
        pos = [c for c in range(K_MS) if table[r, c] and ms_to_rgb[c] >= 0]
        if pos:
            t_class[j] = ms_to_rgb[max(pos, key=lambda c: (zt_ms[j, c], -c))]
    lowest = np.array([next((ms_to_rgb[c] for c in range(K_MS) if table[r, c] and ms_to_rgb[c] >= 0), -1)
                       for r in idx])
    if dominant is not None:
        top, t_class = t_class, ms_to_rgb[dominant[idx]]
        check((top != t_class).any() and (lowest != t_class).any(),
              f"the dominant classes differ from the top-scoring rule for {int((top != t_class).sum())} teachers "
              f"and from the lowest-index one for {int((lowest != t_class).sum())}")
    else:
        check((lowest != t_class).any(), f"the top-scoring rule differs from the lowest-index one for "
              f"{int((lowest != t_class).sum())} teachers (so the check below tells them apart)")
    zt = np.full((len(idx), K), 0.0)
    zt[:] = zt_ms.min(axis=1, keepdims=True).astype(np.float64) - 50.0
    for c in range(K_MS):
        if ms_to_rgb[c] >= 0:
            zt[:, ms_to_rgb[c]] = zt_ms[:, c]
    zt = -np.logaddexp(0.0, -zt)  # log sigmoid, the teacher's targets under -kd_teacher_multilabel

    def log_p(z):
        z = z / 3.0
        return z - np.logaddexp.reduce(z, axis=1, keepdims=True)

    lt, ls = log_p(zt), log_p(zs.astype(np.float64))
    cost = (np.exp(lt) * lt).sum(1)[None, :] - ls @ np.exp(lt).T
    cost[(s_labels[:, None] != t_class[None, :]) | (t_class[None, :] < 0)] = np.inf
    differ = 0
    for s in range(len(s_labels)):
        ok = np.flatnonzero(np.isfinite(cost[s]))
        want = ok[np.argsort(cost[s, ok], kind="stable")][:got.shape[1]]
        mine = got[s][got[s] >= 0]
        differ += len(mine) != len(want) or not np.allclose(cost[s, mine], cost[s, want], rtol=1e-6, atol=1e-9)
    rule = "top mapped positive" if dominant is None else "the dominant class's counterpart"
    check(differ == 0, f"DynM with a multi-label gallery: {len(s_labels)} students' teachers = numpy's "
          f"(class = {rule}, cost on log sigmoid) ({differ} differ)")


def check_dominant(args, data, table, ms_to_rgb):
    """A multi-label collection that records each sample's dominant class (/ms/dominant_class): the
    gallery carries it, ssm's teacher labels and DynM's class blocks take its counterpart instead of
    the lowest-index or top-scoring positive, and one that is not a positive of its row is refused."""
    d = args.out
    dom_data, bad = os.path.join(d, "ml_dominant.h5"), os.path.join(d, "ml_dominant_bad.h5")
    shutil.copy(data, dom_data)
    # the highest-index positive: for the two-label rows it is never the lowest-index rule's choice
    dominant = np.array([np.flatnonzero(row).max() for row in table], dtype=np.int32)
    with h5py.File(dom_data, "r+") as f:
        f["ms/dominant_class"] = dominant
    shutil.copy(dom_data, bad)
    with h5py.File(bad, "r+") as f:
        wrong = dominant.copy()
        row = int(np.flatnonzero(table.sum(1) == 1)[0])
        wrong[row] = (wrong[row] + 1) % K_MS
        f["ms/dominant_class"][...] = wrong
    teacher = os.path.join(d, "teacher_dominant")
    run(args, ["train", "-train_data", dom_data, "-train_dir", teacher, "-teacher_arch", "smallcnn", "-teacher_width",
               "0.5", "-train_epochs", "1", "-train_batch", "48", "-train_seed", "2", "-quiet"])
    gallery = os.path.join(teacher, "gallery.h5")
    with h5py.File(gallery, "r") as f:
        idx, zt = f["gallery/index"][...], f["gallery/logits"][...]
        check("dominant_class" in f["gallery"] and np.array_equal(f["gallery/dominant_class"][...], dominant[idx]),
              "the gallery records its samples' dominant classes")
    run(args, ["ssm", "-ssm_data", dom_data, "-ssm_dir", os.path.join(d, "ssm_dominant"), "-ssm_arch", "smallcnn",
               "-ssm_width", "0.5", "-ssm_epochs", "1", "-quiet"])
    with h5py.File(os.path.join(d, "ssm_dominant", "embeddings.h5"), "r") as f:
        rows, labels = f["teacher/index"][...], f["teacher/labels"][...]
    lowest = np.array([next((ms_to_rgb[c] for c in np.flatnonzero(table[r]) if ms_to_rgb[c] >= 0), -1)
                       for r in rows])
    want = ms_to_rgb[dominant[rows]]
    check(np.array_equal(labels, want) and (lowest != want).any(),
          f"ssm teacher labels: the dominant class's counterpart ({int((lowest != want).sum())} differ from the "
          f"lowest-index rule)")
    if args.rematch:
        check_rematch(args, dom_data, gallery, table, ms_to_rgb, idx, zt, dominant)
    refused(args, ["ssm", "-ssm_data", bad, "-ssm_dir", os.path.join(d, "bad5"), "-ssm_arch", "smallcnn",
                   "-ssm_epochs", "1"], rf"dominant_class\[{row}\].*not one of the sample's positive labels",
            "ssm: a dominant class that is not a positive of its row", code=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--ackd", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rematch", help="test_rematch program (tests/distill): check DynM's classes and cost")
    args = ap.parse_args()
    d = args.out
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    data, bad = os.path.join(d, "ml.h5"), os.path.join(d, "ml_rgb.h5")
    run(args, ["synth", "-synth_output", data, "-synth_ms_count", "360", "-synth_rgb_count", "300", "-synth_size",
               "16", "-synth_classes", str(K_MS), "-synth_overlap", "0.8", "-synth_seed", "3", "-quiet"])
    rng = np.random.default_rng(0)
    with h5py.File(data, "r+") as f:
        table = make_multilabel(f["ms"], rng)
        ms_to_rgb = f["class_map/ms_to_rgb"][...]
        ms_split = f["ms/split"][...]
    shutil.copy(data, bad)
    with h5py.File(bad, "r+") as f:
        make_multilabel(f["rgb"], rng)

    # train: BCE, validated by mAP
    teacher = os.path.join(d, "teacher")
    run(args, ["train", "-train_data", data, "-train_dir", teacher, "-teacher_arch", "smallcnn", "-teacher_width",
               "0.5", "-train_epochs", "3", "-train_batch", "48", "-train_seed", "2", "-quiet"])
    with h5py.File(os.path.join(teacher, "metrics.h5"), "r") as f:
        check(f.attrs["score"] == "val_map" and "val_map" in f and "val_oa" not in f, "metrics.h5: val_map")
        vmap = f["val_map"][...]
        check(len(vmap) == 3 and np.isfinite(vmap).all() and (vmap > 0).all() and (vmap <= 1).all(),
              f"val_map {vmap}")
        check(f.attrs["best_epoch"] == int(np.argmax(vmap)) and f.attrs["best_score"] == vmap.max(),
              f"best epoch {f.attrs['best_epoch']} by val_map")
        acc, loss = f["train_accuracy"][...], f["train_loss"][...]
        check(np.isfinite(loss).all() and loss[-1] < loss[0] and ((acc > 0) & (acc <= 1)).all(),
              f"BCE train loss {loss}, per-label accuracy {acc}")
    with h5py.File(os.path.join(teacher, "gallery.h5"), "r") as f:
        g = f["gallery"]
        idx = g["index"][...]
        check(g["labels"].dtype == np.uint8 and g["labels"].shape == (len(idx), K_MS) and f.attrs["multilabel"] == 1,
              f"gallery labels {g['labels'].shape} {g['labels'].dtype}")
        check(np.array_equal(idx, np.flatnonzero(ms_split == 0)) and np.array_equal(g["labels"][...], table[idx]),
              "gallery labels are the teacher samples' rows of the table")
        gallery_logits = g["logits"][...]

    # eval: the file's numbers from its own scores, by an independent computation
    for split in ("test", "val"):
        out = os.path.join(d, f"eval_{split}.h5")
        proc = run(args, ["eval", "-eval_checkpoint", os.path.join(teacher, "best.h5"), "-eval_split", split,
                          "-eval_output", out])
        check("mAP" in proc.stdout and "F1 micro" in proc.stdout, f"eval {split} prints mAP and F1")
        with h5py.File(out, "r") as f:
            s, rows = f["score"][...], f["index"][...]
            truth = table[rows].astype(bool)
            want = {"test": 2, "val": 1}[split]
            check(f.attrs["multilabel"] == 1 and np.array_equal(rows, np.flatnonzero(ms_split == want)),
                  f"eval {split}: multilabel, index = the split's rows")
            check(s.shape == truth.shape and ((s >= 0) & (s <= 1)).all(), f"eval {split}: /score {s.shape}")
            aps = np.array([average_precision(s[:, k], truth[:, k]) for k in range(K_MS)])
            file_ap = f["per_class_ap"][...]
            check(np.allclose(aps, file_ap, rtol=1e-12, atol=1e-12, equal_nan=True), f"per-class AP {file_ap}")
            check(abs(np.nanmean(aps) - f.attrs["map"]) < 1e-12, f"mAP {f.attrs['map']:.6f}")
            micro, macro = f1_scores(s > 0.5, truth)
            check(abs(micro - f.attrs["f1_micro"]) < 1e-12 and abs(macro - f.attrs["f1_macro"]) < 1e-12,
                  f"F1 micro {f.attrs['f1_micro']:.6f} macro {f.attrs['f1_macro']:.6f}")
            if split == "val":
                check(abs(f.attrs["map"] - vmap.max()) < 1e-9, "eval of best.h5 on val = best val_map")

    # ssm: teacher labels by the documented rule
    run(args, ["ssm", "-ssm_data", data, "-ssm_dir", os.path.join(d, "ssm"), "-ssm_arch", "smallcnn", "-ssm_width",
               "0.5", "-ssm_epochs", "1", "-quiet"])
    emb = os.path.join(d, "ssm", "embeddings.h5")
    with h5py.File(emb, "r") as f:
        rows, labels = f["teacher/index"][...], f["teacher/labels"][...]
    want = []
    for r in rows:
        mapped = [ms_to_rgb[c] for c in np.flatnonzero(table[r]) if ms_to_rgb[c] >= 0]
        want.append(mapped[0] if mapped else -1)
    check(np.array_equal(labels, want) and (labels == -1).any() and (labels >= 0).any(),
          f"ssm teacher labels: lowest mapped positive ({int((labels == -1).sum())} without a student class)")

    # match + distill, M2S
    match = os.path.join(d, "match.h5")
    run(args, ["match", "-match_input", emb, "-match_output", match, "-match_solver", "sinkhorn", "-match_ot_topk",
               "3", "-quiet"])
    student = os.path.join(d, "student")
    common = ["distill", "-distill_data", data, "-distill_gallery", os.path.join(teacher, "gallery.h5"),
              "-distill_match", match, "-student_arch", "smallcnn", "-student_width", "0.5", "-distill_batch", "48",
              "-distill_epochs", "2", "-kd_method", "kd"]
    proc = run(args, common + ["-distill_dir", student, "-dynm", "-dynm_e0", "1", "-dynm_delta", "1"])
    check("DynM: re-matched" in proc.stdout, "DynM re-matched with the multi-label gallery")
    with h5py.File(os.path.join(student, "metrics.h5"), "r") as f:
        vals = {k: f[k][...] for k in ("train_loss", "loss_ce", "loss_kd", "val_oa")}
        check(all(np.isfinite(v).all() and len(v) == 2 for v in vals.values()), f"distill metrics finite {vals}")
    with h5py.File(os.path.join(student, "best.h5"), "r") as f:
        text = f.attrs["options"]
        text = text.decode() if isinstance(text, bytes) else str(text)
        check("-kd_teacher_multilabel" in text, "-kd_teacher_multilabel recorded in the student's options")

    if args.rematch:
        check_rematch(args, data, os.path.join(teacher, "gallery.h5"), table, ms_to_rgb, idx, gallery_logits)

    check_dominant(args, data, table, ms_to_rgb)

    # bad input
    refused(args, common + ["-distill_dir", os.path.join(d, "bad1"), "-kd_teacher_multilabel", "0"],
            r"multi-label teacher.*-kd_teacher_multilabel is off", "-kd_teacher_multilabel 0 with a multi-label gallery")
    bad_cmd = list(common)
    bad_cmd[bad_cmd.index(data)] = bad
    refused(args, bad_cmd + ["-distill_dir", os.path.join(d, "bad2")], r"/rgb .* is multi-label.*single-label",
            "distill: multi-label RGB student")
    refused(args, ["ssm", "-ssm_data", bad, "-ssm_dir", os.path.join(d, "bad3"), "-ssm_arch", "smallcnn",
                   "-ssm_epochs", "1"], r"/rgb .* is multi-label.*single-label", "ssm: multi-label RGB student")
    refused(args, ["train", "-train_data", data, "-train_dir", os.path.join(d, "bad4"), "-teacher_arch", "smallcnn",
                   "-train_label_smoothing", "0.1"], r"label_smoothing.*multi-label", "train: smoothing with BCE")

    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
