#!/usr/bin/python3
"""What a teacher's soft labels can tell a student beyond its label, from a gallery (the teacher's
logits on its training images): its accuracy there, its probability of the label at T = 1 and at
the KD temperature T, and how much its soft labels at T differ between the scenes of one class.

If they hardly differ, every teacher of a class gives a student the same target, and no matching
of students to teachers within the class can change what logit KD teaches (docs/RESULTS.md, "The
true pairs").

  soft_labels.py GALLERY.h5 [-T 4] [--csv F]

Printed: per class and over all scenes, the teacher's accuracy, its mean probability of the label
at T = 1 and at T, the mean KL(p_i || class mean) of the soft labels at T, and the share of their
total variance (squared distance to the mean, summed over classes) that lies within classes; and
the mean KL between the class means."""
import numpy as np

import ackd_files as af


def softmax(z, T):
    e = np.exp((z - z.max(axis=1, keepdims=True)) / T)
    return e / e.sum(axis=1, keepdims=True)


def kl_rows(p, q):
    """KL(p_i || q) per row; q one distribution or one per row."""
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def main():
    ap = af.parser(__doc__)
    ap.add_argument("gallery", help="gallery.h5 (ackd train, or analysis/torch_gallery.py)")
    ap.add_argument("-T", "--temperature", type=float, default=4.0, help="the KD temperature (default 4)")
    ap.add_argument("--csv", metavar="FILE", help="the per-class table as CSV")
    args = ap.parse_args()
    if not args.temperature > 0:
        af.die(f"-T {args.temperature}: the temperature must be positive")
    with af.open_file(args.gallery, "gallery") as f:
        if "gallery/logits" not in f or "gallery/labels" not in f:
            af.die(f"'{args.gallery}' has no /gallery/logits or /gallery/labels")
        z = np.asarray(f["gallery/logits"][...], dtype=np.float64)
        y = np.asarray(f["gallery/labels"][...])
        names = [af.text(n) for n in f["gallery/classes"][...]] if "gallery/classes" in f else None
    if y.ndim != 1:
        af.die(f"'{args.gallery}' is a multi-label gallery: one class per scene is needed")
    if not np.all(np.isfinite(z)):
        af.die(f"'{args.gallery}' holds NaN or Inf logits")
    K = z.shape[1]
    names = names or [str(k) for k in range(K)]
    p1, pT = softmax(z, 1.0), softmax(z, args.temperature)
    rows, within, classes = [], 0.0, [k for k in range(K) if np.any(y == k)]
    means = {k: pT[y == k].mean(axis=0) for k in classes}
    for k in classes:
        sel = y == k
        within += np.sum((pT[sel] - means[k]) ** 2)
        rows.append((names[k], int(sel.sum()), np.mean(z[sel].argmax(axis=1) == k), p1[sel, k].mean(),
                     pT[sel, k].mean(), kl_rows(pT[sel], means[k]).mean()))
    total = np.sum((pT - pT.mean(axis=0)) ** 2)
    between = [kl_rows(means[a][None], means[b][None])[0] for a in classes for b in classes if a != b]
    print(f"{len(y)} scenes, {len(classes)} classes, T = {args.temperature:g}")
    print(f"{'class':24s} {'scenes':>6s} {'accuracy':>8s} {'p(label)':>8s} {'at T':>6s} {'KL to mean':>10s}")
    for name, n, acc, py1, pyT, kl in rows:
        print(f"{name[:24]:24s} {n:6d} {acc:8.4f} {py1:8.4f} {pyT:6.3f} {kl:10.4f}")
    all_kl = np.concatenate([kl_rows(pT[y == k], means[k]) for k in classes])
    print(f"all: accuracy {np.mean(z.argmax(axis=1) == y):.4f}, p(label) {p1[np.arange(len(y)), y].mean():.4f} "
          f"at T = 1 and {pT[np.arange(len(y)), y].mean():.4f} at T; within-class KL to the class mean "
          f"{all_kl.mean():.4f}, between class means {np.mean(between) if between else float('nan'):.4f}; "
          f"within-class share of the variance {within / total if total > 0 else float('nan'):.4f}")
    if args.csv:
        with open(args.csv, "w") as out:
            out.write("class,scenes,accuracy,p_label,p_label_at_T,kl_to_class_mean\n")
            for row in rows:
                out.write(",".join(str(v) for v in row) + "\n")


if __name__ == "__main__":
    main()
