#!/usr/bin/python3
"""The model tensors test_nn_checkpoint wrote have torchvision's names and
shapes: /model/<layer>/<tensor> for every state_dict entry of the same ResNet-18
(10 bands, 7 classes, width 0.25) except num_batches_tracked, and nothing else."""
import pathlib
import sys

import h5py

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "analysis"))
import ackd_torch  # noqa: E402

net = ackd_torch.build("resnet18", 10, 7, 0.25)
want = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
have = {}
with h5py.File(sys.argv[1], "r") as f:
    f["model"].visititems(lambda name, obj: have.__setitem__(name.replace("/", "."), obj.shape)
                          if isinstance(obj, h5py.Dataset) else None)
missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
for k in missing:
    print("FAIL: missing", k)
for k in extra:
    print("FAIL: not in torchvision's state_dict", k)
for k in wrong:
    print(f"FAIL: {k} has shape {have[k]}, torchvision {want[k]}")
ok = not (missing or extra or wrong)
print(f"checkpoint names and shapes: {'ok' if ok else 'FAILED'} ({len(have)} tensors)")
sys.exit(0 if ok else 1)
