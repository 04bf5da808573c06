#!/usr/bin/python3
"""An ackd checkpoint as a PyTorch model: a state_dict (.pt) that loads with strict=True into the
network analysis/ackd_torch.py builds (torchvision's own classes, configured as ackd's), and a JSON
file next to it with that configuration and the class names.

  export_torch.py CKPT.h5 -o MODEL.pt [--verify EVAL.h5] [--onnx MODEL.onnx]

--verify EVAL.h5  runs the exported model on the rows an `ackd eval` of this checkpoint scored
                  (its dataset and split) and compares the logits with the eval file's; exit 1 if
                  they differ by more than --tolerance of the largest logit. ackd computes in float32
                  with oneDNN, as PyTorch's CPU path does, but sums in another order.
--onnx FILE       also writes the network (logits only) as ONNX, opset 13, batch size dynamic.

In PyTorch:
    import json, torch, ackd_torch                     # analysis/ on sys.path
    config = json.load(open("MODEL.json"))
    net = ackd_torch.build(**config["model"]).eval()
    net.load_state_dict(torch.load("MODEL.pt"), strict=True)
    logits = net(images)                               # images as the ackd dataset stores them"""
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ackd_files  # noqa: E402
import ackd_torch  # noqa: E402


def class_names(config):
    """The class names of the checkpoint's training data, when that file is still there."""
    try:
        with h5py.File(config["data"], "r") as f:
            return ackd_files.strings(f[config["modality"]]["classes"])
    except (OSError, KeyError, TypeError):
        return None


def verify(net, checkpoint, eval_path, tolerance):
    """The largest |logit difference| / max |logit| over the eval file's rows; exits 1 above tolerance."""
    with ackd_files.open_file(eval_path, "eval") as e:
        if "logits" not in e:
            ackd_files.die(f"'{eval_path}' has no logits; evaluate the checkpoint again with this version of ackd")
        scored = ackd_files.text(e.attrs["checkpoint"])
        if os.path.realpath(scored) != os.path.realpath(checkpoint):
            ackd_files.die(f"'{eval_path}' scored '{scored}', not '{checkpoint}'; verify against an eval of this checkpoint")
        rows, reference = np.asarray(e["index"]), np.asarray(e["logits"], dtype=np.float64)
        data, modality = ackd_files.text(e.attrs["data"]), ackd_files.text(e.attrs["modality"])
    order = np.argsort(rows)  # h5py reads rows in increasing order
    with h5py.File(data, "r") as f:
        images = torch.from_numpy(np.asarray(f[modality]["images"][rows[order]], dtype=np.float32))
    with torch.no_grad():
        mine = np.empty_like(reference)
        for start in range(0, len(order), 256):
            mine[order[start:start + 256]] = net(images[start:start + 256]).double().numpy()
    error = float(np.abs(mine - reference).max() / max(np.abs(reference).max(), 1e-30))
    agree = float((mine.argmax(1) == reference.argmax(1)).mean())
    print(f"verified on {len(rows)} samples of {data} ({modality}): largest logit difference {error:.2e} of the "
          f"largest logit, predictions agree on {100 * agree:.2f}%")
    if error > tolerance:
        ackd_files.die(f"the exported model's logits differ from ackd's by {error:.2e} > --tolerance {tolerance:g}")


def main():
    p = ackd_files.parser(__doc__)
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True, help="the state_dict file (.pt); MODEL.json goes next to it")
    p.add_argument("--verify", metavar="EVAL.h5")
    p.add_argument("--tolerance", type=float, default=1e-5, help="of the largest logit (default 1e-5)")
    p.add_argument("--onnx", metavar="FILE")
    args = p.parse_args()
    torch.set_num_threads(1)
    if not os.path.exists(args.checkpoint):
        ackd_files.die(f"checkpoint '{args.checkpoint}' not found")
    try:
        net, config = ackd_torch.load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as e:
        ackd_files.die(f"cannot export '{args.checkpoint}': {e}")
    torch.save(net.state_dict(), args.output)
    model = {k: config[k] for k in ("arch", "bands", "classes", "width", "small_input", "image_size")}
    description = {"model": model, "classes": class_names(config), "modality": config["modality"],
                   "role": config["role"], "checkpoint": os.path.abspath(args.checkpoint),
                   "input": "images as the ackd dataset stores them: (N, bands, H, W) float32, already normalised"}
    side = os.path.splitext(args.output)[0] + ".json"
    with open(side, "w") as f:
        json.dump(description, f, indent=2)
    print(f"wrote {args.output} ({sum(v.numel() for v in net.state_dict().values())} values, {config['arch']} "
          f"width {config['width']:g}, {config['bands']} bands, {config['classes']} classes) and {side}")
    if args.onnx:
        size = config["image_size"] or 64
        torch.onnx.export(net, torch.zeros(1, config["bands"], size, size), args.onnx, opset_version=13,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        print(f"wrote {args.onnx}")
    if args.verify:
        verify(net, args.checkpoint, args.verify, args.tolerance)


if __name__ == "__main__":
    main()
