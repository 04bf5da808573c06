#!/usr/bin/env bash
# Runs test_finish in one mode on NP ranks and checks how the job ends.
#   finish.sh MPIEXEC NP BINARY MODE
set -u
mpiexec=$1 np=$2 binary=$3 mode=$4
start=$(date +%s)
out=$(timeout 60 "$mpiexec" -n "$np" "$binary" "$mode" 2>&1)
code=$?
elapsed=$(( $(date +%s) - start ))
lines=$(printf '%s\n' "$out" | grep -c "^ackd test: error" || true)
fail() { echo "FAIL ($mode, $np ranks): $*"; echo "--- output:"; echo "$out"; exit 1; }

[ "$code" -ne 124 ] || fail "the job hung (killed by timeout after 60 s)"
case $mode in
  ok)
    [ "$code" -eq 0 ] || fail "exit $code, want 0"
    [ "$lines" -eq 0 ] || fail "$lines error lines, want none" ;;
  collective)
    [ "$code" -eq 1 ] || fail "exit $code, want 1"
    [ "$lines" -eq 1 ] || fail "$lines error lines, want exactly 1"
    printf '%s\n' "$out" | grep -q "^ackd test: error: file 'missing.h5' not found; check the path$" || fail "wrong message" ;;
  stuck|late)
    [ "$code" -ne 0 ] || fail "exit 0, want non-zero"
    [ "$lines" -eq 1 ] || fail "$lines error lines, want exactly 1"
    [ "$elapsed" -lt 30 ] || fail "took $elapsed s"
    if [ "$np" -gt 1 ]; then
      printf '%s\n' "$out" | grep -q "error on rank $((np - 1)): file 'missing.h5'" || fail "the line must name the failing rank"
    fi ;;
esac
echo "ok ($mode, $np ranks, exit $code, ${elapsed}s)"
