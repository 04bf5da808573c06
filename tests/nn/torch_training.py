#!/usr/bin/python3
"""Losses, optimizers, clipping and schedules of ackd against PyTorch.

Reads what test_nn_training wrote and recomputes each quantity with
torch.nn.functional, torch.optim, torch.nn.utils.clip_grad_norm_ and
torch.optim.lr_scheduler (stepped, as a training loop steps them). Float32
quantities agree within 1e-5 relative to the tensor's largest entry (five
optimizer steps in float32 on both sides); learning rates, computed in double,
within 1e-12."""
import pathlib
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("torch training parity")


def agree(what, mine, ref, tol):
    err = checklib.relative_error(mine, ref, floor=1e-300)
    check(err <= tol, f"{what:28s} relative error {err:.1e} (tolerance {tol:.0e})")


def losses(g):
    z = torch.from_numpy(g["logits"][()]).requires_grad_(True)
    y = torch.from_numpy(g["labels"][()].astype(np.int64))
    loss = F.cross_entropy(z, y, label_smoothing=float(g.attrs["ce_smoothing"]))
    loss.backward()
    agree("cross-entropy loss", g.attrs["ce_loss"], loss.item(), 1e-6)
    agree("cross-entropy gradient", g["ce_grad"][()], z.grad, 1e-5)
    z.grad = None
    loss = F.cross_entropy(z, torch.from_numpy(g["fractions"][()]), label_smoothing=float(g.attrs["ce_smoothing"]))
    loss.backward()
    agree("soft cross-entropy loss", g.attrs["soft_ce_loss"], loss.item(), 1e-6)
    agree("soft cross-entropy gradient", g["soft_ce_grad"][()], z.grad, 1e-5)
    z.grad = None
    t = torch.from_numpy(g["targets"][()])
    loss = F.binary_cross_entropy_with_logits(z, t)
    loss.backward()
    agree("bce-with-logits loss", g.attrs["bce_loss"], loss.item(), 1e-6)
    agree("bce-with-logits gradient", g["bce_grad"][()], z.grad, 1e-5)


def optimizers(g):
    initial, grads = g["initial"][()], g["grads"][()]
    for name in g:
        if not isinstance(g[name], h5py.Group):
            continue
        a = g[name].attrs
        kind = a["kind"].decode() if isinstance(a["kind"], bytes) else str(a["kind"])
        w = torch.nn.Parameter(torch.from_numpy(initial[:21].copy()))
        b = torch.nn.Parameter(torch.from_numpy(initial[21:].copy()))
        lr, wd = float(a["lr"]), float(a["weight_decay"])
        if kind == "sgd":
            opt = torch.optim.SGD([w, b], lr=lr, momentum=float(a["momentum"]), weight_decay=wd,
                                  nesterov=bool(a["nesterov"]))
        elif kind == "adam":
            opt = torch.optim.Adam([w, b], lr=lr, weight_decay=wd, foreach=False)
        else:
            opt = torch.optim.AdamW([w, b], lr=lr, weight_decay=wd, foreach=False)
        for s in range(grads.shape[0]):
            w.grad = torch.from_numpy(grads[s, :21].copy())
            b.grad = torch.from_numpy(grads[s, 21:].copy())
            opt.step()
        agree(f"optimizer {name}", np.concatenate([g[name]["w"][()], g[name]["b"][()]]),
              torch.cat([w.detach(), b.detach()]), 1e-5)
    p = torch.nn.Parameter(torch.zeros(26))
    p.grad = torch.from_numpy(grads[-1].copy())
    norm = torch.nn.utils.clip_grad_norm_([p], 1.0)
    agree("clip_grad_norm norm", g.attrs["clip_norm"], norm.item(), 1e-6)
    agree("clip_grad_norm gradients", g["clipped"][()], p.grad, 1e-6)


def schedules(g):
    S = torch.optim.lr_scheduler

    def stepped(make):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = make(opt)
        rates = []
        for _ in range(g["constant"].shape[0]):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return rates

    n = g["constant"].shape[0]
    refs = {
        "constant": stepped(lambda o: S.LambdaLR(o, lambda t: 1.0)),
        "multistep": stepped(lambda o: S.MultiStepLR(o, [10, 20, 30], gamma=0.2)),
        "cosine": stepped(lambda o: S.CosineAnnealingLR(o, T_max=n, eta_min=1e-3)),
        "poly": stepped(lambda o: S.PolynomialLR(o, total_iters=n, power=0.9)),
        "warmup_cosine": stepped(lambda o: S.ChainedScheduler(
            [S.LinearLR(o, start_factor=0.1, total_iters=5), S.CosineAnnealingLR(o, T_max=n)])),
    }
    for name, ref in refs.items():
        agree(f"schedule {name}", g[name][()], ref, 1e-12)


def main(path):
    with h5py.File(path, "r") as f:
        losses(f["losses"])
        optimizers(f["optimizers"])
        schedules(f["schedules"])
    return check.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
