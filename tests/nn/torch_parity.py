#!/usr/bin/python3
"""Parity of ackd's nn layers with PyTorch.

Reads the file test_nn_parity wrote (one group per layer: its settings, input,
parameters, output gradient, and ackd's output, input gradient, parameter
gradients and running statistics), runs the same layer in PyTorch with the same
weights and input, and compares. A tensor agrees when
    max |ackd - torch| <= 1e-4 * max |torch|
(float32 kernels sum in different orders; 1e-4 of the tensor's scale is far
above that rounding and far below any wrong term). Exit status 1 on any
disagreement, with one line per failed comparison."""
import pathlib
import sys

import h5py
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

TOL = 1e-4
torch.set_num_threads(1)


class SelfAttention(torch.nn.MultiheadAttention):
    """nn.MultiheadAttention on ackd's token layout (B, 1, T, D), self-attention."""

    def forward(self, x):
        b, _, t, d = x.shape
        tokens = x.reshape(b, t, d)
        return super().forward(tokens, tokens, tokens, need_weights=False)[0].reshape(b, 1, t, d)


def build(kind, a, params):
    """The PyTorch module for one case, with ackd's parameter names."""
    if kind == "conv":
        return torch.nn.Conv2d(a["cin"], a["cout"], a["k"], stride=a["s"], padding=a["p"], groups=a["g"],
                               bias=bool(a["bias"]))
    if kind == "batchnorm":
        return torch.nn.BatchNorm2d(a["cin"])
    if kind == "pool":
        return [torch.nn.MaxPool2d(a["k"], a["s"], a["p"]), torch.nn.AvgPool2d(a["k"], a["s"], a["p"]),
                torch.nn.AdaptiveAvgPool2d(1)][a["pool"]]
    if kind == "activation":
        return [torch.nn.ReLU(), torch.nn.ReLU6(), torch.nn.GELU()][a["act"]]
    if kind == "linear":
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(params["layer.weight"].size // a["cout"],
                                                                       a["cout"], bias=bool(a["bias"])))
    if kind == "layernorm":
        return torch.nn.LayerNorm(params["layer.weight"].size)
    if kind == "attention":
        dim = int(round((params["layer.in_proj_weight"].size / 3) ** 0.5))  # in_proj_weight is (3D, D)
        return SelfAttention(dim, a["g"], bias=bool(a["bias"]), batch_first=True)
    if kind == "shuffle":
        def shuffle(x, g=a["g"]):
            n, c, h, w = x.shape
            return x.view(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)
        return shuffle
    raise SystemExit(f"unknown layer kind {kind}")


def torch_name(kind, name):
    # ackd names the layer "layer"; the linear case sits at index 1 of a Sequential
    return name.replace("layer.", "1." if kind == "linear" else "", 1)


def main(path):
    check, worst = checklib.Checks("torch parity", print_passes=False), 0.0
    with h5py.File(path, "r") as f:
        for case in sorted(f):
            g = f[case]
            a = {k: int(v) if k != "kind" else v for k, v in g.attrs.items()}
            kind = a["kind"].decode() if isinstance(a["kind"], bytes) else str(a["kind"])
            params = {n: g["param"][n][()] for n in g["param"]}
            module = build(kind, a, params)
            if isinstance(module, torch.nn.Module):
                state = module.state_dict()
                for n, v in params.items():
                    state[torch_name(kind, n)] = torch.from_numpy(v).reshape(state[torch_name(kind, n)].shape)
                for n in g["buffer_before"]:
                    state[torch_name(kind, n)] = torch.from_numpy(g["buffer_before"][n][()])
                module.load_state_dict(state)
                module.train(bool(a["training"]))
            x = torch.from_numpy(g["x"][()]).requires_grad_(True)
            y = module(x)
            y.backward(torch.from_numpy(g["dy"][()]).reshape(y.shape))
            compare = lambda what, mine, ref: checklib.compare(check, f"{case} {what}", mine, ref, TOL)
            errs = [compare("output", g["y"][()].reshape(y.shape), y), compare("input gradient", g["dx"][()], x.grad)]
            if isinstance(module, torch.nn.Module):
                named = dict(module.named_parameters())
                for n in g["grad"]:
                    p = named[torch_name(kind, n)]
                    errs.append(compare(f"gradient of {n}", g["grad"][n][()], p.grad.reshape(-1)))
                buffers = dict(module.named_buffers())
                for n in g["buffer_after"]:
                    errs.append(compare(f"{n} after forward", g["buffer_after"][n][()], buffers[torch_name(kind, n)]))
            e = max(x for x in errs if x is not None)
            worst = max(worst, e)
            mode = "train" if a["training"] else "eval"
            print(f"{case:24s} {mode:5s} worst relative error {e:.1e}")
    return check.summary(f"worst {worst:.1e}, tolerance {TOL:.0e}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
