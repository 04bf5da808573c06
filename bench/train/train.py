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
    bench=train model=NAME ackd_img_s=X torch_img_s=Y ratio=X/Y

With --precision bf16 each round times four sides: ackd in float32 and with
bf16 convolutions (-precision bf16), PyTorch in float32 and under its CPU
autocast to bfloat16 (which also runs convolutions in bf16 and batch norm in
float32); the records are
    bench=train_bf16 model=NAME ackd_bf16_img_s=A ackd_fp32_img_s=B torch_fp32_img_s=C
        torch_bf16_img_s=D speedup=A/B ratio_fp32=A/C ratio_bf16=A/D
each a median over rounds (nan where PyTorch's autocast fails on the model);
--precision both gives the float32 records (from the float32 sides of the
same rounds), then these. On a CPU without bf16
instructions ackd refuses the precision, and the benchmark says so in one line
per model instead."""
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

    def img_s(self, warmup, steps, bf16=False):
        times = []
        for s in range(warmup + steps):
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            # autocast covers the forward only, as PyTorch's recipe says: backward follows its casts
            with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=bf16):
                logits = self.net.outputs(self.x)[2]
                loss = self.torch.nn.functional.cross_entropy(logits, self.y)
            loss.backward()
            self.opt.step()
            if s >= warmup:
                times.append(time.perf_counter() - t0)
        return self.batch / statistics.median(times), self.batch / min(times)


def ackd_img_s(a, env, name, precision):
    """One round of ackd's side: the median rate and the fastest step's, or None when it refuses."""
    proc = subprocess.run([a.ackd, "-models", name, "-batch", str(a.batch), "-bands", str(a.bands), "-size",
                           str(a.size), "-classes", str(a.classes), "-threads", str(a.threads), "-warmup",
                           str(a.warmup), "-steps", str(a.steps), "-precision", precision], env=env,
                          capture_output=True, text=True)
    if precision == "bf16" and proc.returncode != 0 and "AVX512_BF16" in proc.stdout + proc.stderr:
        return None
    if proc.returncode != 0:
        raise SystemExit(f"bench_train failed:\n{proc.stdout}{proc.stderr}")
    return (float(re.search(r" img_s=([0-9.]+)", proc.stdout).group(1)),
            float(re.search(r"best_img_s=([0-9.]+)", proc.stdout).group(1)))


def bf16_rounds(a, env, name, reference):
    """--precision bf16: four sides per round (see the module's docstring). Returns the record, or the
    skip line, and the float32 sides' rounds ({"ackd": [(rate, best)], "torch": [...]}, None when
    skipped), from which --precision both makes the float32 record without timing them again."""
    rates = {"ackd_bf16": [], "ackd_fp32": [], "torch_fp32": [], "torch_bf16": []}
    fp32 = {"ackd": [], "torch": []}
    for r in range(a.rounds):
        bf16 = ackd_img_s(a, env, name, "bf16")
        if bf16 is None:
            skipped = f"bench=train_bf16 model={name} skipped: this CPU has no bf16 instructions (AVX512_BF16 or AMX)"
            return skipped, None
        rates["ackd_bf16"].append(bf16[0])
        fp32["ackd"].append(ackd_img_s(a, env, name, "fp32"))
        rates["ackd_fp32"].append(fp32["ackd"][-1][0])
        warmup = a.warmup if r == 0 else 1
        fp32["torch"].append(reference.img_s(warmup, a.steps))
        rates["torch_fp32"].append(fp32["torch"][-1][0])
        try:
            rates["torch_bf16"].append(reference.img_s(warmup, a.steps, bf16=True)[0])
        except RuntimeError as e:  # an op without a bf16 kernel in this PyTorch (1.13: ReLU6's backward)
            rates["torch_bf16"].append(float("nan"))
            if r == 0:
                print(f"model={name} PyTorch's autocast cannot train it: {str(e).splitlines()[0]}", flush=True)
        print(f"round {r + 1} model={name} " + " ".join(f"{k}_img_s={v[-1]:.2f}" for k, v in rates.items()),
              flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    # ratios per round, then their median: the rounds share the load of their moment
    ratio = {k: statistics.median(x / y for x, y in zip(rates["ackd_bf16"], rates[k]))
             for k in ("ackd_fp32", "torch_fp32", "torch_bf16")}
    return (f"bench=train_bf16 model={name} " + " ".join(f"{k}_img_s={v:.2f}" for k, v in med.items()) +
            f" speedup={ratio['ackd_fp32']:.3f} ratio_fp32={ratio['torch_fp32']:.3f}"
            f" ratio_bf16={ratio['torch_bf16']:.3f}"), fp32


def print_fp32_round(r, name, ackd, torch):
    """One float32 round's line: each side's (rate, best)."""
    print(f"round {r + 1} model={name} ackd_img_s={ackd[0]:.2f} torch_img_s={torch[0]:.2f} "
          f"ratio={ackd[0] / torch[0]:.3f} ackd_best={ackd[1]:.2f} torch_best={torch[1]:.2f} "
          f"best_ratio={ackd[1] / torch[1]:.3f}", flush=True)


def fp32_record(name, rounds):
    """The float32 record from the rounds' (rate, best) pairs of each side."""
    ratios = [x[0] / y[0] for x, y in zip(rounds["ackd"], rounds["torch"])]
    best_ratios = [x[1] / y[1] for x, y in zip(rounds["ackd"], rounds["torch"])]
    print(f"model={name} median_best_ratio={statistics.median(best_ratios):.3f}", flush=True)
    ackd_rate, torch_rate = (statistics.median(x[0] for x in rounds[side]) for side in ("ackd", "torch"))
    return (f"bench=train model={name} ackd_img_s={ackd_rate:.2f} torch_img_s={torch_rate:.2f} "
            f"ratio={statistics.median(ratios):.3f}")


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
    p.add_argument("--precision", choices=["fp32", "bf16", "both"], default="fp32",
                   help="bf16: ackd's bf16 convolutions beside its float32, PyTorch's float32 and its autocast; "
                        "both: the float32 records, then the bf16 ones")
    a = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    records, bf16_records = [], []
    for name in a.models.split(","):
        reference = TorchStep(name, a.batch, a.bands, a.size, a.classes, a.threads)
        fp32 = None
        if a.precision != "fp32":
            line, fp32 = bf16_rounds(a, env, name, reference)
            bf16_records.append(line)
            if a.precision == "bf16":
                continue
        if fp32 is None:  # --precision fp32, or bf16 refused: the float32 sides' own rounds
            fp32 = {"ackd": [], "torch": []}
            for r in range(a.rounds):
                fp32["ackd"].append(ackd_img_s(a, env, name, "fp32"))
                fp32["torch"].append(reference.img_s(a.warmup if r == 0 else 1, a.steps))
                print_fp32_round(r, name, fp32["ackd"][-1], fp32["torch"][-1])
        else:  # the float32 sides of the bf16 rounds, already timed
            for r, (x, y) in enumerate(zip(fp32["ackd"], fp32["torch"])):
                print_fp32_round(r, name, x, y)
        records.append(fp32_record(name, fp32))
    print("\n".join(records + bf16_records))


if __name__ == "__main__":
    main()
