#!/usr/bin/python3
"""Confusion matrix of an eval file (ackd eval: eval_<split>.h5, single-label): rows the true
class, columns the prediction, normalised per row by default; prints OA, mean class accuracy
and the most confused pairs.

  confusion.py out/demo/student_kd/eval_test.h5 -o confusion.png [--counts] [--top 5]"""
import numpy as np

import ackd_files as af


def main():
    ap = af.parser(__doc__)
    ap.add_argument("eval", help="eval_<split>.h5")
    ap.add_argument("-o", "--output", default="confusion.png", help="PNG to write (default confusion.png)")
    ap.add_argument("--counts", action="store_true", help="show counts, not row fractions")
    ap.add_argument("--top", type=int, default=5, help="print this many most confused pairs")
    args = ap.parse_args()
    ev = af.read_eval(args.eval)
    if "confusion" not in ev:
        af.die(f"'{args.eval}' has no confusion matrix (a multi-label eval? it has per_class_ap)")
    c = ev["confusion"].astype(np.int64)
    k = c.shape[0]
    classes = ev.get("classes") or [str(i) for i in range(k)]
    rows = c.sum(axis=1, keepdims=True)
    frac = np.divide(c, rows, out=np.zeros(c.shape), where=rows > 0)
    oa = np.trace(c) / max(c.sum(), 1)
    mca = float(np.mean(np.diag(frac)[rows[:, 0] > 0]))
    print(f"OA {oa:.4f}  mean class accuracy {mca:.4f}  ({c.sum()} samples, {k} classes)")
    off = [(c[i, j], classes[i], classes[j]) for i in range(k) for j in range(k) if i != j and c[i, j] > 0]
    for n, t, p in sorted(off, reverse=True)[: args.top]:
        print(f"  {n:6d}  {t} -> {p}")
    fig, ax = af.figure(figsize=(1.2 + 0.55 * k, 1.0 + 0.5 * k))
    shown = c if args.counts else frac
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            if c[i, j]:
                ax.text(j, i, f"{shown[i, j]:.0f}" if args.counts else f"{shown[i, j]:.2f}", ha="center",
                        va="center", fontsize=6, color="white" if frac[i, j] > 0.5 else "black")
    ax.set_title(f"{ev.get('architecture', '')} {ev.get('split', '')}: OA {oa:.4f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    af.save(fig, args.output)


if __name__ == "__main__":
    main()
