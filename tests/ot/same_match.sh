#!/usr/bin/env bash
# Two match files of one problem, solved on different grids, agree: the same
# teachers for every student (exactly) and the same weights and potentials to
# a relative 1e-9 (h5diff -p), the rounding of differently ordered reductions.
# --plan-only: compares the plans of two different paths (class blocks and
# dense): skips f and g (a blocked solve fixes each block's potentials up to a
# constant of its own, the dense solve one constant) and allows weights to
# differ by 1e-8, the distance between two solves that stopped at different
# points below the tolerance.
# --rel R (after --plan-only): the weights' relative tolerance instead.
set -u
datasets="/match/weight /ot/f /ot/g" rel=1e-9
if [ "$1" = "--plan-only" ]; then datasets="/match/weight" rel=1e-8; shift; fi
if [ "$1" = "--rel" ]; then rel=$2; shift 2; fi
h5diff=$1 a=$2 b=$3
"$h5diff" "$a" "$b" /match/teacher_index /match/teacher_index ||
  { echo "FAIL: teacher indices differ between $a and $b"; exit 1; }
for d in $datasets; do
  "$h5diff" -p $rel "$a" "$b" "$d" "$d" || { echo "FAIL: $d differs between $a and $b"; exit 1; }
done
echo "ok: $a and $b give the same matching"
