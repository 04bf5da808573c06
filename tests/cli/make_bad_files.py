#!/usr/bin/python3
"""Makes the damaged inputs that `ackd inspect` must refuse cleanly, from a good
dataset: a truncated copy, a copy missing /rgb/labels, a foreign HDF5 file and
a file that is not HDF5 at all."""
import shutil
import sys

import h5py

good, out = sys.argv[1], sys.argv[2]
with open(good, "rb") as f, open(f"{out}/truncated.h5", "wb") as t:
    t.write(f.read(30000))
shutil.copy(good, f"{out}/nolabels.h5")
with h5py.File(f"{out}/nolabels.h5", "a") as f:
    del f["rgb/labels"]
with h5py.File(f"{out}/foreign.h5", "w") as f:
    f["x"] = 1
with open(f"{out}/foreign.txt", "w") as f:
    f.write("not an HDF5 file\n")
