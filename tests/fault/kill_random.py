#!/usr/bin/python3
"""kill -9 at random moments of a training run that checkpoints at every step, so that kills land
in or next to checkpoint writes, twice per trial, then the same command until it finishes
(docs/RELIABILITY.md). Kills come once the run has written (or is writing) a checkpoint beyond the
last one: a kill during Open MPI's own launch is the launcher's business. Each trial kills one of:

  mpirun   the launcher: its ranks are orphaned and must stop by themselves, writing nothing;
  rank     one rank: mpirun must end the job, the other rank included.

What must hold after every trial:
  - no process of the killed job is left after a bounded wait;
  - the next run starts (a lock left by the killed one is provably stale and taken over) and
    resumes from the newest complete checkpoint, never from a torn one;
  - the finished run is bitwise the uninterrupted one (training is deterministic on a fixed rank
    count, and a resume restores the whole state: weights, optimiser, data order);
  - no .part file is left, and every checkpoint opens in h5py.

  kill_random.py --mpirun "mpirun --oversubscribe -n" --ackd ACKD --out DIR [--trials N] [--seed S]

The kill times come from --seed (printed), so a failing trial can be replayed."""
import argparse
import glob
import os
import pathlib
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/
import checklib

check = checklib.Checks("fault.kill_random")
STEPS = 24


def train_cmd(args, directory):
    return shlex.split(args.mpirun) + [
        "2", args.ackd, "train", "-train_data", os.path.join(args.out, "data.h5"), "-train_dir", directory,
        "-teacher_arch", "smallcnn", "-teacher_width", "0.5", "-train_batch", "32", "-train_seed", "3",
        "-train_epochs", "100", "-train_max_steps", str(STEPS), "-train_ckpt_every_steps", "1",
        "-train_ckpt_keep", "2"]


def finish(args, directory, log):
    """Runs the training to its end; returns the completed process."""
    with open(log, "w") as out:
        try:
            return subprocess.run(train_cmd(args, directory), stdout=out, stderr=subprocess.STDOUT, timeout=240)
        except subprocess.TimeoutExpired:
            check(False, f"no hang: the run in {directory} ended within 240 s")
            sys.exit(check.summary())


def newest_model(directory):
    paths = sorted(glob.glob(os.path.join(directory, "checkpoints", "ckpt_*.h5")))
    if not paths:
        return None, -1
    arrays = {}
    with h5py.File(paths[-1], "r") as f:
        f["model"].visit(lambda name: arrays.__setitem__(name, f["model"][name][()])
                         if isinstance(f["model"][name], h5py.Dataset) else None)
        return arrays, int(f["state"].attrs["step"])


def job_processes(directory):
    """The pids of processes still running with DIRECTORY on their command line."""
    found = subprocess.run(["pgrep", "-f", "--", f"-train_dir {directory}( |$)"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def wait_gone(directory, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not job_processes(directory):
            return True
        time.sleep(0.05)
    return False


def checkpoint_steps(directory):
    """The steps of the checkpoint files in DIR/checkpoints, complete or being written."""
    steps = []
    for path in glob.glob(os.path.join(directory, "checkpoints", "ckpt_*.h5*")):
        name = os.path.basename(path)
        digits = name[len("ckpt_"):].split(".")[0]
        if digits.isdigit():
            steps.append(int(digits))
    return steps


def wait_for_step_beyond(directory, step, launcher, seconds=60):
    """Waits until a checkpoint of a step beyond STEP is being written or is written; False if the
    launcher ended first or time ran out."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and launcher.poll() is None:
        if any(s > step for s in checkpoint_steps(directory)):
            return True
        time.sleep(0.01)
    return False


def trial(args, rng, number, reference, span):
    """SPAN: how long the uninterrupted run trains after its first checkpoint."""
    directory = os.path.join(args.out, f"trial{number}")
    shutil.rmtree(directory, ignore_errors=True)
    victim = "mpirun" if number % 2 == 0 else "rank"
    kills = []
    killed_at = -1
    # Two kills per trial, each at a random moment once the run trains (the launch itself is Open
    # MPI's), so the second one lands on a run that has resumed.
    for _ in range(2):
        # Beyond every checkpoint file already there, the .part a kill left mid-write included: the
        # new run removes that one only once it has started, and a kill timed by it would land in
        # Open MPI's launch (once in ~40 kills, mpirun then outlived its killed rank by 60 s).
        floor = max(checkpoint_steps(directory), default=-1)
        with open(os.path.join(args.out, f"trial{number}.killed.log"), "a") as out:
            launcher = subprocess.Popen(train_cmd(args, directory), stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            if not wait_for_step_beyond(directory, floor, launcher):
                check(launcher.poll() == 0, f"trial {number}: the run checkpoints or ends within 60 s")
            delay = rng.uniform(0, span / 2)
            time.sleep(delay)
            target = launcher.pid
            if victim == "rank":
                ranks = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True)
                pids = [int(p) for p in ranks.stdout.split()]
                if pids:
                    target = rng.choice(pids)
            writing = bool(glob.glob(os.path.join(directory, "**", "*.part"), recursive=True))
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the run had already ended: the resume below then has nothing left to do
            kills.append(f"{delay:.2f} s{' (mid-write)' if writing else ''}")
            try:
                launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                check(False, f"trial {number}: mpirun ended within 60 s of its rank's kill -9")
                os.killpg(launcher.pid, signal.SIGKILL)
        # An orphaned rank stops at its next step; a step here takes well under a second.
        check(wait_gone(directory, 30), f"trial {number} ({victim}): no process of the killed job left after 30 s")
        for pid in job_processes(directory):
            os.kill(pid, signal.SIGKILL)
        _, killed_at = newest_model(directory)
    log = os.path.join(args.out, f"trial{number}.log")
    proc = finish(args, directory, log)
    text = open(log).read()
    what = f"trial {number} ({victim} killed at {', '.join(kills)} into training)"
    check(proc.returncode == 0, f"{what}: the next run ends with exit 0 "
          f"(got {proc.returncode}: {text.strip().splitlines()[-1:] if text.strip() else ''})")
    if 0 <= killed_at < STEPS:
        check(f"step {killed_at}" in text,
              f"trial {number}: the next run resumed from the newest complete checkpoint, step {killed_at}")
    arrays, step = newest_model(directory)
    check(step == STEPS, f"trial {number}: the run reached step {STEPS} (got {step})")
    if arrays is not None:
        same = arrays.keys() == reference.keys() and all(np.array_equal(arrays[k], reference[k]) for k in arrays)
        check(same, f"trial {number}: the finished weights are bitwise the uninterrupted run's")
    parts = glob.glob(os.path.join(directory, "**", "*.part"), recursive=True)
    check(not parts, f"trial {number}: no .part file left ({parts})")
    for path in glob.glob(os.path.join(directory, "**", "*.h5"), recursive=True):
        try:
            with h5py.File(path, "r"):
                pass
        except OSError as e:
            check(False, f"trial {number}: h5py opens {path} ({e})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mpirun", required=True)
    p.add_argument("--ackd", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--trials", type=int, default=6, help="even trials kill mpirun, odd ones a rank")
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"fault.kill_random: seed {args.seed} (replay with --seed {args.seed})", flush=True)
    rng = random.Random(args.seed)
    data = os.path.join(args.out, "data.h5")
    if not os.path.exists(data):
        subprocess.run(shlex.split(args.mpirun) + [
            "2", args.ackd, "synth", "-synth_output", data, "-synth_ms_count", "400", "-synth_rgb_count", "16",
            "-synth_size", "16", "-synth_classes", "4", "-synth_seed", "5", "-quiet"], check=True)
    reference_dir = os.path.join(args.out, "reference")
    shutil.rmtree(reference_dir, ignore_errors=True)
    with open(os.path.join(args.out, "reference.log"), "w") as out:
        launcher = subprocess.Popen(train_cmd(args, reference_dir), stdout=out, stderr=subprocess.STDOUT)
        wait_for_step_beyond(reference_dir, -1, launcher)
        start = time.monotonic()
        try:
            launcher.wait(timeout=240)
        except subprocess.TimeoutExpired:
            launcher.kill()
    span = time.monotonic() - start
    check(launcher.returncode == 0, f"the uninterrupted run ends with exit 0 ({span:.1f} s after its first checkpoint)")
    reference, step = newest_model(reference_dir)
    if reference is None or step != STEPS:
        sys.exit(check.summary("no reference"))
    for number in range(args.trials):
        trial(args, rng, number, reference, span)
    sys.exit(check.summary(f"seed {args.seed}"))


if __name__ == "__main__":
    main()
