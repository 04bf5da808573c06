"""NaN and Inf injected where a cluster run meets them (docs/RELIABILITY.md), each through the real
`ackd train` / `ackd eval` under mpirun, each checked against what the project promises:

  pixels     NaN in one MS image: refused at load with the sample's index (in memory and streaming),
             before any step;
  extreme    a raster nodata value (-3.4e38, finite) in one training image, which overflows the
             forward pass: the run stops at that step with one line naming it, and the newest
             checkpoint stays the last good one, finite; with -train_nonfinite skip the step is
             skipped with a warning and the run ends with finite weights;
  checkpoint NaN written into the newest checkpoint's weights: `resume` warns and falls back to
             the previous one; `ackd eval` of it refuses with one line naming the tensor.

  nonfinite.py --mpirun "mpirun --oversubscribe -n" --ackd ACKD --out DIR"""
import argparse
import glob
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/
import checklib

check = checklib.Checks("fault.nonfinite")


def run(args, ranks, *words, timeout=240):
    cmd = shlex.split(args.mpirun) + [str(ranks), args.ackd, *words]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        check(False, f"no hang: {' '.join(cmd)} ran over {timeout} s")
        sys.exit(check.summary())


def ackd_lines(proc):
    """ackd's own lines on stderr (mpirun adds its notice after them)."""
    return [l for l in proc.stderr.splitlines() if l.startswith("ackd")]


def train_split_row(path, collection="ms"):
    with h5py.File(path, "r") as f:
        return int(np.flatnonzero(f[f"{collection}/split"][:] == 0)[5])


def all_finite(path, groups=("model", "optim")):
    bad = []
    with h5py.File(path, "r") as f:
        for g in groups:
            f[g].visititems(lambda n, o: bad.append(f"{g}/{n}") if isinstance(o, h5py.Dataset) and
                            o.dtype.kind == "f" and not np.isfinite(o[...]).all() else None)
    return bad


def checkpoints(d):
    return sorted(glob.glob(os.path.join(d, "checkpoints", "ckpt_*.h5")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--ackd", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    clean = os.path.join(args.out, "clean.h5")
    checklib.run_or_exit(shlex.split(args.mpirun) + ["2", args.ackd, "synth", "-synth_output", clean,
                          "-synth_ms_count", "400", "-synth_rgb_count", "16", "-synth_size", "16",
                          "-synth_classes", "4", "-synth_seed", "5", "-quiet"])
    train = ["train", "-teacher_arch", "smallcnn", "-teacher_width", "0.5", "-train_batch", "32", "-train_seed", "1",
             "-quiet"]

    # ---- pixels: NaN in one image, in memory and streaming
    nan_data = os.path.join(args.out, "nan_pixels.h5")
    shutil.copy(clean, nan_data)
    row = train_split_row(nan_data)
    with h5py.File(nan_data, "r+") as f:
        img = f["ms/images"][row]
        img[2, 3, 4:9] = np.nan
        f["ms/images"][row] = img
    for mode in ([], ["-h5_streaming"]):
        d = os.path.join(args.out, "nan_pixels" + ("_streaming" if mode else ""))
        p = run(args, 2, *train, "-train_data", nan_data, "-train_dir", d, "-train_epochs", "1", *mode)
        lines = ackd_lines(p)
        check(p.returncode == 1 and any(f"sample {row} holds NaN or Inf" in l for l in lines),
              f"NaN pixels{' (streaming)' if mode else ''}: exit 1 naming sample {row} "
              f"(got {p.returncode}: {lines[:2]})")
        check(not checkpoints(d), f"NaN pixels{' (streaming)' if mode else ''}: no checkpoint written")

    # ---- extreme: a nodata value that overflows float32 arithmetic, after two good epochs
    data = os.path.join(args.out, "extreme.h5")
    shutil.copy(clean, data)
    d = os.path.join(args.out, "extreme")
    checklib.run_or_exit(shlex.split(args.mpirun) + ["2", args.ackd, *train, "-train_data", data, "-train_dir", d,
                                                     "-train_epochs", "2"], what="two clean epochs")
    good = checkpoints(d)
    with h5py.File(data, "r+") as f:
        img = f["ms/images"][row]
        img[:, :8, :8] = -3.4e38
        f["ms/images"][row] = img
    p = run(args, 2, *train, "-train_data", data, "-train_dir", d, "-train_epochs", "4")
    lines = ackd_lines(p)
    check(p.returncode == 1 and any("is NaN or Inf; training stopped before applying it" in l and "step" in l
                                    for l in lines),
          f"extreme pixels: exit 1 with one line naming the step (got {p.returncode}: {lines[:2]})")
    # Besides the error, the resume's one warning that the run was extended from 2 epochs to 4.
    drift = [l for l in lines if "differ from the checkpoint" in l]
    check(len(lines) == 2 and len(drift) == 1 and "-train_epochs 4 (was 2)" in drift[0],
          f"extreme pixels: one error line and the resume's warning naming -train_epochs (got {lines})")
    check(checkpoints(d) == good, f"extreme pixels: the checkpoints are the good ones ({len(good)} files) untouched")
    check(all_finite(good[-1]) == [], "extreme pixels: the newest checkpoint is finite")
    d_skip = os.path.join(args.out, "extreme_skip")
    p = run(args, 2, *train, "-train_data", data, "-train_dir", d_skip, "-train_epochs", "2", "-train_nonfinite",
            "skip")
    skipped = [l for l in p.stderr.splitlines() if "skipped: its loss or gradient is NaN or Inf" in l]
    check(p.returncode == 0 and len(skipped) == 2,
          f"-train_nonfinite skip: exit 0, one skipped step per epoch (got {p.returncode}, {len(skipped)} warnings)")
    check(os.path.exists(os.path.join(d_skip, "best.h5")) and
          all_finite(os.path.join(d_skip, "best.h5"), ("model",)) == [],
          "-train_nonfinite skip: best.h5 finite")

    # ---- checkpoint: NaN in the newest checkpoint's weights
    d_ckpt = os.path.join(args.out, "nan_checkpoint")
    checklib.run_or_exit(shlex.split(args.mpirun) + ["2", args.ackd, *train, "-train_data", clean, "-train_dir",
                                                     d_ckpt, "-train_epochs", "2"], what="two epochs")
    newest, previous = checkpoints(d_ckpt)[-1], checkpoints(d_ckpt)[-2]
    with h5py.File(newest, "r+") as f:
        name = []
        f["model"].visititems(lambda n, o: name.append(n) if isinstance(o, h5py.Dataset) and not name else None)
        w = f["model"][name[0]]
        values = w[...]
        values.reshape(-1)[3] = np.nan
        w[...] = values
    step_prev = int(os.path.basename(previous)[5:-3])
    p = run(args, 2, "train", *train[1:-1], "-train_data", clean, "-train_dir", d_ckpt, "-train_epochs", "3")
    check(p.returncode == 0 and f"skipping checkpoint '{newest}'" in p.stderr and "is NaN or Inf" in p.stderr,
          f"resume: warns about the NaN checkpoint and goes on (got {p.returncode}: {ackd_lines(p)[:2]})")
    check(f"resuming from {previous}" in p.stdout and f"step {step_prev}" in p.stdout,
          f"resume: from the previous checkpoint, step {step_prev}")
    bad_ckpt = os.path.join(args.out, "nan_weights.h5")
    shutil.copy(previous, bad_ckpt)
    with h5py.File(bad_ckpt, "r+") as f:
        w = f["model"][name[0]]
        values = w[...]
        values.reshape(-1)[0] = np.inf
        w[...] = values
    p = run(args, 2, "eval", "-eval_checkpoint", bad_ckpt, "-eval_data", clean, "-quiet")
    lines = ackd_lines(p)
    check(p.returncode == 1 and len(lines) == 1 and "holds NaN or Inf" in lines[0] and bad_ckpt in lines[0],
          f"eval of a checkpoint with Inf: exit 1, one line naming it (got {p.returncode}: {lines[:2]})")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
