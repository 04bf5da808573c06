#!/usr/bin/python3
"""OA and loss of every checkpoint of a run on one split: drives `ackd eval` (distributed over
--ranks) on each RUN/checkpoints/ckpt_<step>.h5, keeps each eval file under --work (a rerun scores
only the checkpoints that have none yet), and reads the mean cross-entropy from the eval file's
logits and the dataset's labels.

  ckpt_eval.py RUN_DIR [--data DATA.h5] [--split val] [--ranks 2] -o series.png [--csv series.csv]

--data defaults to the dataset the checkpoints record. The checkpoint after an epoch holds the model
that epoch's validation scored, so on the val split the curve repeats metrics.h5's val_oa and
val_loss at those steps (a check of both paths)."""
import os
import shlex
import subprocess

import h5py
import numpy as np

import ackd_files as af

HERE = os.path.dirname(os.path.abspath(__file__))


def evaluate(args, path, output):
    command = shlex.split(args.mpirun) + ["-n", str(args.ranks), args.ackd, "eval", "-eval_checkpoint", path,
                                          "-eval_split", args.split, "-eval_output", output, "-quiet"]
    if args.data:
        command += ["-eval_data", args.data]
    r = subprocess.run(command, capture_output=True, text=True)
    if r.returncode != 0:
        lines = [l for l in r.stderr.splitlines() if "error" in l] or r.stderr.strip().splitlines()[-1:]
        af.die(f"ackd eval of '{path}' failed: {lines[0] if lines else f'exit {r.returncode}'}")


def scores(path):
    """(OA, mean cross-entropy) from an eval file: OA as ackd computed it; the loss from its logits."""
    with af.open_file(path, "eval") as e:
        if "logits" not in e:
            af.die(f"'{path}' has no logits (an older ackd wrote it); delete it to score the checkpoint again")
        oa, logits, rows = float(e.attrs["oa"]), np.asarray(e["logits"], dtype=np.float64), np.asarray(e["index"])
        data, modality = af.text(e.attrs["data"]), af.text(e.attrs["modality"])
    with h5py.File(data, "r") as f:
        labels = np.asarray(f[modality]["labels"])[rows]
    top = logits.max(1)
    loss = top + np.log(np.exp(logits - top[:, None]).sum(1)) - logits[np.arange(len(rows)), labels]
    return oa, float(loss.mean())


def main():
    p = af.parser(__doc__)
    p.add_argument("run")
    p.add_argument("--data", help="the dataset (default: the one each checkpoint records)")
    p.add_argument("--split", choices=("train", "val", "test"), default="val")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--ackd", default=os.path.join(os.path.dirname(HERE), "build", "release", "bin", "ackd"))
    p.add_argument("--work", help="where the eval files go (default RUN/series)")
    p.add_argument("-o", "--output", default="series.png")
    p.add_argument("--csv")
    args = p.parse_args()
    work = args.work or os.path.join(args.run, "series")
    os.makedirs(work, exist_ok=True)
    rows = []
    for step, path in af.checkpoint_series(args.run):
        with af.open_file(path, "checkpoint") as f:
            epoch = int(f.attrs.get("epoch", -1))
        output = os.path.join(work, f"eval_{args.split}_{step:012d}.h5")
        if not os.path.exists(output) or os.path.getmtime(output) < os.path.getmtime(path):
            evaluate(args, path, output)
        oa, loss = scores(output)
        rows.append([step, epoch, oa, loss])
        print(f"step {step:8d}  epoch {epoch:4d}  OA {oa:.4f}  loss {loss:.4f}")
    if args.csv:
        af.write_csv(args.csv, ["step", "epoch", f"{args.split}_oa", f"{args.split}_loss"], rows)
    fig, (a, b) = af.figure(1, 2, figsize=(10, 4))
    steps = [r[0] for r in rows]
    a.plot(steps, [r[2] for r in rows], "o-")
    a.set(xlabel="step", ylabel=f"OA ({args.split})", title=os.path.basename(os.path.abspath(args.run)))
    b.plot(steps, [r[3] for r in rows], "o-", color="C1")
    b.set(xlabel="step", ylabel=f"cross-entropy ({args.split})")
    af.save(fig, args.output)


if __name__ == "__main__":
    main()
