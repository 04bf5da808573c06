#!/usr/bin/python3
"""Parity of an ackd backbone with torchvision's definition of it.

Reads what test_nn_model_parity wrote, builds the network from torchvision's
own blocks (models.resnet.BasicBlock and ResNet._make_layer) with the same
configuration, loads ackd's weights and running statistics, and repeats ackd's
two passes: training mode (batch statistics, running statistics updated) then
evaluation mode. The loss is the same random linear functional of logits,
embedding and tokens. Every output, every parameter gradient and every running
statistic must agree within
    max |ackd - torch| <= 1e-4 * max |torch|   (per tensor).
At width 1 the network's state_dict must also match torchvision.models.resnetNN
name for name and shape for shape."""
import sys

import h5py
import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

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


def build(f):
    a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    layers = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}[str(a["arch"])]
    net = ScaledResNet(layers, int(a["bands"]), int(a["classes"]), float(a["width"]), bool(a["small_input"]))
    if float(a["width"]) == 1.0 and not a["small_input"]:
        ref = getattr(torchvision.models, str(a["arch"]))(num_classes=int(a["classes"]))
        ref.conv1 = nn.Conv2d(int(a["bands"]), 64, 7, 2, 3, bias=False)
        mine = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        if mine != theirs:
            raise SystemExit(f"FAIL: the rebuilt {a['arch']} differs from torchvision's")
    return net, a


def compare(what, mine, ref, failures):
    mine, ref = np.asarray(mine, dtype=np.float64), np.asarray(ref.detach(), dtype=np.float64)
    mine = mine.reshape(ref.shape)
    err = np.abs(mine - ref).max() / max(np.abs(ref).max(), 1e-30)
    if not err <= TOL:
        failures.append(f"{what}: relative error {err:.2e} > {TOL:.0e}")
    return err


def main(path):
    failures = []
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
        x = torch.from_numpy(f["x"][()])
        for mode in ("train", "eval"):
            g = f[mode]
            net.train(mode == "train")
            net.zero_grad(set_to_none=True)
            tokens, embedding, logits = net.outputs(x)
            loss = (logits * torch.from_numpy(g["d_logits"][()]).reshape(logits.shape)).sum() \
                + (embedding * torch.from_numpy(g["d_embedding"][()]).reshape(embedding.shape)).sum() \
                + (tokens * torch.from_numpy(g["d_tokens"][()]).reshape(tokens.shape)).sum()
            loss.backward()
            errs = {"logits": compare(f"{mode} logits", g["logits"][()], logits, failures),
                    "embedding": compare(f"{mode} embedding", g["embedding"][()], embedding, failures),
                    "tokens": compare(f"{mode} tokens", g["tokens"][()], tokens, failures)}
            worst_grad = max(compare(f"{mode} gradient of {n}", g["grad"][n][()], p.grad, failures)
                             for n, p in net.named_parameters())
            buffers = dict(net.named_buffers())
            worst_buf = max(compare(f"{mode} {n}", g["buffer_after"][n][()], buffers[n], failures)
                            for n in g["buffer_after"])
            print(f"{a['arch']} width {a['width']} {mode:5s}: logits {errs['logits']:.1e} embedding "
                  f"{errs['embedding']:.1e} tokens {errs['tokens']:.1e}, worst parameter gradient {worst_grad:.1e}, "
                  f"worst running statistic {worst_buf:.1e} ({len(list(net.parameters()))} parameter tensors)")
    for line in failures:
        print("FAIL:", line)
    print(f"torch model parity: {'FAILED' if failures else 'ok'} (tolerance {TOL:.0e})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
