#!/usr/bin/env bash
# The solver's progress bar (`sinkhorn [...] NN% ETA`) draws on rank 0's
# terminal only: script(1) gives mpirun a pseudo-terminal; a pipe and -quiet
# must stay free of it.
set -u
ackd=$1 problem=$2 dir=$3 mpirun=$4
rm -rf "$dir" && mkdir -p "$dir" || exit 1
opts="-match_input $problem -match_ot_cost cosine -match_ot_eps 0.02"
tty_out=$(script -qec "$mpirun -n 2 $ackd match $opts -match_output $dir/tty.h5" /dev/null)
grep -q 'sinkhorn     \[#*\.*\] *[0-9]*% ETA' <<<"$tty_out" ||
  { echo "FAIL: no solver progress bar on a terminal"; echo "$tty_out"; exit 1; }
grep -q '100% ETA' <<<"$tty_out" || { echo "FAIL: the bar did not end at 100%"; echo "$tty_out"; exit 1; }
pipe_out=$($mpirun -n 2 "$ackd" match $opts -match_output "$dir/pipe.h5" 2>&1 | cat)
grep -q 'sinkhorn     \[' <<<"$pipe_out" && { echo "FAIL: progress bar drawn into a pipe"; exit 1; }
quiet_out=$(script -qec "$mpirun -n 2 $ackd match $opts -match_output $dir/quiet.h5 -quiet" /dev/null)
grep -q 'sinkhorn     \[' <<<"$quiet_out" && { echo "FAIL: -quiet drew the bar: $quiet_out"; exit 1; }
echo "ok: the solver's progress on a terminal only, silenced by -quiet"
