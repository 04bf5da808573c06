#!/usr/bin/python3
"""bench/train: images/s of one full training step (forward, cross-entropy,
backward, Adam), ackd beside PyTorch on the same machine in the same run.

Both sides: batch 64, input 10x64x64, 10 classes, 2 threads, the same
architectures (PyTorch's are torchvision's, built as in
tests/nn/torch_model_parity.py), a median over the timed steps after warm-up
steps. The last lines are one record per model:
    bench=train model=NAME ackd_img_s=X torch_img_s=Y ratio=X/Y"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "nn"))


def torch_img_s(name, batch, bands, size, classes, threads, warmup, steps):
    import torch
    import torch_model_parity as models

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = {"resnet18": lambda: models.ScaledResNet([2, 2, 2, 2], bands, classes, 1.0, False),
           "resnet34": lambda: models.ScaledResNet([3, 4, 6, 3], bands, classes, 1.0, False),
           "mobilenetv2": lambda: models.PaperMobileNetV2(bands, classes, 1.0),
           "shufflenetv2": lambda: models.PaperShuffleNetV2(bands, classes, 1.0),
           "smallcnn": lambda: models.SmallCNN(bands, classes, 1.0),
           "mlp": lambda: models.MLP(bands * size * size, classes, 1.0)}[name]()
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch, bands, size, size) * 2 - 1
    y = torch.randint(0, classes, (batch,))
    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = net.outputs(x)[2]
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


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
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    records = []
    for name in a.models.split(","):
        out = subprocess.run([a.ackd, "-models", name, "-batch", str(a.batch), "-bands", str(a.bands), "-size",
                              str(a.size), "-classes", str(a.classes), "-threads", str(a.threads), "-warmup",
                              str(a.warmup), "-steps", str(a.steps)], env=env, check=True, capture_output=True,
                             text=True).stdout
        print(out, end="")
        ackd = float(re.search(r"img_s=([0-9.]+)", out).group(1))
        torch_rate = torch_img_s(name, a.batch, a.bands, a.size, a.classes, a.threads, a.warmup, a.steps)
        print(f"torch model={name} img_s={torch_rate:.2f}")
        records.append(f"bench=train model={name} ackd_img_s={ackd:.2f} torch_img_s={torch_rate:.2f} "
                       f"ratio={ackd / torch_rate:.3f}")
    print("\n".join(records))


if __name__ == "__main__":
    main()
