#!/usr/bin/env bash
# Two ackd files hold the same data: h5diff (HDF5's own comparator) over every
# top-level group of the first. Root attributes are left out: they record the
# time and the number of ranks, which are meant to differ.
set -u
h5diff=$1 a=$2 b=$3
groups=$(h5ls "$a" | awk '$2 == "Group" { print "/" $1 }')
[ -n "$groups" ] || { echo "FAIL: $a has no groups"; exit 1; }
for group in $groups; do
  "$h5diff" -r "$a" "$b" "$group" "$group" > /dev/null || { echo "FAIL: $group differs between $a and $b"; exit 1; }
done
echo "ok: $a and $b hold identical data in" $groups
