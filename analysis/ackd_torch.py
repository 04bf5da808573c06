"""ackd's networks as PyTorch modules, and ackd checkpoints loaded into them.

Each class is torchvision's own definition where torchvision has one (ResNet's BasicBlock and
_make_layer, MobileNetV2, ShuffleNetV2), configured as ackd builds it: a band count, a width
multiplier, the paper's heads. An ackd checkpoint stores every tensor under its PyTorch
state_dict name (docs/FORMATS.md), so loading one is load_state_dict(strict=True) after a
reshape; tests/nn/torch_model_parity.py holds the networks to ackd's forward and backward passes.

    net, config = load_checkpoint("out/eu/student/best.h5")   # eval mode, float32
    tokens, embedding, logits = net.outputs(images)          # images as the dataset stores them
"""
import h5py
import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.shufflenetv2 import ShuffleNetV2
from torchvision.ops.misc import Conv2dNormActivation

ARCHITECTURES = ("resnet18", "resnet34", "mobilenetv2", "shufflenetv2", "smallcnn", "mlp")
RESNET_LAYERS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}


class LogitsForward:
    """forward() gives the logits, as a PyTorch classifier's does; outputs() adds the layer-4 tokens
    and the pooled embedding that ackd's distillation terms use."""

    def forward(self, x):
        return self.outputs(x)[2]


def scaled(c, width):
    return max(1, int(c * width + 0.5))


class ScaledResNet(LogitsForward, ResNet):
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


class PaperMobileNetV2(LogitsForward, nn.Module):
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


class PaperShuffleNetV2(LogitsForward, nn.Module):
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


class SmallCNN(LogitsForward, nn.Module):
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


class MLP(LogitsForward, nn.Module):
    def __init__(self, inputs, classes, width):
        super().__init__()
        h = scaled(512, width)
        self.fc1, self.fc2, self.fc3 = nn.Linear(inputs, h), nn.Linear(h, h), nn.Linear(h, classes)

    def outputs(self, x):
        embedding = torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1)))))
        return embedding[:, None, :], embedding, self.fc3(embedding)


def build(arch, bands, classes, width, small_input=False, image_size=None):
    """A freshly initialised network of ackd's configuration (image_size: the MLP's input side)."""
    if arch in RESNET_LAYERS:
        return ScaledResNet(RESNET_LAYERS[arch], bands, classes, width, small_input)
    if arch == "mobilenetv2":
        return PaperMobileNetV2(bands, classes, width)
    if arch == "shufflenetv2":
        return PaperShuffleNetV2(bands, classes, width)
    if arch == "smallcnn":
        return SmallCNN(bands, classes, width)
    if arch == "mlp":
        if not image_size:
            raise ValueError("the MLP needs the image size of its inputs")
        return MLP(bands * image_size * image_size, classes, width)
    raise ValueError(f"unknown architecture '{arch}'; ackd's are {', '.join(ARCHITECTURES)}")


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def checkpoint_config(f):
    """The model configuration an ackd checkpoint (an open h5py.File) records in its root attributes."""
    a = f.attrs
    missing = [k for k in ("model_architecture", "in_channels", "classes", "width") if k not in a]
    if text(a.get("ackd_format", "")) != "checkpoint" or missing:
        raise ValueError(f"'{f.filename}' is not an ackd model checkpoint (missing {', '.join(missing) or 'ackd_format'})")
    return {"arch": text(a["model_architecture"]), "bands": int(a["in_channels"]), "classes": int(a["classes"]),
            "width": float(a["width"]), "small_input": bool(a.get("small_input", 0)),
            "image_size": int(a["image_size"]) if "image_size" in a else None,
            "modality": text(a.get("modality", "")), "role": text(a.get("role", "")), "data": text(a.get("data", ""))}


def checkpoint_state(f, net):
    """net's state_dict filled from the checkpoint's /model tensors, reshaped to the network's shapes.
    Raises ValueError naming the first tensor that is missing, extra or of the wrong size."""
    state = net.state_dict()
    stored = {}
    f["model"].visititems(lambda name, obj: stored.__setitem__(name.replace("/", "."), obj)
                          if isinstance(obj, h5py.Dataset) else None)
    for name in stored:
        if name not in state:
            raise ValueError(f"checkpoint tensor '{name}' has no place in the PyTorch {type(net).__name__}")
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue  # ackd's batch norm uses a fixed momentum, never the count
        if name not in stored:
            raise ValueError(f"the checkpoint has no tensor '{name}'")
        if stored[name].size != value.numel():
            raise ValueError(f"checkpoint tensor '{name}' has {stored[name].size} values, PyTorch's "
                             f"{tuple(value.shape)} needs {value.numel()}")
        state[name] = torch.from_numpy(np.asarray(stored[name], dtype=np.float32)).reshape(value.shape)
    return state


def load_checkpoint(path):
    """(network in eval mode, its configuration) from an ackd checkpoint, loaded with strict=True."""
    with h5py.File(path, "r") as f:
        config = checkpoint_config(f)
        net = build(config["arch"], config["bands"], config["classes"], config["width"], config["small_input"],
                    config["image_size"])
        net.load_state_dict(checkpoint_state(f, net), strict=True)
    return net.eval(), config
