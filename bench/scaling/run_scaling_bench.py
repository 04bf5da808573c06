#!/usr/bin/python3
"""Data-parallel training throughput and allreduce overlap, through `ackd train`.

For each rank count P: images/s and step time of full training steps (fixed global batch,
split over P ranks), once with the fused gradient exchange (one blocking allreduce after
backward) and once overlapped (bucketed MPI_Iallreduce started during backward). Both runs put
a barrier before the wait (-train_exchange_timing), so the exposed exchange time excludes rank
skew. The overlapped fraction of allreduce time is

    overlap = 1 - exposed(overlapped) / exposed(fused)

where exposed(fused) is the whole allreduce. Ranks beyond the machine's cores are oversubscribed
and labelled so. With --ckpt-program, the checkpoint write bandwidth beside dd follows
(bench/scaling/run_ckpt_bench.py).

Last lines: bench=scaling model=NAME ranks=P img_s=X overlap=F [oversubscribed]
            bench=ckpt write_gbs=X dd_gbs=Y ratio=X/Y

  run_scaling_bench.py --ackd build/release/bin/ackd [--model resnet34] [--width 1] [--ranks 1 2 4]
                       [--steps 6] [--repeat 3] [--ckpt-program build/release/bin/bench_ckpt_write]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys


def run_train(a, data, ranks, exchange):
    d = os.path.join(a.workdir, f"run_{ranks}_{exchange}")
    shutil.rmtree(d, ignore_errors=True)
    cmd = a.mpirun.split() + [str(ranks), a.ackd, "train", "-train_data", data, "-train_dir", d, "-teacher_arch",
                              a.model, "-teacher_width", str(a.width), "-train_batch", str(a.batch),
                              "-train_max_steps", str(a.steps), "-train_grad_exchange", exchange,
                              "-train_exchange_timing", "-train_ckpt_every_steps", "0", "-train_ckpt_every_epochs", "0",
                              "-train_gallery", "false"]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, a.cores // ranks)))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    m = re.search(r"train summary: ranks=\d+ steps=\d+ img_s=([0-9.]+) step_ms=([0-9.]+) exchange_blocked_ms=([0-9.]+)",
                  out)
    if not m:
        sys.exit("no summary line from ackd train:\n" + out)
    shutil.rmtree(d, ignore_errors=True)
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ackd", required=True)
    # Open MPI binds each rank to one core by default: a rank with several threads needs --bind-to none.
    p.add_argument("--mpirun", default="mpirun --oversubscribe --bind-to none -n")
    p.add_argument("--model", default="resnet34")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bands", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cores", type=int, default=os.cpu_count())
    p.add_argument("--workdir", default="out/bench_scaling")
    p.add_argument("--ckpt-program")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    data = os.path.join(a.workdir, f"data_{a.size}_{a.bands}.h5")
    if not os.path.exists(data):
        count = max(4 * a.batch, 256)
        subprocess.run(a.mpirun.split() + ["2", a.ackd, "synth", "-synth_output", data, "-synth_ms_count", str(count),
                                           "-synth_rgb_count", "64", "-synth_size", str(a.size), "-synth_bands",
                                           str(a.bands), "-quiet"], check=True)
    records = []
    for ranks in a.ranks:
        results = {"fused": [], "overlapped": []}
        for _ in range(a.repeat):  # interleaved, so load changes hit both modes alike
            for exchange in ("fused", "overlapped"):
                results[exchange].append(run_train(a, data, ranks, exchange))
        img_s = statistics.median(r[0] for r in results["overlapped"])
        step_ms = statistics.median(r[1] for r in results["overlapped"])
        fused = statistics.median(r[2] for r in results["fused"])
        exposed = statistics.median(r[2] for r in results["overlapped"])
        overlap = 1.0 - exposed / fused if ranks > 1 and fused > 0 else float("nan")
        over = ranks > a.cores
        print(f"ranks={ranks}{' (oversubscribed)' if over else ''}: step {step_ms:.1f} ms, {img_s:.1f} img/s; "
              f"allreduce {fused:.1f} ms fused, {exposed:.1f} ms exposed when overlapped", flush=True)
        records.append(f"bench=scaling model={a.model} ranks={ranks} img_s={img_s:.2f} overlap={overlap:.3f}"
                       + (" oversubscribed" if over else ""))
    if a.ckpt_program:
        out = subprocess.run(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "run_ckpt_bench.py"),
                              "--program", a.ckpt_program, "--mpirun", a.mpirun.split()[0], "--ranks", "2",
                              "--repeat", str(a.repeat), "--workdir", os.path.join(a.workdir, "ckpt")],
                             check=True, capture_output=True, text=True).stdout
        records.append(out.strip().splitlines()[-1])
    for r in records:
        print(r)


if __name__ == "__main__":
    main()
