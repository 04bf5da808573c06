#!/usr/bin/env bash
# Fixtures for the bad-input tests: a dataset, a second one with other bands,
# a finished MLP run (width 0.5) whose checkpoints another width must not load,
# and copies of the dataset whose /class_map/ms_to_rgb has rank 0 or 2 or is one entry short, and
# whose /ms/classes names one class more than its attribute (damaged or foreign files).
#   bad_setup.sh MPIEXEC ACKD DIR PYTHON
set -euo pipefail
mpirun=$1 ackd=$2 dir=$3 python=$4
rm -rf "$dir" && mkdir -p "$dir"
"$mpirun" -n 2 "$ackd" synth -synth_output "$dir/s.h5" -synth_ms_count 200 -synth_rgb_count 100 -synth_size 16 -quiet
"$mpirun" -n 2 "$ackd" synth -synth_output "$dir/other.h5" -synth_ms_count 100 -synth_rgb_count 100 -synth_size 16 \
  -synth_bands 4 -quiet
"$mpirun" -n 2 "$ackd" train -train_data "$dir/s.h5" -train_dir "$dir/mlp" -teacher_arch mlp -teacher_width 0.5 \
  -train_max_steps 2 -quiet
"$python" - "$dir" <<'PY'
import shutil
import sys

import h5py
import numpy as np

d = sys.argv[1]
for rank, reshape in ((0, lambda m: m[0]), (2, lambda m: np.stack([m, m]))):
    path = f"{d}/class_map_rank{rank}.h5"
    shutil.copy(f"{d}/s.h5", path)
    with h5py.File(path, "r+") as f:
        m = f["class_map/ms_to_rgb"][...]
        del f["class_map/ms_to_rgb"]
        f["class_map/ms_to_rgb"] = reshape(m)
# A class map one entry short, and an MS class list one name longer than its attribute says.
shutil.copy(f"{d}/s.h5", f"{d}/class_map_short.h5")
with h5py.File(f"{d}/class_map_short.h5", "r+") as f:
    m = f["class_map/ms_to_rgb"][...]
    del f["class_map/ms_to_rgb"]
    f["class_map/ms_to_rgb"] = m[:-1]
shutil.copy(f"{d}/s.h5", f"{d}/classes_long.h5")
with h5py.File(f"{d}/classes_long.h5", "r+") as f:
    names = f["ms/classes"][...]
    del f["ms/classes"]
    f["ms/classes"] = np.append(names, names[:1])
PY
