#!/usr/bin/env bash
# The progress bar draws on a terminal only: script(1) gives the command a
# pseudo-terminal; a plain pipe and -quiet must stay free of it.
set -u
ackd=$1 dir=$2 mpirun=$3
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" || exit 1
opts="-synth_ms_count 200 -synth_rgb_count 200 -synth_force -synth_output tty.h5"
tty_out=$(script -qec "$ackd synth $opts" /dev/null)
grep -q 'synth        \[#' <<<"$tty_out" || { echo "FAIL: no progress bar on a terminal"; echo "$tty_out"; exit 1; }
pipe_out=$($ackd synth $opts 2>&1 | cat)
grep -q '\[#' <<<"$pipe_out" && { echo "FAIL: progress bar drawn into a pipe"; exit 1; }
mpi_tty_out=$(script -qec "$mpirun -n 2 $ackd synth $opts" /dev/null)
grep -q 'synth        \[#' <<<"$mpi_tty_out" || { echo "FAIL: no progress bar under mpirun on a terminal"; echo "$mpi_tty_out"; exit 1; }
script -qec "$mpirun -n 2 $ackd synth $opts > mpi.log 2>&1" /dev/null
grep -q 'synth: wrote' mpi.log || { echo "FAIL: mpirun's log file lacks the run's output"; exit 1; }
grep -q '\[#' mpi.log && { echo "FAIL: progress bar written into mpirun's log file"; exit 1; }
quiet_out=$(script -qec "$ackd synth $opts -quiet" /dev/null)
[ -z "$(tr -d '\r\n' <<<"$quiet_out")" ] || { echo "FAIL: -quiet printed: $quiet_out"; exit 1; }
echo "ok: progress on a TTY only, silenced by -quiet"
