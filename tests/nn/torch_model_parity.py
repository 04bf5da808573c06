#!/usr/bin/python3
"""Parity of an ackd backbone with torchvision's definition of it.

Reads what test_nn_model_parity wrote, builds the network from torchvision's
own code (ResNet: models.resnet.BasicBlock and ResNet._make_layer; MobileNetV2
and ShuffleNetV2: torchvision's classes, with the paper's heads swapped in;
the small CNN and the MLP: written out here) with the same configuration, loads ackd's weights and running statistics, and repeats ackd's
two passes: training mode (batch statistics, running statistics updated) then
evaluation mode. The loss is the same random linear functional of logits,
embedding and tokens. Every output, every parameter gradient and every running
statistic must agree within
    max |ackd - torch| <= 1e-4 * max |torch|   (per tensor).
At width 1 the network's state_dict must also match torchvision.models.resnetNN
name for name and shape for shape.

--float64-train: MobileNetV2 and ShuffleNetV2 in training mode are
ill-conditioned in float32 at random initialisation (batch statistics over a
few values per channel of depthwise maps: PyTorch float32 itself is 1e-3 away
from float64), so there the reference is float64 PyTorch and ackd must be no
further from it than max(1e-4, 10x PyTorch float32's own distance).

    torch_model_parity.py FILE [--float64-train] [FILE [--float64-train]] ...
(the flag applies to the file before it)."""
import copy
import pathlib
import sys

import h5py
import numpy as np
import torch
import torchvision
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "analysis"))  # the networks
import checklib  # noqa: E402
import ackd_torch  # noqa: E402

TOL = 1e-4
torch.set_num_threads(1)


def build(f):
    a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    arch = str(a["arch"])
    net = ackd_torch.build(arch, int(a["bands"]), int(a["classes"]), float(a["width"]), bool(a.get("small_input", 0)),
                           image_size=f["x"].shape[2])
    if arch in ackd_torch.RESNET_LAYERS and float(a["width"]) == 1.0 and not a["small_input"]:
        ref = getattr(torchvision.models, arch)(num_classes=int(a["classes"]))
        ref.conv1 = nn.Conv2d(int(a["bands"]), 64, 7, 2, 3, bias=False)
        mine = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        if mine != theirs:
            raise SystemExit(f"FAIL: the rebuilt {arch} differs from torchvision's")
    return net, a


def rel(mine, ref):
    return checklib.relative_error(mine, ref, floor=1e-300)


def torch_pass(net, x, g, mode, dtype):
    """One ackd-equivalent pass: outputs, parameter gradients, running statistics (float64 numpy)."""
    net.train(mode == "train")
    net.zero_grad(set_to_none=True)
    tokens, embedding, logits = net.outputs(x.to(dtype))
    loss = sum((out * torch.from_numpy(g["d_" + name][()]).reshape(out.shape).to(dtype)).sum()
               for name, out in (("logits", logits), ("embedding", embedding), ("tokens", tokens)))
    loss.backward()
    got = {"logits": logits, "embedding": embedding, "tokens": tokens}
    got.update({"gradient of " + n: p.grad for n, p in net.named_parameters()})
    got.update({n: b for n, b in net.named_buffers() if not n.endswith("num_batches_tracked")})
    return {k: v.detach().double().numpy() for k, v in got.items()}


def ackd_tensor(g, key, shape):
    if key.startswith("gradient of "):
        return g["grad"][key[12:]][()].astype(np.float64).reshape(shape)
    if key in g:
        return g[key][()].astype(np.float64).reshape(shape)
    return g["buffer_after"][key][()].astype(np.float64).reshape(shape)


def compare_pass(mode, g, t32, t64, check):
    """Without t64: every tensor within TOL of PyTorch float32. With t64 (an
    ill-conditioned pass): within max(TOL, 10x PyTorch float32's own error) of
    float64 PyTorch; a tensor that is zero in exact arithmetic (below 1e-9 of
    the largest gradient, e.g. the shift of a batch norm feeding another one
    through a linear map) must stay at PyTorch float32's noise level."""
    worst, worst_torch = 0.0, 0.0
    scale = max(np.abs(v).max() for k, v in (t64 or t32).items() if k.startswith("gradient of "))
    for key, ref32 in t32.items():
        mine = ackd_tensor(g, key, ref32.shape)
        if t64 is None:
            err = rel(mine, ref32)
            ok = err <= TOL
        else:
            ref = t64[key]
            if key.startswith("gradient of ") and np.abs(ref).max() <= 1e-9 * scale:
                err, noise = np.abs(mine).max() / scale, np.abs(ref32).max() / scale
                ok = err <= max(10 * noise, 1e-6)
            else:
                err, noise = rel(mine, ref), rel(ref32, ref)
                ok = err <= max(TOL, 10 * noise)
            worst_torch = max(worst_torch, noise)
        worst = max(worst, err)
        check(ok, f"{mode} {key}: relative error {err:.2e}" +
              (f" (PyTorch float32: {noise:.2e})" if t64 is not None else f" > {TOL:.0e}"))
    return worst, worst_torch


def main(path, float64_train):
    check = checklib.Checks("torch model parity", print_passes=False)
    with h5py.File(path, "r") as f:
        net, a = build(f)
        state = net.state_dict()
        names = list(f["param"]) + list(f["buffer_before"])
        for n in state:
            if n.endswith("num_batches_tracked"):
                continue
            if n not in names:
                raise SystemExit(f"FAIL: ackd has no tensor named {n}")
        for group in ("param", "buffer_before"):
            for n in f[group]:
                state[n] = torch.from_numpy(f[group][n][()]).reshape(state[n].shape)
        net.load_state_dict(state)
        net64 = copy.deepcopy(net).double()
        x = torch.from_numpy(f["x"][()])
        for mode in ("train", "eval"):
            g = f[mode]
            t32 = torch_pass(net, x, g, mode, torch.float32)
            t64 = torch_pass(net64, x, g, mode, torch.float64) if float64_train else None
            if mode == "eval" or not float64_train:
                t64 = None
            worst, worst_torch = compare_pass(mode, g, t32, t64, check)
            against = "float64 PyTorch" if t64 is not None else "PyTorch"
            extra = f", PyTorch float32's own {worst_torch:.1e}" if t64 is not None else ""
            print(f"{a['arch']} width {a['width']} {mode:5s}: worst relative error against {against} {worst:.1e}"
                  f"{extra} over outputs, {len(list(net.parameters()))} parameter gradients and running statistics")
    return check.summary(f"tolerance {TOL:.0e}")


def files_and_flags(words):
    """FILE [--float64-train] FILE ...: each file with whether the flag follows it."""
    if not words or words[0] == "--float64-train":
        raise SystemExit("usage: torch_model_parity.py FILE [--float64-train] [FILE [--float64-train]] ...")
    runs = []
    for word in words:
        if word == "--float64-train":
            runs[-1] = (runs[-1][0], True)
        else:
            runs.append((word, False))
    return runs


if __name__ == "__main__":
    # Every backbone in one process: PyTorch's import costs ~2 CPU-seconds, more than most checks.
    sys.exit(max(main(path, float64_train) for path, float64_train in files_and_flags(sys.argv[1:])))
