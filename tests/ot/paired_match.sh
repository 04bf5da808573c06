#!/usr/bin/env bash
# Co-registered collections end to end: `ackd synth -synth_paired` renders RGB sample i on the ground
# of MS sample i in the same split, and `ackd match -match_features index` gives every student the
# teacher of its own index. Checked by check_paired.py against the files' own index arrays and
# pixels (an independent path: h5py and NumPy), on 1 and 2 ranks and with the argmin solver.
#   paired_match.sh PYTHON ACKD MPIRUN... -- OUTDIR
set -eu
py=$1 ackd=$2
shift 2
mpirun=()
while [ "$1" != "--" ]; do mpirun+=("$1"); shift; done
out=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out"
"${mpirun[@]}" 2 "$ackd" synth -synth_output "$out/world.h5" -synth_ms_count 600 -synth_rgb_count 600 \
  -synth_classes 5 -synth_overlap 0.6 -synth_paired -quiet
"$py" "$here/check_paired.py" world "$out/world.h5" "$out/embeddings.h5"
"${mpirun[@]}" 2 "$ackd" match -match_input "$out/embeddings.h5" -match_output "$out/sinkhorn.h5" \
  -match_features index -quiet
"${mpirun[@]}" 1 "$ackd" match -match_input "$out/embeddings.h5" -match_output "$out/argmin.h5" \
  -match_features index -match_solver argmin -match_ot_topk 1 -quiet
for m in sinkhorn argmin; do "$py" "$here/check_paired.py" match "$out/embeddings.h5" "$out/$m.h5"; done
