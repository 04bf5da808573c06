#!/usr/bin/env bash
# Solves a problem and checks the match file against POT.
#   solve_and_check.sh [--inprocess] PYTHON REFERENCE_SCRIPT PROBLEM MATCH -- LAUNCHER... ACKD -- MATCH_OPTIONS... -- CHECK_OPTIONS...
# With --inprocess the launched program is test_ot_inprocess (the library called
# in-process, as distill does), given PROBLEM MATCH OPTIONS... instead of `match`.
set -eu
inprocess=0
if [ "$1" = "--inprocess" ]; then inprocess=1; shift; fi
python=$1 script=$2 problem=$3 match=$4
shift 5
run=() options=()
while [ "$1" != "--" ]; do run+=("$1"); shift; done
shift
while [ "$1" != "--" ]; do options+=("$1"); shift; done
shift
rm -f "$match"
if [ "$inprocess" = 1 ]; then
  "${run[@]}" "$problem" "$match" "${options[@]}"
else
  "${run[@]}" match -match_input "$problem" -match_output "$match" -quiet "${options[@]}"
fi
exec "$python" "$script" check "$problem" "$match" "$@"
