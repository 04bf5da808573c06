#!/usr/bin/python3
"""PyTorch weights as the starting point of an ackd model: a state_dict (.pt), e.g. torchvision's
ImageNet-trained resnet18 that a user brings, written as a step-0 checkpoint that `ackd train
-train_init FILE` or `ackd distill -distill_init FILE` loads.

  import_torch.py MODEL.pt -o INIT.h5 --arch resnet18 --bands 10 --classes 7 [--width 1]
                  [--modality ms|rgb] [--small-input] [--image-size N] [--adapt-stem] [--fresh-head]
                  [--seed S]

Every tensor of the ackd network (analysis/ackd_torch.py: torchvision's classes, configured as
ackd's) must come from MODEL.pt with its shape, except where an option says otherwise:

--adapt-stem   the first convolution was trained on another band count (3 for ImageNet's RGB):
               each of its filters becomes its mean over the input bands, repeated for --bands
               bands and scaled by (bands it had) / --bands, so that on inputs whose bands carry
               similar values the filter responds as it did;
--fresh-head   the classifier was trained on other classes (1000 for ImageNet): it starts from
               PyTorch's default initialisation (ackd's own), drawn from --seed.

Anything else that does not fit (a tensor missing or left over, another shape) is refused with
one line naming the tensor: usually another --arch, --width or --small-input than the weights'."""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ackd_files  # noqa: E402
import ackd_torch  # noqa: E402

STEM = {"resnet18": "conv1.weight", "resnet34": "conv1.weight", "mobilenetv2": "features.0.0.weight",
        "shufflenetv2": "conv1.0.weight", "smallcnn": "conv1.weight", "mlp": "fc1.weight"}
HEAD = {"resnet18": "fc", "resnet34": "fc", "mobilenetv2": "classifier.1", "shufflenetv2": "classifier",
        "smallcnn": "fc", "mlp": "fc3"}


def load_state(path):
    if not os.path.exists(path):
        ackd_files.die(f"weights file '{path}' not found")
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as e:  # torch.load raises many kinds (pickle, zip, runtime) on a bad file
        ackd_files.die(f"cannot read '{path}' as PyTorch weights ({type(e).__name__}: {e})")
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        ackd_files.die(f"'{path}' is not a state_dict (a dict of tensor names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def adapt_stem(weight, bands):
    """(out, c, kh, kw) -> (out, bands, kh, kw): the mean filter over c inputs, repeated, x c / bands."""
    c = weight.shape[1]
    return weight.mean(1, keepdim=True).repeat(1, bands, 1, 1) * (c / bands)


def convert(source, target, args):
    """target's state_dict filled from source, under the options; dies naming the first misfit."""
    stem, head = STEM[args.arch], HEAD[args.arch]
    fresh = {f"{head}.weight", f"{head}.bias"} if args.fresh_head else set()
    for name in sorted(set(source) - set(target)):
        if name not in fresh:
            ackd_files.die(f"tensor '{name}' of the weights has no place in ackd's {args.arch} at width {args.width:g}; "
                           "check --arch, --width and --small-input")
    out, notes = {}, []
    for name, value in target.items():
        if name.endswith("num_batches_tracked"):
            continue
        if name in fresh:
            out[name] = value
            continue
        if name not in source:
            ackd_files.die(f"the weights have no tensor '{name}' for ackd's {args.arch}; check --arch and --width")
        given = source[name].float()
        if name == stem and args.adapt_stem and given.dim() == 4 and given.shape[1] != value.shape[1] \
                and given.shape[0] == value.shape[0] and given.shape[2:] == value.shape[2:]:
            notes.append(f"{name}: {given.shape[1]} bands adapted to {value.shape[1]}")
            given = adapt_stem(given, value.shape[1])
        if tuple(given.shape) != tuple(value.shape):
            hint = ("; --adapt-stem adapts the first convolution to --bands" if name == stem else
                    "; --fresh-head starts the classifier afresh for --classes" if name.startswith(head + ".") else
                    "; check --width")
            ackd_files.die(f"tensor '{name}' is {tuple(given.shape)} in the weights, ackd's {args.arch} needs "
                           f"{tuple(value.shape)}{hint}")
        if not torch.isfinite(given).all():
            ackd_files.die(f"tensor '{name}' of the weights holds NaN or Inf")
        out[name] = given
    if fresh:
        notes.append(f"{head}: initialised afresh for {args.classes} classes (seed {args.seed})")
    return out, notes


def write(path, state, args):
    """A step-0 checkpoint (docs/FORMATS.md): model tensors flat under /model/<layer>/<name>."""
    part = path + ".part"
    with h5py.File(part, "w") as f:
        f.attrs["ackd_format"] = "checkpoint"
        f.attrs["ackd_format_version"] = 1
        f.attrs["architecture"] = args.arch
        f.attrs["model_architecture"] = args.arch
        f.attrs["in_channels"] = args.bands
        f.attrs["classes"] = args.classes
        f.attrs["width"] = float(args.width)
        f.attrs["small_input"] = int(args.small_input)
        f.attrs["image_size"] = args.image_size or 0
        f.attrs["dropout"] = 0.0
        f.attrs["modality"] = args.modality
        f.attrs["role"] = "teacher" if args.modality == "ms" else "student"
        f.attrs["source"] = os.path.abspath(args.weights)
        f.attrs["step"] = 0
        f.attrs["epoch"] = 0
        state_group = f.create_group("state")
        for key in ("epoch", "step", "cursor", "seed"):
            state_group.attrs[key] = 0
        model = f.create_group("model")
        for name, value in state.items():
            layer, _, tensor = name.rpartition(".")
            group = model.require_group(layer) if layer else model
            group.create_dataset(tensor, data=value.detach().numpy().astype(np.float32).ravel())
    os.replace(part, path)


def main():
    p = ackd_files.parser(__doc__)
    p.add_argument("weights", help="a PyTorch state_dict (.pt or .pth)")
    p.add_argument("-o", "--output", required=True, help="the checkpoint-layout file for -train_init/-distill_init")
    p.add_argument("--arch", required=True, choices=ackd_torch.ARCHITECTURES)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--bands", type=int, required=True, help="the band count of the dataset it will train on")
    p.add_argument("--classes", type=int, required=True, help="the class count of the dataset it will train on")
    p.add_argument("--modality", choices=("ms", "rgb"), help="the collection it will train on (default: rgb for 3 "
                   "bands, else ms)")
    p.add_argument("--small-input", action="store_true", help="ResNet's 3x3 stride-1 stem (-*_small_input)")
    p.add_argument("--image-size", type=int, help="the MLP's input side")
    p.add_argument("--adapt-stem", action="store_true")
    p.add_argument("--fresh-head", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.modality = args.modality or ("rgb" if args.bands == 3 else "ms")
    torch.manual_seed(args.seed)
    source = load_state(args.weights)
    try:
        net = ackd_torch.build(args.arch, args.bands, args.classes, args.width, args.small_input, args.image_size)
    except ValueError as e:
        ackd_files.die(str(e))
    state, notes = convert(source, net.state_dict(), args)
    write(args.output, state, args)
    print(f"wrote {args.output}: {len(state)} tensors of {args.arch} width {args.width:g}, {args.bands} bands, "
          f"{args.classes} classes, from {args.weights}" + "".join(f"\n  {n}" for n in notes))


if __name__ == "__main__":
    main()
