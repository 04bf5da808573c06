#!/usr/bin/python3
"""Any PyTorch model as an external teacher: its outputs on every training sample of an ackd
dataset's collection, written as a gallery (docs/FORMATS.md) that `ackd distill -distill_gallery`
reads as it reads ackd train's.

  torch_gallery.py DATA.h5 -o GALLERY.h5 --model FILE.py:FUNCTION [--collection ms]
                   [--class-map MAP.csv] [--embedding-of MODULE] [--batch 256] [--source TEXT]

--model FILE.py:FUNCTION  a function of no arguments that returns the torch.nn.Module, its weights
                          loaded (a foundation model's image encoder with its head, a torchvision
                          model, an ackd export via analysis/ackd_torch.py). Its forward takes the
                          images as the dataset stores them, (B, bands, H, W) float32, and returns
                          logits in the model's own label space.
--class-map MAP.csv       lines `MODEL_CLASS_INDEX,DATASET_CLASS_NAME` taking the model's classes to
                          the collection's. Several model classes of one dataset class pool their
                          probability (the log-sum-exp of their logits); a dataset class that no
                          model class maps to gets the lowest logit of the sample minus 50, the
                          convention of ackd's teacher targets for classes the teacher lacks.
                          Without it the model's classes are the collection's, in order.
--embedding-of MODULE     also store the input of this submodule (e.g. `fc`, a torchvision ResNet's
                          pooled features) as the gallery's embedding.

The gallery lists the collection's training split, in dataset order, as ackd train writes it."""
import csv
import importlib.util
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ackd_files  # noqa: E402

MISSING_CLASS_MARGIN = 50.0  # below the sample's lowest logit, as src/kd/teacher_targets.c does


def load_model(spec):
    path, _, name = spec.rpartition(":")
    if not path or not name:
        ackd_files.die(f"--model '{spec}' is not FILE.py:FUNCTION")
    if not os.path.exists(path):
        ackd_files.die(f"--model file '{path}' not found")
    module_spec = importlib.util.spec_from_file_location("ackd_external_teacher", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, name, None)):
        ackd_files.die(f"'{path}' has no function '{name}'")
    model = getattr(module, name)()
    if not isinstance(model, torch.nn.Module):
        ackd_files.die(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def read_class_map(path, model_classes, names):
    """For each dataset class, the model classes that map to it."""
    pooled = [[] for _ in names]
    with open(path, newline="") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if len(row) != 2 or not row[0].strip().isdigit():
                ackd_files.die(f"{path}:{number}: '{','.join(row)}' is not MODEL_CLASS_INDEX,DATASET_CLASS_NAME")
            index, name = int(row[0]), row[1].strip()
            if index >= model_classes:
                ackd_files.die(f"{path}:{number}: model class {index} is out of range; the model has {model_classes}")
            if name not in names:
                ackd_files.die(f"{path}:{number}: '{name}' is not a class of the collection ({', '.join(names)})")
            pooled[names.index(name)].append(index)
    return pooled


def to_dataset_classes(logits, pooled):
    """(N, K_model) model logits -> (N, K_dataset): log-sum-exp over each class's model classes."""
    out = np.empty((logits.shape[0], len(pooled)))
    lowest = logits.min(1)
    for k, members in enumerate(pooled):
        if members:
            z = logits[:, members]
            top = z.max(1)
            out[:, k] = top + np.log(np.exp(z - top[:, None]).sum(1))
        else:
            out[:, k] = lowest - MISSING_CLASS_MARGIN
    return out


def main():
    p = ackd_files.parser(__doc__)
    p.add_argument("data")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--model", required=True, metavar="FILE.py:FUNCTION")
    p.add_argument("--collection", choices=("ms", "rgb"), default="ms")
    p.add_argument("--class-map", metavar="MAP.csv")
    p.add_argument("--embedding-of", metavar="MODULE")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--source", help="the gallery's source attribute (default: 'external: FILE.py:FUNCTION')")
    args = p.parse_args()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    with ackd_files.open_file(args.data, "dataset") as f:
        group = f[args.collection]
        if int(group.attrs.get("multilabel", 0)):
            ackd_files.die(f"/{args.collection} of '{args.data}' is multi-label; this script writes single-label "
                           "galleries")
        names = ackd_files.strings(group["classes"])
        rows = np.flatnonzero(np.asarray(group["split"]) == 0)
        labels = np.asarray(group["labels"])[rows].astype(np.int32)
        images = group["images"]
        model = load_model(args.model)
        captured = []
        if args.embedding_of:
            modules = dict(model.named_modules())
            if args.embedding_of not in modules:
                ackd_files.die(f"--embedding-of: the model has no module '{args.embedding_of}'")
            modules[args.embedding_of].register_forward_hook(lambda m, inputs, out: captured.append(inputs[0]))
        logits, embeddings = [], []
        with torch.no_grad():
            for start in range(0, len(rows), args.batch):
                x = torch.from_numpy(np.asarray(images[rows[start:start + args.batch]], dtype=np.float32))
                z = model(x)
                if not torch.is_tensor(z) or z.dim() != 2 or z.shape[0] != x.shape[0]:
                    ackd_files.die(f"the model returned {getattr(z, 'shape', type(z).__name__)} for a batch of "
                                   f"{x.shape[0]}; its forward must return (batch, classes) logits")
                logits.append(z.double().numpy())
                if args.embedding_of:
                    if not captured:
                        ackd_files.die(f"--embedding-of: the model's forward never called '{args.embedding_of}'")
                    embeddings.append(captured[-1].flatten(1).float().numpy())
                    captured.clear()
    logits = np.concatenate(logits)
    pooled = read_class_map(args.class_map, logits.shape[1], names) if args.class_map else None
    if pooled is None and logits.shape[1] != len(names):
        ackd_files.die(f"the model has {logits.shape[1]} classes, /{args.collection} has {len(names)}; give "
                       "--class-map")
    mapped = to_dataset_classes(logits, pooled) if pooled else logits
    if not np.isfinite(mapped).all():
        ackd_files.die("the model's logits hold NaN or Inf; nothing written")
    part = args.output + ".part"
    with h5py.File(part, "w") as g:
        g.attrs["ackd_format"] = "gallery"
        g.attrs["ackd_format_version"] = 1
        g.attrs["source"] = args.source or f"external: {args.model}"
        g.attrs["multilabel"] = 0
        g["gallery/logits"] = mapped.astype(np.float32)
        if embeddings:
            g["gallery/embedding"] = np.concatenate(embeddings)
        g["gallery/labels"] = labels
        g["gallery/index"] = rows.astype(np.int64)
        g["gallery/classes"] = np.array([n.encode() for n in names])  # fixed-length, as ackd writes them
    os.replace(part, args.output)
    unmapped = [names[k] for k, m in enumerate(pooled) if not m] if pooled else []
    print(f"wrote {args.output}: {len(rows)} samples of /{args.collection}, {len(names)} classes"
          + (f", embedding {embeddings[0].shape[1]}" if embeddings else "")
          + (f"; no model class for {', '.join(unmapped)}" if unmapped else ""))


if __name__ == "__main__":
    main()
