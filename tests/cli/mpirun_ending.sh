#!/usr/bin/env bash
# How a failed run ends under a real mpirun with 2 ranks. Ranks that agree on
# the failure end through MPI_Finalize with the exit code (never MPI_Abort), so
# with Open MPI's `mpirun -q` ackd's one line is the last line on stderr; plain
# mpirun adds its own non-zero-exit notice after it, but no MPI_ABORT banner.
#   mpirun_ending.sh MPIEXEC ACKD OUTDIR
set -u
mpirun=$1 ackd=$2 out=$3
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$out" && mkdir -p "$out" || fail "cannot make $out"
printf -- '-quiet\ntrain_epochs 3\n' >"$out/bad.opts"

# last_line CODE REGEX -- command...: the exit code and stderr's last non-empty line.
last_line() {
  local want=$1 regex=$2
  shift 3
  local err code last
  err=$("$@" 2>&1 >/dev/null)
  code=$?
  last=$(printf '%s\n' "$err" | grep -v '^[[:space:]]*$' | tail -1)
  [ "$code" -eq "$want" ] || fail "$*: exit $code, want $want: $err"
  printf '%s\n' "$last" | grep -Eq -- "$regex" || fail "$*: last stderr line is '$last', want /$regex/; stderr: $err"
  echo "ok: exit $code: $last"
}
last_line 1 "^ackd train: error: file 'nope.h5' not found. check the path$" -- \
  "$mpirun" -q --oversubscribe -n 2 "$ackd" train -train_data nope.h5 -quiet
last_line 2 "^ackd synth: error: option -synth_overlap: 2 is out of range" -- \
  "$mpirun" -q --oversubscribe -n 2 "$ackd" synth -synth_overlap 2
last_line 2 "^ackd: error: options file '.*bad.opts' line 2: 'train_epochs 3' is not an option" -- \
  "$mpirun" -q --oversubscribe -n 2 "$ackd" train -options_file "$out/bad.opts"

# Plain mpirun: the agreed failure ends without MPI_Abort, one ackd line, the right code.
err=$("$mpirun" --oversubscribe -n 2 "$ackd" train -train_data nope.h5 -quiet 2>&1 >/dev/null)
code=$?
[ "$code" -eq 1 ] || fail "plain mpirun: exit $code, want 1"
printf '%s\n' "$err" | grep -q "MPI_ABORT was invoked" && fail "an agreed failure went through MPI_Abort: $err"
[ "$(printf '%s\n' "$err" | grep -c '^ackd train: error')" -eq 1 ] || fail "plain mpirun: not exactly one ackd line: $err"
echo ok
