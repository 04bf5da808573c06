#!/usr/bin/env bash
# ackd eval on a dataset without a test split (k-fold, or fractions that leave
# none) evaluates val by default and says so; -eval_split test is refused with
# the way out; -quiet keeps the result (OA, per-class accuracy) and drops the rest.
#   eval_split.sh MPIEXEC ACKD OUTDIR
set -u
mpirun=$1 ackd=$2 out=$3
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$out" && mkdir -p "$out" || fail "cannot make $out"
run() { "$mpirun" --oversubscribe -n 2 "$ackd" "$@"; }

run synth -synth_output "$out/notest.h5" -synth_ms_count 100 -synth_rgb_count 100 -synth_size 8 -synth_classes 4 \
  -synth_train 0.8 -synth_val 0.2 -quiet || fail "synth exits $?"
run train -train_data "$out/notest.h5" -train_dir "$out/t" -teacher_arch mlp -teacher_width 0.25 -train_max_steps 1 \
  -quiet || fail "train exits $?"

text=$(run eval -eval_checkpoint "$out/t/best.h5" 2>&1) || fail "eval without a test split exits $?: $text"
printf '%s\n' "$text" | grep -q "has no test split .*: evaluating the val split" || fail "no line says val is used: $text"
printf '%s\n' "$text" | grep -Eq "on the val split of /ms \(20 samples\): OA [0-9.]+" || fail "no val OA line: $text"
[ -s "$out/t/eval_val.h5" ] || fail "eval_val.h5 not written"

# -quiet: the result lines stay, the information goes.
text=$(run eval -eval_checkpoint "$out/t/best.h5" -quiet 2>&1) || fail "eval -quiet exits $?"
printf '%s\n' "$text" | grep -Eq "on the val split of /ms \(20 samples\): OA [0-9.]+, mean class accuracy" ||
  fail "-quiet silenced eval's OA: '$text'"
[ "$(printf '%s\n' "$text" | grep -c '(.* samples)$')" -eq 4 ] || fail "-quiet dropped per-class lines: '$text'"
printf '%s\n' "$text" | grep -Eq "^wrote |no test split" && fail "-quiet still prints information: '$text'"

"$(dirname "$0")/../expect_fail.sh" 2 "the test split of /ms in '.*notest.h5' is empty .* use -eval_split val" -- \
  "$mpirun" --oversubscribe -n 2 "$ackd" eval -eval_checkpoint "$out/t/best.h5" -eval_split test -quiet || exit 1
echo ok
