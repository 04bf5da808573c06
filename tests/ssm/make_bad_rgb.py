#!/usr/bin/python3
"""A dataset whose /rgb collection has the MS collection's 10 bands (a copy of /ms):
what `ackd ssm` must refuse with one line.  make_bad_rgb.py IN OUT"""
import shutil
import sys

import h5py

shutil.copyfile(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    del f["rgb"]
    f.copy("ms", "rgb")
