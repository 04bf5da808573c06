#!/usr/bin/env bash
# A teacher gallery where a checkpoint belongs is named as such, with its
# checkpoint; a -distill_teacher of another architecture or dataset than the
# gallery's source is refused with one line; a copy of the source passes.
#   gallery_teacher.sh MPIEXEC ACKD FIXTURE_DIR OUTDIR
#   (FIXTURE_DIR: tests/train's s.h5, other.h5 and mlp/ run with its gallery)
set -u
mpirun=$1 ackd=$2 d=$3 out=$4
fail() { echo "FAIL: $*"; exit 1; }
expect_fail() { "$(dirname "$0")/../expect_fail.sh" "$@" || exit 1; }
rm -rf "$out" && mkdir -p "$out" || fail "cannot make $out"
run=("$mpirun" --oversubscribe -n 2 "$ackd")

expect_fail 2 "'$d/mlp/gallery.h5' is a teacher gallery \(ackd_format 'gallery'\), not a checkpoint. give the checkpoint it came from, '.*mlp/best.h5'" -- \
  "${run[@]}" eval -eval_checkpoint "$d/mlp/gallery.h5" -quiet
expect_fail 2 "'$d/s.h5' is an ackd dataset file, not a checkpoint" -- "${run[@]}" eval -eval_checkpoint "$d/s.h5" -quiet

"${run[@]}" train -train_data "$d/s.h5" -train_dir "$out/narrow" -teacher_arch mlp -teacher_width 0.25 -train_max_steps 1 \
  -quiet || fail "train (width 0.25) exits $?"
"${run[@]}" train -train_data "$d/other.h5" -train_dir "$out/other" -teacher_arch mlp -teacher_width 0.5 -train_max_steps 1 \
  -quiet || fail "train (other dataset) exits $?"
distill=("${run[@]}" distill -distill_data "$d/s.h5" -distill_gallery "$d/mlp/gallery.h5" -distill_match "$out/none.h5"
  -distill_dir "$out/student" -quiet)
expect_fail 2 "option -distill_teacher: '$out/narrow/best.h5' is a mlp \(width 0.25\) trained on .*, but gallery '$d/mlp/gallery.h5' comes from '.*mlp/best.h5', a mlp \(width 0.5\) .*another architecture" -- \
  "${distill[@]}" -distill_teacher "$out/narrow/best.h5"
expect_fail 2 "option -distill_teacher: '$out/other/best.h5' .*\(another dataset\)" -- \
  "${distill[@]}" -distill_teacher "$out/other/best.h5"
# The gallery's own teacher, under another name: accepted (the run then stops at the missing match file).
cp "$d/mlp/best.h5" "$out/copy.h5"
err=$("${distill[@]}" -distill_teacher "$out/copy.h5" 2>&1)
printf '%s\n' "$err" | grep -q "none.h5" || fail "a copy of the source teacher did not get past the check: $err"
printf '%s\n' "$err" | grep -q "option -distill_teacher" && fail "a copy of the source teacher was refused: $err"
echo ok
