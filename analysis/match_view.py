#!/usr/bin/python3
"""Views of a matching (ackd match: match.h5): histograms of the plan weights each student keeps,
teacher reuse (how many students each teacher serves: hub teachers show as a long tail), and,
given a second match file, the comparison of the two (e.g. -match_solver argmin, the paper's
hard matching, against entropic OT). With the embeddings file (the input of ackd match), also
checks that matched teachers share their student's class. With --paired (a world of ackd synth
-synth_paired, where student and teacher of one dataset index show the same ground), also how
often the match keeps each student's own ground, and where the embeddings rank it among the
teachers of the student's class (cosine similarity; chance: the middle).

  match_view.py out/demo/match.h5 -o match.png
  match_view.py ot.match.h5 --compare argmin.match.h5 --embeddings out/demo/ssm/embeddings.h5 -o ot_vs_argmin.png
  match_view.py WORLD/match.h5 --embeddings WORLD/ssm/embeddings.h5 --paired -o match.png

Printed per file: students with a match, teachers used (top-1 and any kept), the largest number of
students one teacher serves; with --compare, the share of students whose top-1 teacher agrees."""
import os

import numpy as np

import ackd_files as af


def reuse(index, teachers, top1=True):
    """Students served by each teacher: by top-1 match, or by any kept (index >= 0) teacher."""
    cols = index[:, :1] if top1 else index
    kept = cols[cols >= 0]
    return np.bincount(kept, minlength=teachers)


def summary(name, index, weight, teachers, labels):
    matched = int((index[:, 0] >= 0).sum())
    r1, rk = reuse(index, teachers), reuse(index, teachers, top1=False)
    line = (f"{name}: {len(index)} students, {matched} matched, top-{index.shape[1]}; teachers {teachers}: "
            f"top-1 uses {int((r1 > 0).sum())}, max students per teacher {int(r1.max(initial=0))}; "
            f"kept uses {int((rk > 0).sum())}, max {int(rk.max(initial=0))}")
    if labels is not None and labels["student"] is not None and labels["teacher"] is not None:
        s, t = np.nonzero(index >= 0)
        same = np.mean(labels["teacher"][index[s, t]] == labels["student"][s]) if len(s) else 1.0
        line += f"; same class {same:.4f}"
    print(line)
    return r1


def true_pairs(path, indexes):
    """Prints, for the students whose own ground is among the teachers: the share of each match
    file's top-1 and kept teachers that is that ground, and its rank by the embeddings' cosine
    among the teachers of the student's class (0: nearest, 1: farthest)."""
    with af.h5py.File(path, "r") as f:
        if "student/index" not in f or "teacher/index" not in f:
            af.die(f"'{path}' has no /student/index or /teacher/index: --paired needs the dataset rows")
        s_index, t_index = f["student/index"][...], f["teacher/index"][...]
        s_lab, t_lab = f["student/labels"][...], f["teacher/labels"][...]
        s_feat = np.asarray(f["student/features"][...], dtype=np.float64)
        t_feat = np.asarray(f["teacher/features"][...], dtype=np.float64)
    row_of = {int(r): j for j, r in enumerate(t_index)}
    own = np.array([row_of.get(int(r), -1) for r in s_index])
    # a one-sided student's index may hold an MS scene of another class (synth renders other classes
    # there): only a teacher of the student's own class is its ground
    has = (own >= 0) & (t_lab[np.maximum(own, 0)] == s_lab)
    if not has.any():
        af.die(f"no student of '{path}' has a teacher of its class at its own index: not a paired world")
    s_feat /= np.maximum(np.linalg.norm(s_feat, axis=1, keepdims=True), 1e-12)
    t_feat /= np.maximum(np.linalg.norm(t_feat, axis=1, keepdims=True), 1e-12)
    ranks = []
    for i in np.flatnonzero(has):
        same = np.flatnonzero(t_lab == s_lab[i])
        sim = t_feat[same] @ s_feat[i]
        ranks.append(np.mean(sim > sim[np.searchsorted(same, own[i])]) if len(same) > 1 else 0.0)
    ranks = np.array(ranks)
    print(f"paired: {int(has.sum())} students with their own ground among their class's teachers; by the embeddings "
          f"it ranks at {np.median(ranks):.3f} (median; 0 nearest, 0.5 chance) of its class's teachers, "
          f"first for {np.mean(ranks == 0):.4f}")
    for name, index in indexes:
        top1 = np.mean(index[has, 0] == own[has])
        kept = np.mean((index[has] == own[has, None]).any(axis=1))
        print(f"paired: {name}: own ground top-1 {top1:.4f}, among the kept {kept:.4f}")


def main():
    ap = af.parser(__doc__)
    ap.add_argument("match", help="match.h5")
    ap.add_argument("--compare", metavar="MATCH2", help="a second match file of the same problem")
    ap.add_argument("--embeddings", metavar="FILE", help="the embeddings file both were solved from (labels)")
    ap.add_argument("--paired", action="store_true",
                    help="a paired world (ackd synth -synth_paired): how the match and embeddings find each "
                    "student's own ground (needs --embeddings)")
    ap.add_argument("-o", "--output", default="match.png", help="PNG to write (default match.png)")
    args = ap.parse_args()
    labels = af.read_embeddings(args.embeddings) if args.embeddings else None
    files = [args.match] + ([args.compare] if args.compare else [])
    data = []
    for path in files:
        index, weight, ot, teachers = af.read_match(path)
        name = f"{os.path.basename(path)} ({ot.get('solver', '?')})"
        data.append((name, index, weight, summary(name, index, weight, teachers, labels)))
    if args.paired:
        if not args.embeddings:
            af.die("--paired needs --embeddings, the file both sides' dataset rows come from")
        true_pairs(args.embeddings, [(d[0], d[1]) for d in data])
    if len(data) == 2:
        a, b = data[0][1], data[1][1]
        if a.shape[0] != b.shape[0]:
            af.die(f"the two files have {a.shape[0]} and {b.shape[0]} students: not the same problem")
        both = (a[:, 0] >= 0) & (b[:, 0] >= 0)
        print(f"top-1 agreement {np.mean(a[both, 0] == b[both, 0]):.4f} over {int(both.sum())} students")

    fig, axes = af.figure(1, 3, figsize=(15, 4))
    for name, index, weight, r1 in data:
        kept = weight[(index >= 0) & (weight > 0)]
        axes[0].hist(kept, bins=40, range=(0, 1), alpha=0.6, label=name)
        axes[1].hist(r1[r1 > 0], bins=np.arange(1, r1.max(initial=1) + 2) - 0.5, alpha=0.6, label=name)
        axes[2].plot(np.sort(r1)[::-1], label=name)
    axes[0].set(title="plan weights kept per student", xlabel="weight", ylabel="count")
    axes[1].set(title="teacher reuse (top-1)", xlabel="students served by a teacher", ylabel="teachers")
    axes[2].set(title="teachers by reuse", xlabel="teacher rank", ylabel="students served (top-1)")
    for ax in axes:
        ax.legend(fontsize=7)
    af.save(fig, args.output)


if __name__ == "__main__":
    main()
