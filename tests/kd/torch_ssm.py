#!/usr/bin/python3
"""Parity of the SSM projection head and the SSM loss with PyTorch.

Head: p = Linear(x), e = LayerNorm(p + Dropout(Linear(GELU(p)))), with ackd's
dropout mask applied explicitly (kept / (1 - 0.1)); loss: the CLIP-style soft
target loss of docs/DESIGN.md §2, targets not detached. Outputs, input and
parameter gradients must agree within 1e-4 of each tensor's largest value."""
import pathlib
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

TOL = 1e-4
torch.set_default_dtype(torch.float64)


def compare(what, mine, ref, check):
    # a size mismatch is a failure with no error (None), counted here as 0
    return checklib.compare(check, what, mine, ref, TOL, flatten=True) or 0.0


def head(g, check):
    t = lambda k: torch.tensor(np.asarray(g[k]))
    P = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in g["params"].items()}
    x = t("x").requires_grad_(True)
    B = x.shape[0]
    out = P["rgb_head.projection.bias"].shape[0]
    W1 = P["rgb_head.projection.weight"].reshape(out, -1)
    W2 = P["rgb_head.fc.weight"].reshape(out, out)
    p = x.reshape(B, -1) @ W1.t() + P["rgb_head.projection.bias"]
    f = F.gelu(p) @ W2.t() + P["rgb_head.fc.bias"]
    r = f * t("mask").reshape(B, out) / (1 - 0.1)
    e = F.layer_norm(p + r, (out,), P["rgb_head.layer_norm.weight"], P["rgb_head.layer_norm.bias"], eps=1e-5)
    (e * t("de").reshape(B, out)).sum().backward()
    errs = [compare("head e", g["e"], e, check), compare("head dx", g["dx"], x.grad, check)]
    errs += [compare(f"head grad {k}", g["grads"][k], v.grad, check) for k, v in P.items()]
    return max(errs)


def ssm(g, check):
    tau, scale = float(g.attrs["tau"]), float(g.attrs["scale"])
    er = torch.tensor(np.asarray(g["e_rgb"])).reshape(g["e_rgb"].shape[0], -1).requires_grad_(True)
    em = torch.tensor(np.asarray(g["e_ms"])).reshape(er.shape).requires_grad_(True)
    logits = er @ em.t() / tau
    targets = F.softmax((em @ em.t() + er @ er.t()) / 2 * tau, dim=-1)
    rgb_loss = (-targets * F.log_softmax(logits, dim=-1)).sum(1)
    ms_loss = (-targets.t() * F.log_softmax(logits.t(), dim=-1)).sum(1)
    loss = scale * ((rgb_loss + ms_loss) / 2).mean()
    loss.backward()
    return max(compare("ssm loss", [g.attrs["loss"]], loss, check),
               compare("ssm d_rgb", g["d_rgb"], er.grad, check), compare("ssm d_ms", g["d_ms"], em.grad, check))


def main(path):
    check = checklib.Checks("torch_ssm", print_passes=False)
    with h5py.File(path, "r") as f:
        print(f"head: worst relative error {head(f['head'], check):.2e}")
        for name in sorted(k for k in f if k.startswith("ssm_loss")):
            print(f"{name}: worst relative error {ssm(f[name], check):.2e}")
    return check.summary(f"tolerance {TOL:.0e}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
