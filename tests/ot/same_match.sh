#!/usr/bin/env bash
# Two match files of one problem, solved on different grids, agree: the same
# teachers for every student (exactly) and the same weights and potentials to
# a relative 1e-9 (h5diff -p), the rounding of differently ordered reductions.
set -u
h5diff=$1 a=$2 b=$3
"$h5diff" "$a" "$b" /match/teacher_index /match/teacher_index ||
  { echo "FAIL: teacher indices differ between $a and $b"; exit 1; }
for d in /match/weight /ot/f /ot/g; do
  "$h5diff" -p 1e-9 "$a" "$b" "$d" "$d" || { echo "FAIL: $d differs between $a and $b"; exit 1; }
done
echo "ok: $a and $b give the same matching"
