#!/usr/bin/env bash
# Checkpoints end to end: keep-K, resume on other rank counts, a damaged
# latest file, a kill in the middle of a write, a model of another shape,
# h5py/h5dump access, and a stop requested by SIGUSR1 through mpirun.
#   checkpoint.sh MPIEXEC TEST_CHECKPOINT PYTHON H5DUMP WORKDIR
set -u
# This script signals mpirun, which must give the ranks Open MPI's default grace to checkpoint
# (the suite sets OMPI_MCA_odls_base_sigkill_timeout=0 for launches whose ranks exit by themselves).
unset OMPI_MCA_odls_base_sigkill_timeout
mpiexec=$1 prog=$2 python=$3 h5dump=$4 work=$5
dir=$work/ckpts
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; ls -la "$dir" 2>/dev/null; exit 1; }
run() { "$mpiexec" --oversubscribe -n "$1" "$prog" "${@:2}" -ckpt_dir "$dir"; }

for step in 10 20 30 40 50; do run 2 write $step -ckpt_keep 3 || fail "write step $step"; done
[ "$(ls "$dir")" = "$(printf 'ckpt_000000000030.h5\nckpt_000000000040.h5\nckpt_000000000050.h5')" ] || fail "keep 3"
for np in 1 2 4; do run $np read 50 || fail "resume on $np ranks"; done

"$python" - "$dir/ckpt_000000000050.h5" <<'PY' || fail "h5py"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["ackd_format"] == "checkpoint" and f.attrs["architecture"] == "tiny-test-net"
w = f["model/conv1/weight"][...]
assert np.allclose(w, np.sin(0.1 * np.arange(27) + 50).astype(np.float32)), w
rv = f["model/layer1.0.bn/running_var"][...]
assert np.allclose(rv, np.sin(0.1 * np.arange(76, 79) + 50).astype(np.float32)), rv
assert f["optim/adam_m"].shape == (1000,) and f["state"].attrs["step"] == 50
assert "-ckpt_dir" in f.attrs["options"]
PY
"$h5dump" -H "$dir/ckpt_000000000050.h5" | grep -q "DATASET \"running_var\"" || fail "h5dump"

# A damaged latest checkpoint is skipped, with a warning, for the previous one.
truncate -s 4000 "$dir/ckpt_000000000050.h5"
out=$(run 2 read 40 2>&1) || fail "read after truncation: $out"
grep -q "warning: skipping checkpoint '.*ckpt_000000000050.h5': it does not open" <<<"$out" || fail "no warning: $out"

# Killed in the middle of writing step 60: the .part stays, nothing else is touched.
run 2 write 60 -ckpt_debug_kill_after 3 >/dev/null 2>&1 && fail "the injected kill did not happen"
[ -e "$dir/ckpt_000000000060.h5.part" ] || fail "no partial file after the kill"
[ ! -e "$dir/ckpt_000000000060.h5" ] || fail "a killed write produced a final file"
run 2 read 40 >/dev/null 2>&1 || fail "resume after the kill"
run 2 write 70 || fail "write after the kill"
[ ! -e "$dir/ckpt_000000000060.h5.part" ] || fail "the stale .part was not cleaned up"
run 4 read 70 || fail "resume at 70"

out=$(run 2 mismatch 2>&1) || fail "mismatch: $out"

# SIGUSR1 to mpirun reaches the ranks: they stop at the same step, checkpoint, exit 75.
dir=$work/signal_ckpts
"$mpiexec" --oversubscribe -n 2 "$prog" signal -ckpt_dir "$dir" > "$work/signal.log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "ready for a signal" "$work/signal.log" 2>/dev/null && break; sleep 0.1; done
grep -q "ready for a signal" "$work/signal.log" || fail "the signal run was not ready after 60 s: $(cat "$work/signal.log")"
kill -USR1 $pid
wait $pid
code=$?
[ $code -eq 75 ] || fail "exit code $code after SIGUSR1, expected 75: $(cat "$work/signal.log")"
step=$(sed -n 's/^stopped at step \([0-9]*\)$/\1/p' "$work/signal.log" | sort -u)
[ "$(wc -w <<<"$step")" -eq 1 ] || fail "ranks stopped at different steps: $step"
run 1 read "$step" || fail "resume from the signal checkpoint at step $step"
echo "ok: keep-K, resume at 1/2/4 ranks, damaged latest skipped, kill mid-write survived, mismatch named, SIGUSR1 -> step $step, exit 75"
