#!/usr/bin/env bash
# Fixtures for the bad-input tests: a dataset, a second one with other bands,
# and a finished MLP run (width 0.5) whose checkpoints another width must not load.
set -euo pipefail
mpirun=$1 ackd=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
"$mpirun" -n 2 "$ackd" synth -synth_output "$dir/s.h5" -synth_ms_count 200 -synth_rgb_count 100 -synth_size 16 -quiet
"$mpirun" -n 2 "$ackd" synth -synth_output "$dir/other.h5" -synth_ms_count 100 -synth_rgb_count 100 -synth_size 16 \
  -synth_bands 4 -quiet
"$mpirun" -n 2 "$ackd" train -train_data "$dir/s.h5" -train_dir "$dir/mlp" -teacher_arch mlp -teacher_width 0.5 \
  -train_max_steps 2 -quiet
