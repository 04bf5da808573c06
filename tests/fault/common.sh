# What the fault scripts share; each sources it: source "$(dirname "$0")/common.sh"
# These scripts signal mpirun, which must give the ranks Open MPI's default grace to checkpoint
# (the suite sets OMPI_MCA_odls_base_sigkill_timeout=0 for launches whose ranks exit by themselves).
unset OMPI_MCA_odls_base_sigkill_timeout

fail() { echo "FAIL: $*" >&2; exit 1; }

# fresh DIR: an empty directory
fresh() { rm -rf "$1" && mkdir -p "$1" || fail "cannot create $1"; }

# ended PID SECONDS WHAT: waits up to SECONDS for PID (a child of this shell) to end and sets rc to
# its exit code. One still running is killed and the test fails: a hang must fail, not stall CI.
ended() {
  local pid=$1 seconds=$2 what=$3
  for _ in $(seq $((seconds * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    fail "$what: still running $seconds s after the signal"
  fi
  wait "$pid"
  rc=$?
}
