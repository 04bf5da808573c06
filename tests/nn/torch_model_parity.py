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
further from it than max(1e-4, 10x PyTorch float32's own distance)."""
import copy
import pathlib
import sys

import h5py
import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.shufflenetv2 import ShuffleNetV2
from torchvision.ops.misc import Conv2dNormActivation

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

TOL = 1e-4
torch.set_num_threads(1)


def scaled(c, width):
    return max(1, int(c * width + 0.5))


class ScaledResNet(ResNet):
    """torchvision's ResNet with a band count, a width multiplier and an
    optional small-input stem; the blocks and layer assembly are torchvision's."""

    def __init__(self, layers, bands, classes, width, small_input):
        nn.Module.__init__(self)
        self._norm_layer, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, 1, 1, 64
        self.inplanes = scaled(64, width)
        if small_input:
            self.conv1 = nn.Conv2d(bands, self.inplanes, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(bands, self.inplanes, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1, self.relu = nn.BatchNorm2d(self.inplanes), nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(BasicBlock, scaled(64, width), layers[0])
        self.layer2 = self._make_layer(BasicBlock, scaled(128, width), layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, scaled(256, width), layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, scaled(512, width), layers[3], stride=2)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(scaled(512, width), classes)

    def outputs(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        tokens = f.flatten(2).transpose(1, 2)
        embedding = torch.flatten(self.avgpool(f), 1)
        return tokens, embedding, self.fc(embedding)


def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class PaperMobileNetV2(nn.Module):
    """torchvision's MobileNetV2 with `bands` inputs and last_channel 512."""

    def __init__(self, bands, classes, width):
        super().__init__()
        tv = torchvision.models.mobilenet_v2(num_classes=classes, width_mult=width, dropout=0.0)
        first = make_divisible(32 * width)
        tv.features[0][0] = nn.Conv2d(bands, first, 3, 2, 1, bias=False)
        last_in = tv.features[-1][0].in_channels
        last = make_divisible(512 * max(1.0, width))
        tv.features[-1] = Conv2dNormActivation(last_in, last, kernel_size=1, activation_layer=nn.ReLU6)
        tv.classifier[1] = nn.Linear(last, classes)
        self.features, self.classifier = tv.features, tv.classifier

    def outputs(self, x):
        f = self.features(x)
        embedding = torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1)
        return f.flatten(2).transpose(1, 2), embedding, self.classifier(embedding)


class PaperShuffleNetV2(nn.Module):
    """torchvision's ShuffleNetV2 x0.5 with `bands` inputs, conv5 1024, then
    Linear 1024 -> 512 (fc, the embedding) and a classifier 512 -> classes."""

    def __init__(self, bands, classes, width):
        super().__init__()
        even = lambda c: 2 * max(1, int(c * width / 2 + 0.5))
        chans = [scaled(24, width), even(48), even(96), even(192), scaled(1024, width)]
        tv = ShuffleNetV2([4, 8, 4], chans, num_classes=classes)
        tv.conv1[0] = nn.Conv2d(bands, chans[0], 3, 2, 1, bias=False)
        self.conv1, self.maxpool = tv.conv1, tv.maxpool
        self.stage2, self.stage3, self.stage4, self.conv5 = tv.stage2, tv.stage3, tv.stage4, tv.conv5
        self.fc = nn.Linear(chans[4], scaled(512, width))
        self.classifier = nn.Linear(scaled(512, width), classes)

    def outputs(self, x):
        f = self.conv5(self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x))))))
        embedding = self.fc(f.mean([2, 3]))
        return f.flatten(2).transpose(1, 2), embedding, self.classifier(embedding)


class SmallCNN(nn.Module):
    def __init__(self, bands, classes, width):
        super().__init__()
        c1, c2, c3 = scaled(32, width), scaled(64, width), scaled(128, width)
        self.conv1, self.bn1 = nn.Conv2d(bands, c1, 3, 1, 1, bias=False), nn.BatchNorm2d(c1)
        self.conv2, self.bn2 = nn.Conv2d(c1, c2, 3, 1, 1, bias=False), nn.BatchNorm2d(c2)
        self.conv3, self.bn3 = nn.Conv2d(c2, c3, 3, 1, 1, bias=False), nn.BatchNorm2d(c3)
        self.fc = nn.Linear(c3, classes)

    def outputs(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        f = torch.relu(self.bn3(self.conv3(x)))
        embedding = f.mean([2, 3])
        return f.flatten(2).transpose(1, 2), embedding, self.fc(embedding)


class MLP(nn.Module):
    def __init__(self, inputs, classes, width):
        super().__init__()
        h = scaled(512, width)
        self.fc1, self.fc2, self.fc3 = nn.Linear(inputs, h), nn.Linear(h, h), nn.Linear(h, classes)

    def outputs(self, x):
        embedding = torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1)))))
        return embedding[:, None, :], embedding, self.fc3(embedding)


def build(f):
    a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    arch, bands, classes, width = str(a["arch"]), int(a["bands"]), int(a["classes"]), float(a["width"])
    if arch == "mobilenetv2":
        return PaperMobileNetV2(bands, classes, width), a
    if arch == "shufflenetv2":
        return PaperShuffleNetV2(bands, classes, width), a
    if arch == "smallcnn":
        return SmallCNN(bands, classes, width), a
    if arch == "mlp":
        return MLP(bands * f["x"].shape[2] * f["x"].shape[3], classes, width), a
    layers = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}[arch]
    net = ScaledResNet(layers, bands, classes, width, bool(a["small_input"]))
    if float(a["width"]) == 1.0 and not a["small_input"]:
        ref = getattr(torchvision.models, str(a["arch"]))(num_classes=int(a["classes"]))
        ref.conv1 = nn.Conv2d(int(a["bands"]), 64, 7, 2, 3, bias=False)
        mine = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        if mine != theirs:
            raise SystemExit(f"FAIL: the rebuilt {a['arch']} differs from torchvision's")
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], "--float64-train" in sys.argv[2:]))
