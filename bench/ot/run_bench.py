#!/usr/bin/python3
"""bench=ot: ms per Sinkhorn iteration of ackd beside POT on the same data.

  run_bench.py --bench BENCH_OT --mpiexec MPIEXEC [--sizes 2000 4000 8000] [--ranks 1 2] [--dim 64]
               [--configs scaling:double scaling:double:single scaling:single log:double online:rotating]
               [--rounds 3]

For each size n (n = m, d features, squared Euclidean cost, eps = 0.05 max C)
it measures, interleaved round by round so that every figure sees the same
load: POT's `sinkhorn` (kernel, numpy) and `sinkhorn_log` in this process, on
the very same matrices (the closed formula of bench_ot.c), and bench_ot (ackd)
for every configuration (-ot_sinkhorn_kernel : -ot_precision [: -ot_kernel_precision,
the solver's default when left out]; or online:replicated|rotating, C recomputed
in every pass, -ot_online_layout) and rank count.
Each figure is the median over rounds of a per-round median; one record per
configuration and rank count:

  bench=ot n=N ranks=P kernel=K precision=Q kernel_precision=R ackd_ms=... pot_ms=... pot_log_ms=... bound_ms=... ...
  bench=ot_online n=N ranks=P layout=L ackd_ms=... pot_ms=... pot_log_ms=... gemm_ms=... of_gemm=...

The online records' reference is gemm_ms: the DGEMMs that make the rank's
block of X Y^T in one call each per pass, timed by bench_ot in the same run.

Per-iteration times are differences of a short and a long run, for POT as for
ackd, so building the kernel and the cost matrix is not counted.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

sys.modules.setdefault("torch", None)  # POT's PyTorch backend (1.3 s to import) is not measured here
import ot  # noqa: E402


def features(side, n, d):
    i = np.arange(n, dtype=np.float64)[:, None]
    k = np.arange(d, dtype=np.float64)[None, :]
    if side == 0:
        return np.sin(0.001 * i * (k + 1) + k)
    return np.cos(0.0007 * i * (k + 1) + 2.0 * k)


def per_iteration_ms(solve, short, long, reps):
    def timed(iters):
        t0 = time.perf_counter()
        solve(iters)
        return time.perf_counter() - t0
    diffs = []
    for _ in range(reps):  # pairs back to back: each pair sees one load
        s = timed(short)
        diffs.append((timed(long) - s) / (long - short) * 1e3)
    return statistics.median(diffs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--log-iters", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", nargs="+",
                    default=["scaling:double:double", "scaling:double:single", "scaling:single", "log:double"])
    args = ap.parse_args()
    print(f"bench=ot load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"(1, 5, 15 min) on {os.cpu_count()} cores", flush=True)
    for n in args.sizes:
        x, y = features(0, n, args.dim), features(1, n, args.dim)
        M = ot.dist(x, y)
        eps = 0.05 * M.max()
        a = np.full(n, 1.0 / n)
        kw = dict(stopThr=0.0, warn=False)
        sk = lambda it: ot.sinkhorn(a, a, M, eps, method="sinkhorn", numItermax=it, **kw)
        sl = lambda it: ot.sinkhorn(a, a, M, eps, method="sinkhorn_log", numItermax=it, **kw)
        sk(10)  # warm-up
        pot, pot_log, ackd, recs = [], [], {}, {}
        for _ in range(args.rounds):
            pot.append(per_iteration_ms(sk, 10, 10 + args.iters, 3))
            pot_log.append(per_iteration_ms(sl, 1, 1 + args.log_iters, 1))
            for cfg in args.configs:
                kernel, precision, *kernel_precision = cfg.split(":")
                extra = ["-bench_ot_kernel_precision", kernel_precision[0]] if kernel_precision else []
                if kernel == "online":  # precision holds the layout
                    kernel, extra = "log", ["-bench_ot_online", "-bench_ot_online_layout", precision]
                    precision = "double"
                for p in args.ranks:
                    # --bind-to none: pinned to one core, a rank would share it with whatever else runs there
                    out = subprocess.run([args.mpiexec, "--oversubscribe", "--bind-to", "none", "-n", str(p),
                                          args.bench, "-n", str(n), "-d", str(args.dim), "-iters", str(args.iters),
                                          "-reps", "3", "-bench_ot_sinkhorn_kernel", kernel,
                                          "-bench_ot_precision", precision] + extra,
                                         check=True, capture_output=True, text=True).stdout
                    rec = dict(re.findall(r"(\w+)=([^\s]+)", out))
                    ackd.setdefault((cfg, p), []).append(float(rec["ackd_ms"]))
                    recs[(cfg, p)] = rec
        pot_ms, pot_log_ms = statistics.median(pot), statistics.median(pot_log)
        for (cfg, p), times in ackd.items():
            rec = recs[(cfg, p)]
            ms = max(statistics.median(times), 1e-9)  # ratios stay defined when a tiny size times noise
            if "online" in rec:
                print(f"bench=ot_online n={n} d={args.dim} ranks={p} grid={rec['grid']} layout={rec['online']} "
                      f"ackd_ms={ms:.3f} pot_ms={pot_ms:.3f} pot_log_ms={pot_log_ms:.3f} gemm_ms={rec['gemm_ms']} "
                      f"speedup_pot={pot_ms / ms:.1f} speedup_pot_log={pot_log_ms / ms:.1f} "
                      f"of_gemm={ms / float(rec['gemm_ms']):.2f} rounds={len(times)}", flush=True)
                continue
            print(f"bench=ot n={n} ranks={p} grid={rec['grid']} kernel={rec['kernel']} precision={rec['precision']} "
                  f"kernel_precision={rec.get('kernel_precision', '-')} "
                  f"ackd_ms={ms:.3f} pot_ms={pot_ms:.3f} pot_log_ms={pot_log_ms:.3f} bound_ms={rec['bound_ms']} "
                  f"stream_gbs={rec['stream_gbs']} speedup_pot={pot_ms / ms:.1f} speedup_pot_log={pot_log_ms / ms:.1f} "
                  f"of_bound={ms / float(rec['bound_ms']):.2f} rounds={len(times)}", flush=True)
    print(f"bench=ot load at the end: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
