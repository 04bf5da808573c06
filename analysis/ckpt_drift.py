#!/usr/bin/python3
"""Per-tensor statistics over a run's checkpoint series: the weights' norm, their drift from the
first checkpoint (||w - w_first|| / ||w_first||), the update-to-weight ratio between consecutive
checkpoints (||w_t - w_prev|| / ||w_prev||, divided by the optimizer steps between them), and
Adam's moments: the RMS of m and of sqrt(v), each tensor's slice found through the checkpoint's
parameter_order_<group> (docs/FORMATS.md).

  ckpt_drift.py RUN_DIR -o drift.png [--csv drift.csv] [--group model]

The CSV has one row per (checkpoint, tensor); the figure plots, per checkpoint, the update ratio
and the RMS of sqrt(v) of every trainable tensor in the network's order."""
import os

import numpy as np

import ackd_files as af


def read_state(path, group):
    """({tensor: float64 values} of the group's trainable tensors in optimizer order, m, v, optimizer steps)."""
    with af.open_file(path, "checkpoint") as f:
        order_key = f"parameter_order_{group}"
        if order_key not in f.attrs:
            af.die(f"'{path}' has no {order_key} (an older ackd wrote it, or no group '{group}')")
        order = af.text(f.attrs[order_key]).split()
        tensors = {}
        for name in order:
            layer, _, tensor = name.rpartition(".")
            key = f"{group}/{layer}/{tensor}" if layer else f"{group}/{tensor}"
            if key not in f:
                af.die(f"'{path}': parameter_order_{group} names '{name}', which is not under /{group}")
            tensors[name] = np.asarray(f[key], dtype=np.float64).ravel()
        m = np.asarray(f[f"optim/{group}.m"], dtype=np.float64)
        v = np.asarray(f[f"optim/{group}.v"], dtype=np.float64)
        steps = int(f.attrs.get(f"optimizer_steps_{group}", 0))
    if sum(t.size for t in tensors.values()) != m.size:
        af.die(f"'{path}': the tensors of parameter_order_{group} hold {sum(t.size for t in tensors.values())} values, "
               f"its Adam moments {m.size}")
    return tensors, m, v, steps


def norm(x):
    return float(np.sqrt(np.dot(x, x)))


def main():
    p = af.parser(__doc__)
    p.add_argument("run")
    p.add_argument("--group", default="model", help="the parameter group (model; kd for a method's own)")
    p.add_argument("-o", "--output", default="drift.png")
    p.add_argument("--csv")
    args = p.parse_args()
    rows, first, prev, prev_steps, curves = [], None, None, 0, []
    for step, path in af.checkpoint_series(args.run):
        tensors, m, v, steps = read_state(path, args.group)
        first = first or tensors
        offset, ratios, rms_v = 0, [], []
        for name, w in tensors.items():
            n = w.size
            mt, vt = m[offset:offset + n], v[offset:offset + n]
            offset += n
            drift = norm(w - first[name]) / max(norm(first[name]), 1e-30)
            ratio = float("nan")
            if prev is not None and steps > prev_steps:
                ratio = norm(w - prev[name]) / max(norm(prev[name]), 1e-30) / (steps - prev_steps)
            ratios.append(ratio)
            rms_v.append(float(np.sqrt(np.mean(vt))) if n else 0.0)
            rows.append([step, name, n, norm(w), drift, ratio, float(np.sqrt(np.mean(mt * mt))),
                         float(np.sqrt(np.mean(vt)))])
        curves.append((step, ratios, rms_v))
        prev, prev_steps = tensors, steps
        print(f"step {step:8d}  {len(tensors)} tensors  largest drift {max(r[4] for r in rows[-len(tensors):]):.4f}")
    if args.csv:
        af.write_csv(args.csv, ["step", "tensor", "values", "norm", "drift_from_first", "update_ratio_per_step",
                                "adam_m_rms", "adam_sqrt_v_rms"], rows)
    fig, (a, b) = af.figure(2, 1, figsize=(11, 7), sharex=True)
    for step, ratios, rms_v in curves:
        if not np.all(np.isnan(ratios)):
            a.semilogy(ratios, label=f"step {step}")
        b.semilogy(rms_v, label=f"step {step}")
    a.set(ylabel="update / weight per step", title=os.path.basename(os.path.abspath(args.run)))
    b.set(xlabel=f"tensor (network order, {len(curves[0][1])} in all)", ylabel="RMS of sqrt(v)")
    for ax in (a, b):
        ax.legend(fontsize=7)
    af.save(fig, args.output)


if __name__ == "__main__":
    main()
