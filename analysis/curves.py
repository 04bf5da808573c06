#!/usr/bin/python3
"""Training curves from one or more metrics files (ackd train / ssm / distill: metrics.h5):
loss (train and validation), accuracy (train accuracy, validation OA or mAP), learning rate,
and any stage-specific terms (loss_ce, loss_kd, loss_ska, ...), against the epoch.

  curves.py out/demo/teacher/metrics.h5 -o teacher_curves.png
  curves.py out/demo/student_*/metrics.h5 -o students.png      several runs in one figure"""
import os

import numpy as np

import ackd_files as af

STANDARD = {"epoch", "step", "lr", "train_loss", "val_loss", "train_accuracy", "val_oa", "val_map", "seconds"}


def main():
    ap = af.parser(__doc__)
    ap.add_argument("metrics", nargs="+", help="metrics.h5 files")
    ap.add_argument("-o", "--output", default="curves.png", help="PNG to write (default curves.png)")
    args = ap.parse_args()
    fig, axes = af.figure(2, 2, figsize=(11, 7))
    (ax_loss, ax_acc), (ax_lr, ax_terms) = axes
    for path in args.metrics:
        m, attrs = af.read_metrics(path)
        label = attrs.get("role") or os.path.basename(os.path.dirname(os.path.abspath(path)))
        e = m["epoch"]
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            if key in m:
                ax_loss.plot(e, m[key], style, label=f"{label} {key}")
        for key, style in (("train_accuracy", "-"), ("val_oa", "--"), ("val_map", ":")):
            if key in m and not np.all(np.isnan(m[key])):  # ssm classifies nothing: NaN
                ax_acc.plot(e, m[key], style, label=f"{label} {key}")
        if "lr" in m:
            ax_lr.plot(e, m["lr"], label=label)
        for key in sorted(set(m) - STANDARD):
            ax_terms.plot(e, m[key], label=f"{label} {key}")
        best, score = attrs.get("best_score"), attrs.get("score", "val_oa")
        score = score.decode() if isinstance(score, bytes) else score
        print(f"{path}: {len(e)} epochs" + (f", best {score} {float(best):.4f} at epoch {attrs.get('best_epoch')}"
                                            if best is not None and np.isfinite(best) else ""))
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy"), (ax_lr, "learning rate"), (ax_terms, "loss terms")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize=7)
    af.save(fig, args.output)


if __name__ == "__main__":
    main()
