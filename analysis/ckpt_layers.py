#!/usr/bin/python3
"""Per-layer view of a checkpoint (ackd_format "checkpoint": /model/<layer>/<param>): the L2 norm
of every layer's parameters; given two checkpoints of the same model, the change of every layer
between them (||b - a|| and ||b - a|| / ||a||), e.g. to see which layers distillation moved.

  ckpt_layers.py out/demo/teacher/best.h5 -o norms.png
  ckpt_layers.py ckpt_000000001000.h5 ckpt_000000002000.h5 -o change.png [--csv change.csv]

Printed: one line per layer: name, values, norm (and change, relative change)."""
import numpy as np

import ackd_files as af


def layer_norms(layers):
    return {name: float(np.sqrt(sum(np.sum(p * p) for p in params.values()))) for name, params in layers.items()}


def main():
    ap = af.parser(__doc__)
    ap.add_argument("checkpoint", nargs="+", help="one checkpoint, or two of the same model to compare")
    ap.add_argument("-o", "--output", default="layers.png", help="PNG to write (default layers.png)")
    ap.add_argument("--csv", help="also write the table as CSV")
    args = ap.parse_args()
    if len(args.checkpoint) > 2:
        af.die("give one checkpoint, or two to compare")
    a, step_a = af.checkpoint_layers(args.checkpoint[0])
    names = list(a)
    norms = layer_norms(a)
    rows = [[n, sum(p.size for p in a[n].values()), norms[n]] for n in names]
    header = ["layer", "values", "norm"]
    if len(args.checkpoint) == 2:
        b, step_b = af.checkpoint_layers(args.checkpoint[1])
        problems = [n for n in names if n not in b or {k: v.shape for k, v in a[n].items()} !=
                    {k: v.shape for k, v in b[n].items()}] + [n for n in b if n not in a]
        if problems:
            af.die(f"the checkpoints hold different models (first difference: layer {problems[0]})")
        header += ["change", "relative"]
        for row in rows:
            n = row[0]
            d = float(np.sqrt(sum(np.sum((b[n][k] - a[n][k]) ** 2) for k in a[n])))
            row += [d, d / row[2] if row[2] > 0 else float("inf")]
        print(f"change from step {step_a} to step {step_b}")
    width = max(len(n) for n in names)
    print(f"{'layer':<{width}}  " + "  ".join(f"{h:>12}" for h in header[1:]))
    for row in rows:
        print(f"{row[0]:<{width}}  {row[1]:>12d}  " + "  ".join(f"{v:>12.6g}" for v in row[2:]))
    if args.csv:
        with open(args.csv, "w") as out:
            out.write(",".join(header) + "\n")
            out.writelines(",".join(str(v) for v in row) + "\n" for row in rows)
        print(f"wrote {args.csv}")
    fig, axes = af.figure(1, len(header) - 2, figsize=(5 + 5 * (len(header) - 3), 1.5 + 0.22 * len(names)),
                          squeeze=False)
    y = np.arange(len(names))
    for ax, col, title in zip(axes[0], (2, 4), ("parameter norm", "relative change ||b - a|| / ||a||")):
        ax.barh(y, [row[col] for row in rows])
        ax.set_yticks(y, names, fontsize=6)
        ax.invert_yaxis()
        ax.set_title(title)
    af.save(fig, args.output)


if __name__ == "__main__":
    main()
