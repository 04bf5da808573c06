#!/usr/bin/env bash
# Solves a problem with `ackd match` and checks the match file against POT.
#   solve_and_check.sh PYTHON REFERENCE_SCRIPT PROBLEM MATCH -- LAUNCHER... ACKD -- MATCH_OPTIONS... -- CHECK_OPTIONS...
set -eu
python=$1 script=$2 problem=$3 match=$4
shift 5
run=() options=()
while [ "$1" != "--" ]; do run+=("$1"); shift; done
shift
while [ "$1" != "--" ]; do options+=("$1"); shift; done
shift
rm -f "$match"
"${run[@]}" match -match_input "$problem" -match_output "$match" -quiet "${options[@]}"
exec "$python" "$script" check "$problem" "$match" "$@"
