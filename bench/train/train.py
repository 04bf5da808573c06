#!/usr/bin/python3
"""bench/train: images/s of one full training step (forward, cross-entropy,
backward, Adam), ackd beside PyTorch on the same machine in the same run.

Both sides: batch 64, input 10x64x64, 10 classes, 2 threads, the same
architectures (PyTorch's are torchvision's, configured as ackd's by
analysis/ackd_torch.py), a median over the timed steps after warm-up
steps. On a shared machine the load drifts, so the two sides alternate in
rounds (ackd's steps, then PyTorch's, --rounds times); each round gives a
ratio, and the record holds the medians over rounds of the rates and of the
ratios. Each round also reports the rate of each side's fastest step, the
least disturbed one on a shared machine (best_ratio; a summary line per model
before the records). The last lines are one record per model:
    bench=train model=NAME ackd_img_s=X torch_img_s=Y ratio=X/Y"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "analysis"))


class TorchStep:
    """A PyTorch model, optimizer and batch kept alive across rounds."""

    def __init__(self, name, batch, bands, size, classes, threads):
        import torch
        import ackd_torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.net = ackd_torch.build(name, bands, classes, 1.0, image_size=size)
        self.net.train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.x = torch.rand(batch, bands, size, size) * 2 - 1
        self.y = torch.randint(0, classes, (batch,))
        self.batch = batch

    def img_s(self, warmup, steps):
        times = []
        for s in range(warmup + steps):
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            logits = self.net.outputs(self.x)[2]
            self.torch.nn.functional.cross_entropy(logits, self.y).backward()
            self.opt.step()
            if s >= warmup:
                times.append(time.perf_counter() - t0)
        return self.batch / statistics.median(times), self.batch / min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ackd", required=True, help="path of the bench_train executable")
    p.add_argument("--models", default="resnet34,resnet18,mobilenetv2,shufflenetv2")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--bands", type=int, default=10)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per side and round")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    records = []
    for name in a.models.split(","):
        reference = TorchStep(name, a.batch, a.bands, a.size, a.classes, a.threads)
        ackd_rates, torch_rates, ratios, best_ratios = [], [], [], []
        for r in range(a.rounds):
            out = subprocess.run([a.ackd, "-models", name, "-batch", str(a.batch), "-bands", str(a.bands), "-size",
                                  str(a.size), "-classes", str(a.classes), "-threads", str(a.threads), "-warmup",
                                  str(a.warmup), "-steps", str(a.steps)], env=env, check=True, capture_output=True,
                                 text=True).stdout
            ackd_rates.append(float(re.search(r" img_s=([0-9.]+)", out).group(1)))
            ackd_best = float(re.search(r"best_img_s=([0-9.]+)", out).group(1))
            torch_rate, torch_best = reference.img_s(a.warmup if r == 0 else 1, a.steps)
            torch_rates.append(torch_rate)
            ratios.append(ackd_rates[-1] / torch_rates[-1])
            best_ratios.append(ackd_best / torch_best)
            print(f"round {r + 1} model={name} ackd_img_s={ackd_rates[-1]:.2f} torch_img_s={torch_rates[-1]:.2f} "
                  f"ratio={ratios[-1]:.3f} ackd_best={ackd_best:.2f} torch_best={torch_best:.2f} "
                  f"best_ratio={best_ratios[-1]:.3f}", flush=True)
        print(f"model={name} median_best_ratio={statistics.median(best_ratios):.3f}", flush=True)
        records.append(f"bench=train model={name} ackd_img_s={statistics.median(ackd_rates):.2f} "
                       f"torch_img_s={statistics.median(torch_rates):.2f} ratio={statistics.median(ratios):.3f}")
    print("\n".join(records))


if __name__ == "__main__":
    main()
