#!/usr/bin/env bash
# Output directories are created with their missing parents (mkdir -p), by
# rank 0 for all ranks; one that cannot be made is one line naming the path
# that failed, the reason and the option.
#   output_dirs.sh MPIEXEC ACKD DATASET OUTDIR
set -u
mpirun=$1 ackd=$2 data=$3 out=$4
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$out" && mkdir -p "$out" || fail "cannot make $out"

"$mpirun" --oversubscribe -n 2 "$ackd" train -train_data "$data" -train_dir "$out/new/parents/teacher" \
  -teacher_arch mlp -teacher_width 0.5 -train_max_steps 1 -quiet || fail "train into a new nested -train_dir exits $?"
for f in best.h5 gallery.h5; do
  [ -s "$out/new/parents/teacher/$f" ] || fail "train did not write new/parents/teacher/$f"
done
ls "$out/new/parents/teacher/checkpoints/"ckpt_*.h5 >/dev/null 2>&1 || fail "no checkpoint under new/parents/teacher"

# A file where a parent directory should be: nothing can create it.
touch "$out/blocker"
"$(dirname "$0")/../expect_fail.sh" 1 "cannot create directory '$out/blocker' \(for '$out/blocker/sub/teacher'\): Not a directory. check -train_dir" -- \
  "$mpirun" --oversubscribe -n 2 "$ackd" train -train_data "$data" -train_dir "$out/blocker/sub/teacher" \
  -teacher_arch mlp -teacher_width 0.5 -train_max_steps 1 -quiet || exit 1
echo ok
