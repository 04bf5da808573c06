#!/usr/bin/env bash
# The command line before PETSc starts: positional arguments anywhere among the
# options (an option's value is never taken for one), and options files that
# PETSc could not parse reported as one line naming the file, line and fix.
#   command_line.sh MPIEXEC ACKD DATASET OUTDIR
set -u
mpirun=$1 ackd=$2 data=$3 out=$4
fail() { echo "FAIL: $*"; exit 1; }
expect_fail() { "$(dirname "$0")/../expect_fail.sh" "$@" || exit 1; }
rm -rf "$out" && mkdir -p "$out" || fail "cannot make $out"

# -- positional arguments after options
printf -- '-quiet\n-h5_file_locking false\n' >"$out/quiet.opts"
for args in "-options_file $out/quiet.opts $data" "-quiet $data" "-h5_file_locking false $data -quiet" \
  "$data -options_file $out/quiet.opts" "-quiet true $data"; do
  text=$("$ackd" inspect $args 2>&1) || fail "ackd inspect $args exits $?: $text"
  printf '%s\n' "$text" | grep -q "^$data: ackd dataset" || fail "ackd inspect $args: no summary of $data: $text"
done
text=$("$mpirun" --oversubscribe -n 2 "$ackd" inspect -options_file "$out/quiet.opts" "$data" 2>&1) ||
  fail "mpirun -n 2 ackd inspect -options_file F FILE exits $?: $text"
expect_fail 2 "stage 'inspect' takes 1 argument \(FILE\), got 2" -- "$ackd" inspect -quiet "$data" "$data"
# A negative number is a value, not an argument.
expect_fail 2 "option -synth_overlap: -0.5 is out of range" -- "$ackd" synth -synth_overlap -0.5

# -- malformed options files: one line, exit 2, at 1 and 2 ranks
printf -- '# a comment\n-train_data %s\n\ntrain_epochs 3\n' "$data" >"$out/nodash.opts"
msg="options file '$out/nodash.opts' line 4: 'train_epochs 3' is not an option .each line is '-key value'.. write '-train_epochs 3'"
expect_fail 2 "$msg" -- "$ackd" train -options_file "$out/nodash.opts"
expect_fail 2 "$msg" -- "$mpirun" --oversubscribe -n 2 "$ackd" train -options_file "$out/nodash.opts"
printf -- '-quiet\n-options_file %s\n' "$out/nodash.opts" >"$out/outer.opts"
expect_fail 2 "$msg" -- "$ackd" train -options_file "$out/outer.opts"
printf -- '-options_file %s/missing.opts\n' "$out" >"$out/outer_missing.opts"
expect_fail 2 "options file '$out/missing.opts' not found" -- "$ackd" train -options_file "$out/outer_missing.opts"
expect_fail 2 "option -options_file needs a file name" -- "$ackd" train -options_file
# '!' is no comment to PETSc: a line starting with it is reported, not passed on.
printf -- '! note\n' >"$out/bang.opts"
expect_fail 2 "line 1: '! note' is not an option .* or with '#' for a comment" -- "$ackd" synth -options_file "$out/bang.opts"

# PETSc's alias lines pass; a malformed one is reported here (PETSc fails on rank 0 alone with it).
printf -- 'alias -count -synth_ms_count\n-count 10\n' >"$out/alias.opts"
"$ackd" synth -options_file "$out/alias.opts" -check_options >/dev/null || fail "a valid alias line is refused"
printf -- 'alias -count\n' >"$out/alias_bad.opts"
expect_fail 2 "line 1: 'alias -count' is not an alias. write 'alias -NEW_NAME -EXISTING_OPTION'" -- \
  "$mpirun" --oversubscribe -n 2 "$ackd" synth -options_file "$out/alias_bad.opts"

# -- a global batch smaller than the ranks is an option error (exit 2), before any data is read
expect_fail 2 "option -train_batch 3 is smaller than the 4 ranks .* use -train_batch 4 or more, or fewer ranks" -- \
  "$mpirun" --oversubscribe -n 4 "$ackd" train -train_data "$data" -train_batch 3 -train_dir "$out/batch" -quiet
expect_fail 2 "option -distill_batch 2 is smaller than the 4 ranks" -- \
  "$mpirun" --oversubscribe -n 4 "$ackd" distill -distill_data "$data" -distill_batch 2 -distill_dir "$out/batch" -quiet
echo ok
