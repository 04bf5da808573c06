#!/usr/bin/env bash
# A link planted at an output's temporary name (OUT.part -> victim) is replaced, not followed:
# the victim keeps its bytes, and the output is a regular HDF5 file, not a link to the victim.
#   planted_symlink.sh ACKD DIR
set -u
ackd=${1:?usage: planted_symlink.sh ACKD DIR} dir=${2:?usage: planted_symlink.sh ACKD DIR}
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" || exit 1
echo "the user's own file" >victim.txt
ln -s victim.txt out.h5.part
"$ackd" synth -synth_output out.h5 -synth_ms_count 20 -synth_rgb_count 20 -synth_size 8 -quiet || { echo "FAIL: synth exit $?"; exit 1; }
fail=0
[ "$(cat victim.txt)" = "the user's own file" ] || { echo "FAIL: victim.txt was overwritten"; fail=1; }
[ -L out.h5 ] && { echo "FAIL: out.h5 is a symbolic link"; fail=1; }
[ -e out.h5.part ] && { echo "FAIL: out.h5.part is left behind"; fail=1; }
h5dump -H out.h5 >/dev/null || { echo "FAIL: out.h5 does not open in h5dump"; fail=1; }
[ $fail -eq 0 ] && echo "ok: the planted link was replaced; victim.txt intact, out.h5 a regular HDF5 file"
exit $fail
