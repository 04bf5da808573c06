#!/usr/bin/python3
"""Curate's messages about the whole collection, on small GeoTIFF/PNG folders
made with gdal_translate:

- band out of range: -curate_ms_bands 1,2,3,4,5,7 on 6-band files is one line
  (band 7, files with 6 bands, bands in 1..6), exit 2, not a warning per file;
- a class map that leaves a class out: a warning naming the class and the map,
  once per class left out, and the class kept without a partner.

  check_curate_messages.py ACKD MPIEXEC OUT
"""
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_image_folders import write_raster  # noqa: E402

ackd, mpiexec, out = sys.argv[1:4]
shutil.rmtree(out, ignore_errors=True)
rng = np.random.default_rng(3)
ms, rgb = os.path.join(out, "ms"), os.path.join(out, "rgb")
for cls in ("A", "B", "C"):
    os.makedirs(os.path.join(ms, cls))
    for i in range(4):
        write_raster(os.path.join(ms, cls, f"{i}.tif"), rng.integers(0, 9999, size=(6, 8, 8)), "GTiff", "uint16")
for cls in ("A", "B", "Y"):
    os.makedirs(os.path.join(rgb, cls))
    for i in range(3):
        write_raster(os.path.join(rgb, cls, f"{i}.png"), rng.integers(0, 255, size=(3, 8, 8)), "PNG", "uint8")
failures = []


def run(*args):
    p = subprocess.run([mpiexec, "--oversubscribe", "-n", "2", ackd, "curate", *args], capture_output=True, text=True)
    return p.returncode, p.stderr


# 1. A band beyond the files' 6: one line, exit 2, nothing written.
code, err = run("-curate_ms_dir", ms, "-curate_ms_bands", "1,2,3,4,5,7", "-curate_output", f"{out}/bands.h5", "-quiet")
lines = [l for l in err.splitlines() if l.strip() and not l.startswith("---") and "mpirun" not in l]
want = (f"ackd curate: error: option -curate_ms_bands: band 7 is out of range for the files of '{ms}', which have 6 "
        "bands; give bands in 1..6")
if code != 2:
    failures.append(f"band 7 of 6: exit {code}, want 2")
if want not in err:
    failures.append(f"band 7 of 6: no line '{want}'")
if "has 6 bands" in err or "warning" in err:
    failures.append(f"band 7 of 6: per-file messages: {err[:300]}")
if os.path.exists(f"{out}/bands.h5"):
    failures.append("band 7 of 6: an output was written")
# In range (band 6 of 6): fine.
code, err = run("-curate_ms_dir", ms, "-curate_ms_bands", "1,6", "-curate_output", f"{out}/ok.h5", "-quiet")
if code != 0:
    failures.append(f"bands 1,6 of 6: exit {code}: {err}")

# 2. A class map that leaves out MS class C and RGB class Y: a warning for each, naming it and the map.
cmap = os.path.join(out, "classes.csv")
with open(cmap, "w") as f:
    f.write("A,A\nB,B\n")
code, err = run("-curate_ms_dir", ms, "-curate_ms_bands", "1,2,3", "-curate_rgb_dir", rgb, "-curate_rgb_size", "8",
                "-curate_class_map", cmap, "-curate_output", f"{out}/map.h5", "-quiet")
if code != 0:
    failures.append(f"partial class map: exit {code}: {err}")
for side, cls in (("MS", "C"), ("RGB", "Y")):
    pattern = rf"^ackd: warning: curate: class map '{re.escape(cmap)}' does not mention {side} class '{cls}'"
    n = len(re.findall(pattern, err, re.M))
    if n != 1:
        failures.append(f"partial class map: {n} warnings about {side} class {cls}, want 1: {err}")
if "class 'A'" in err or "class 'B'" in err:
    failures.append(f"partial class map: a warning about a mapped class: {err}")
if code == 0:
    with h5py.File(f"{out}/map.h5", "r") as f:
        ms_classes = [c.decode() if isinstance(c, bytes) else c for c in f["ms/classes"][:]]
        m = f["class_map/ms_to_rgb"][:]
        if m[ms_classes.index("C")] != -1:
            failures.append(f"class C left out of the map has partner {m[ms_classes.index('C')]}")
# A map that names every class, one side only for C and Y: no warning.
with open(cmap, "w") as f:
    f.write("A,A\nB,B\nC,\n,Y\n")
code, err = run("-curate_ms_dir", ms, "-curate_ms_bands", "1,2,3", "-curate_rgb_dir", rgb, "-curate_rgb_size", "8",
                "-curate_class_map", cmap, "-curate_output", f"{out}/map2.h5", "-quiet")
if code != 0 or "warning" in err:
    failures.append(f"complete class map: exit {code}, stderr {err}")

for f in failures:
    print("FAIL:", f)
print("ok" if not failures else f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
