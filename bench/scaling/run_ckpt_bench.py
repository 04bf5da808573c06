#!/usr/bin/python3
"""Checkpoint write bandwidth beside dd to the same directory, both synced
to disk (ackd: fsync then rename; dd: conv=fsync), both replacing their
previous file (ackd: -ckpt_keep 1 prunes it), medians over --repeat.

Last line: bench=ckpt write_gbs=X dd_gbs=Y ratio=X/Y

  run_ckpt_bench.py --program build/release/bin/bench_ckpt_write [--ranks 2] [--params 21797672] [--repeat 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import time


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--program", required=True)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--params", type=int, default=21797672)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", default="out/bench_ckpt")
    a = p.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    out = subprocess.run([a.mpirun, "-n", str(a.ranks), a.program, "-bench_params", str(a.params), "-bench_reps",
                          str(a.repeat), "-ckpt_dir", os.path.join(a.workdir, "ckpts"), "-ckpt_keep", "1"],
                         check=True, capture_output=True, text=True).stdout
    runs = [(float(s), int(b)) for s, b in re.findall(r"seconds=([0-9.]+) bytes=([0-9]+)", out)]
    nbytes = runs[0][1]
    ckpt_s = statistics.median(s for s, _ in runs)
    # dd pays what the checkpoint pays: with -ckpt_keep 1 each commit after
    # the first removes the previous checkpoint, so each dd after the first
    # removes the previous file inside its timed region
    dd_times, previous = [], None
    block = 4 << 20
    for r in range(a.repeat):
        target = os.path.join(a.workdir, f"dd.{r}.bin")
        t0 = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", f"of={target}", f"bs={block}", f"count={max(1, nbytes // block)}",
                        "conv=fsync", "status=none"], check=True)
        if previous:
            os.remove(previous)
        dd_times.append(time.perf_counter() - t0)
        previous = target
    os.remove(previous)
    dd_s = statistics.median(dd_times)
    write_gbs, dd_gbs = nbytes / ckpt_s / 1e9, max(1, nbytes // block) * block / dd_s / 1e9
    print(f"# {nbytes / 1e6:.0f} MB checkpoint on {a.ranks} rank(s): {ckpt_s:.3f} s; dd: {dd_s:.3f} s")
    print(f"bench=ckpt write_gbs={write_gbs:.3f} dd_gbs={dd_gbs:.3f} ratio={write_gbs / dd_gbs:.3f}")


if __name__ == "__main__":
    main()
