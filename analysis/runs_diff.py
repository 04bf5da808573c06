#!/usr/bin/python3
"""Two runs side by side (e.g. KD method A against B, same seed): their metrics per epoch and the
difference (B - A), their best models' per-tensor distance when they are the same network, and,
when both directories hold an eval file of the same split, OA and per-class accuracy, with the
samples one gets right and the other wrong (the discordant pairs of McNemar's test).

  runs_diff.py RUN_A RUN_B -o diff.png [--csv diff.csv] [--split test]

The CSV has one row per epoch (metric of A, of B, B - A), then one per class when eval files exist."""
import math
import os

import numpy as np

import ackd_files as af

METRICS = ("train_loss", "val_loss", "val_oa", "loss_kd")


def best_distance(a, b):
    """{tensor: ||b - a|| / ||a||} for the same network, else None."""
    la, _ = af.checkpoint_layers(os.path.join(a, "best.h5"))
    lb, _ = af.checkpoint_layers(os.path.join(b, "best.h5"))
    shapes = lambda layers: {f"{l}.{p}": v.shape for l, ps in layers.items() for p, v in ps.items()}
    if shapes(la) != shapes(lb):
        return None
    out = {}
    for layer, params in la.items():
        for name, x in params.items():
            out[f"{layer}.{name}"] = float(np.linalg.norm(lb[layer][name] - x) / max(np.linalg.norm(x), 1e-30))
    return out


def mcnemar_p(b, c):
    """Two-sided exact McNemar p-value from the discordant counts b, c (binomial, p = 1/2)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def main():
    p = af.parser(__doc__)
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--split", default="test")
    p.add_argument("-o", "--output", default="diff.png")
    p.add_argument("--csv")
    args = p.parse_args()
    ma, _ = af.read_metrics(os.path.join(args.run_a, "metrics.h5"))
    mb, _ = af.read_metrics(os.path.join(args.run_b, "metrics.h5"))
    epochs = min(len(ma["epoch"]), len(mb["epoch"]))
    shown = [k for k in METRICS if k in ma and k in mb]
    rows = []
    for e in range(epochs):
        row = [int(ma["epoch"][e])]
        for k in shown:
            row += [ma[k][e], mb[k][e], mb[k][e] - ma[k][e]]
        rows.append(row)
    header = ["epoch"] + [f"{k}_{s}" for k in shown for s in ("a", "b", "b_minus_a")]
    for k in shown:
        print(f"{k:12s} last epoch: A {ma[k][epochs - 1]:.4f}  B {mb[k][epochs - 1]:.4f}  "
              f"B - A {mb[k][epochs - 1] - ma[k][epochs - 1]:+.4f}")
    distance = best_distance(args.run_a, args.run_b) if all(
        os.path.exists(os.path.join(r, "best.h5")) for r in (args.run_a, args.run_b)) else None
    if distance:
        worst = max(distance, key=distance.get)
        print(f"best models: median relative distance {np.median(list(distance.values())):.3f}, largest {worst} "
              f"{distance[worst]:.3f}")
    class_rows = []
    evals = [os.path.join(r, f"eval_{args.split}.h5") for r in (args.run_a, args.run_b)]
    if all(os.path.exists(e) for e in evals):
        ea, eb = (af.read_eval(e) for e in evals)
        if not np.array_equal(ea["index"], eb["index"]):
            af.die(f"the eval files score different samples: {evals[0]}, {evals[1]}")
        with af.open_file(os.path.join(af.text(ea["data"])), "dataset") as f:
            truth = np.asarray(f[ea["modality"]]["labels"])[ea["index"]]
        right_a, right_b = ea["prediction"] == truth, eb["prediction"] == truth
        only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
        print(f"{args.split}: OA A {ea['oa']:.4f}  B {eb['oa']:.4f}  B - A {eb['oa'] - ea['oa']:+.4f}; right only in A "
              f"{only_a}, only in B {only_b} (McNemar exact p = {mcnemar_p(only_a, only_b):.3g})")
        for k, name in enumerate(ea["classes"]):
            class_rows.append([name, int(ea["per_class_count"][k]), ea["per_class_accuracy"][k],
                               eb["per_class_accuracy"][k], eb["per_class_accuracy"][k] - ea["per_class_accuracy"][k]])
    if args.csv:
        af.write_csv(args.csv, header, rows)
        if class_rows:
            with open(args.csv, "a") as f:
                f.write("\nclass,samples,accuracy_a,accuracy_b,b_minus_a\n")
                f.writelines(",".join(str(x) for x in r) + "\n" for r in class_rows)
    fig, axes = af.figure(1, len(shown) + (1 if class_rows else 0), figsize=(4.2 * (len(shown) + 1), 4),
                          squeeze=False)
    x = [r[0] for r in rows]
    for ax, k in zip(axes[0], shown):
        ax.plot(x, ma[k][:epochs], "o-", label=os.path.basename(os.path.abspath(args.run_a)))
        ax.plot(x, mb[k][:epochs], "s-", label=os.path.basename(os.path.abspath(args.run_b)))
        ax.set(xlabel="epoch", ylabel=k)
    axes[0][0].legend(fontsize=7)
    if class_rows:
        ax = axes[0][-1]
        ax.barh([r[0] for r in class_rows], [r[4] for r in class_rows])
        ax.set(xlabel=f"per-class accuracy, B - A ({args.split})")
    af.save(fig, args.output)


if __name__ == "__main__":
    main()
