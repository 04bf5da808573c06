#!/usr/bin/python3
"""How DynM's matching changed over a distill run, read from the matching every checkpoint keeps
(/optim/state.match_index and state.match_weight: each student's top-k teachers, docs/FORMATS.md).
Per checkpoint: the distinct top-1 teachers, the largest hub (students sharing one top-1 teacher),
the students without a teacher; between consecutive checkpoints: the share of the students with a
teacher whose top-1 teacher changed, overall and (where any changed) per student class.

  ckpt_dynm.py RUN_DIR [--data DATA.h5] -o dynm.png [--csv dynm.csv] [--classes-csv classes.csv]

--data defaults to the dataset the checkpoints record (for the students' classes). A student's
top-1 teacher is its matched teacher of largest weight (ackd's DynM statistics); a run without -sembridge/-dynm keeps its
first matching throughout, and the share changed is then 0."""
import os

import h5py
import numpy as np

import ackd_files as af


def main():
    p = af.parser(__doc__)
    p.add_argument("run")
    p.add_argument("--data")
    p.add_argument("-o", "--output", default="dynm.png")
    p.add_argument("--csv")
    p.add_argument("--classes-csv", help="the share changed per student class at each change")
    args = p.parse_args()
    series = af.checkpoint_series(args.run)
    data = args.data
    if not data:
        with af.open_file(series[0][1], "checkpoint") as f:
            data = af.text(f.attrs.get("data", ""))
    if not data or not os.path.exists(data):
        af.die(f"the run's dataset '{data}' is not there; give --data")
    with h5py.File(data, "r") as f:
        train = np.asarray(f["rgb/split"]) == 0
        classes = np.asarray(f["rgb/labels"])[train]
        names = af.strings(f["rgb/classes"])
    rows, class_rows, previous = [], [], None
    for step, path in series:
        index, weight, epoch = af.read_checkpoint_matching(path, len(classes))
        first = af.top_teacher(index, weight)
        matched = first >= 0
        hubs = np.bincount(first[matched]) if matched.any() else np.zeros(1, dtype=int)
        # as ackd's own statistic: over the students that have a teacher now
        changed = float(np.sum((first != previous) & matched) / max(matched.sum(), 1)) if previous is not None \
            else float("nan")
        rows.append([step, epoch, int(np.count_nonzero(hubs)), int(hubs.max()), int(np.count_nonzero(~matched)), changed])
        if previous is not None and changed > 0:
            for c, name in enumerate(names):
                mine = classes == c
                if mine.any():
                    class_rows.append([step, name, int(mine.sum()), float(np.mean(first[mine] != previous[mine]))])
        previous = first
        print(f"step {step:8d}  epoch {epoch:4d}  distinct top-1 {rows[-1][2]:6d}  largest hub {rows[-1][3]:5d}  "
              f"untaught {rows[-1][4]:5d}  changed {changed:.3f}")
    header = ["step", "epoch", "distinct_top1_teachers", "largest_hub", "students_without_teacher", "changed_share"]
    if args.csv:
        af.write_csv(args.csv, header, rows)
    if args.classes_csv:
        af.write_csv(args.classes_csv, ["step", "class", "students", "changed_share"], class_rows)
    fig, axes = af.figure(1, 3, figsize=(13, 4))
    steps = [r[0] for r in rows]
    for ax, column, label in zip(axes, (2, 3, 5), ("distinct top-1 teachers", "largest hub", "share changed")):
        ax.plot(steps, [r[column] for r in rows], "o-")
        ax.set(xlabel="step", ylabel=label)
    axes[0].set_title(os.path.basename(os.path.abspath(args.run)))
    af.save(fig, args.output)


if __name__ == "__main__":
    main()
