#!/usr/bin/env bash
# Runs a command that must fail cleanly: the given exit code, exactly one
# 'ackd ...: error' line on stderr matching REGEX, no PETSc traceback, no crash.
#   expect_fail.sh CODE REGEX -- command args...
set -u
want=$1 regex=$2
shift 3
err=$("$@" 2>&1 >/dev/null)
code=$?
fail() { echo "FAIL: $*"; echo "command: $*"; echo "--- stderr:"; echo "$err"; exit 1; }
[ "$code" -eq "$want" ] || fail "exit code $code, want $want"
n=$(printf '%s\n' "$err" | grep -c "^ackd[a-z_ ]*: error" || true)
[ "$n" -eq 1 ] || fail "$n error lines, want exactly 1"
printf '%s\n' "$err" | grep -q "PETSC ERROR" && fail "a PETSc traceback leaked"
printf '%s\n' "$err" | grep -Eq -e "$regex" || fail "stderr does not match /$regex/"
echo "ok: exit $code: $(printf '%s\n' "$err" | grep '^ackd' | head -1)"
