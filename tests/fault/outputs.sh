#!/usr/bin/env bash
# Output directories under the faults of a shared cluster:
#   read-only    an existing output directory on a read-only mount (train, eval): refused
#                before any work, with one line naming the directory and the option;
#   concurrent   a second run on the directory of a running one: refused at once, naming the
#                holder (host, pid); the first run finishes unharmed; a stale lock (its process
#                gone) is taken over with a warning;
#   orphans      kill -9 of mpirun mid-run: the ranks stop within a few seconds; at most the
#                checkpoint in flight is completed, no further one is begun.
#   outputs.sh ACKD OUT MPIRUN...
set -u
ackd=$1 out=$2
shift 2
mpirun=("$@")
source "$(dirname "$0")/common.sh" # its fail exits, and the EXIT trap below cleans up
# No run here is signalled for a checkpoint (the orphans' mpirun is killed outright): the refusals
# need no grace to sleep through.
export OMPI_MCA_odls_base_sigkill_timeout=0
ro=$out/readonly
cleanup() { mountpoint -q "$ro" 2>/dev/null && umount "$ro"; pkill -9 -f "$out/" 2>/dev/null; return 0; }
trap cleanup EXIT
rm -rf "$out" && mkdir -p "$ro" || fail "cannot create $out"
run() { timeout 120 "${mpirun[@]}" 2 "$ackd" "$@"; }
run synth -synth_output "$out/data.h5" -synth_ms_count 1200 -synth_rgb_count 64 -synth_size 16 -synth_classes 4 \
  -synth_seed 5 -quiet || fail "synth"
train=(train -train_data "$out/data.h5" -teacher_arch smallcnn -teacher_width 0.5 -train_batch 32 -train_seed 1 -quiet)
run "${train[@]}" -train_epochs 1 -train_dir "$out/teacher" || fail "train"

# ---- read-only
if mount -t tmpfs -o ro,size=64k tmpfs "$ro" 2>/dev/null; then
  expect_refusal() { # NAME OPTION CMD...: exit 1 (no work done), one line naming the directory and OPTION
    local name=$1 option=$2
    shift 2
    local start=$SECONDS
    run "$@" >"$out/$name.log" 2>&1
    local rc=$?
    grep -q "^ackd [a-z]*: error: cannot create or write in directory '$ro[^']*': Read-only file system; check $option" \
      "$out/$name.log" || fail "$name: no one-line refusal naming $option (exit $rc): $(head -c 400 "$out/$name.log")"
    [ "$rc" -eq 1 ] || fail "$name: exit $rc, expected 1"
    echo "ok: read-only: $name refused in $((SECONDS - start)) s, naming $option"
  }
  expect_refusal train -train_dir "${train[@]}" -train_epochs 50 -train_dir "$ro"
  expect_refusal eval -eval_output eval -eval_checkpoint "$out/teacher/best.h5" -eval_output "$ro/e.h5" -quiet
  umount "$ro"
else
  echo "skip: read-only cases (cannot mount a tmpfs here)"
fi

# ---- concurrent runs on one directory
d=$out/shared
# The first run waits 20 ms after each of its ~160 steps: still running when the second starts, on any
# machine and under any load of the other tests.
"${mpirun[@]}" 2 "$ackd" "${train[@]}" -train_epochs 6 -train_debug_step_delay 0.02 -train_dir "$d" >"$out/first.log" 2>&1 &
first=$!
for _ in $(seq 300); do [ -s "$d/.ackd.lock" ] && break; sleep 0.1; done
[ -e "$d/.ackd.lock" ] || fail "concurrent: the first run took no lock: $(cat "$out/first.log")"
holder=$(cut -d' ' -f2 "$d/.ackd.lock" 2>/dev/null) # read now: the first run releases it when it ends
run "${train[@]}" -train_epochs 6 -train_dir "$d" >"$out/second.log" 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q "^ackd train: error: '$d' is in use by another run (host [^,]*, pid $holder," "$out/second.log" ||
  fail "concurrent: the second run was not refused naming the holder (exit $rc): $(head -c 400 "$out/second.log")"
wait $first || fail "concurrent: the first run failed: $(tail -n 3 "$out/first.log")"
[ ! -e "$d/.ackd.lock" ] || fail "concurrent: the first run left its lock"
echo "ok: concurrent: the second run was refused naming pid $holder; the first finished and released the lock"
# a stale lock: a process that is gone, on this host
sleep 30 & gone=$!
kill -9 $gone; wait $gone 2>/dev/null
echo "$(hostname) $gone - $(date +%s)" >"$d/.ackd.lock"
run "${train[@]}" -train_epochs 7 -train_dir "$d" >"$out/stale.log" 2>&1 || fail "stale lock: the run failed: $(head -c 400 "$out/stale.log")"
grep -q "warning: taking over the lock '$d/.ackd.lock': its process $gone on .* is no longer running" "$out/stale.log" ||
  fail "stale lock: no warning: $(head -c 400 "$out/stale.log")"
echo "ok: concurrent: a stale lock (pid $gone gone) was taken over with a warning"
# a stale lock held by a zombie: a process that has exited but was not reaped, as the ranks of a
# kill -9'd mpirun stay in a container whose first process does not reap orphans
bash -c 'sleep 0.1 & echo $! >"$1"; exec sleep 30' _ "$out/zombie.pid" &
parent=$!
for _ in $(seq 50); do zombie=$(cat "$out/zombie.pid" 2>/dev/null); [ -n "$zombie" ] && grep -q '^State:.Z' "/proc/$zombie/status" 2>/dev/null && break; sleep 0.1; done
grep -q '^State:.Z' "/proc/$zombie/status" || fail "zombie lock: no zombie to hold the lock"
echo "$(hostname) $zombie - $(date +%s)" >"$d/.ackd.lock"
run "${train[@]}" -train_epochs 8 -train_dir "$d" >"$out/zombie.log" 2>&1 || fail "zombie lock: the run failed: $(head -c 400 "$out/zombie.log")"
grep -q "warning: taking over the lock '$d/.ackd.lock': its process $zombie on .* is no longer running" "$out/zombie.log" ||
  fail "zombie lock: no warning: $(head -c 400 "$out/zombie.log")"
kill $parent; wait $parent 2>/dev/null
echo "ok: concurrent: a lock held by a zombie (pid $zombie, exited, unreaped) was taken over with a warning"

# ---- orphans: kill -9 of mpirun
d=$out/orphans
"${mpirun[@]}" 2 "$ackd" "${train[@]}" -train_epochs 200 -train_dir "$d" -train_ckpt_every_steps 2 >"$out/orphans.log" 2>&1 &
launcher=$!
for _ in $(seq 300); do compgen -G "$d/checkpoints/ckpt_*.h5" >/dev/null && break; sleep 0.1; done
ranks=$(pgrep -P $launcher -d ' ')
[ -n "$ranks" ] || fail "orphans: no ranks under mpirun $launcher"
kill -9 $launcher
killed=$(date +%s.%N)
for _ in $(seq 100); do alive=0; for r in $ranks; do kill -0 "$r" 2>/dev/null && alive=1; done; [ $alive -eq 0 ] && break; sleep 0.1; done
[ $alive -eq 0 ] || fail "orphans: ranks $ranks still running 10 s after mpirun was killed"
# The checkpoint being written when mpirun died may still be completed (and renamed); no other.
after=0
for f in "$d"/checkpoints/ckpt_*.h5; do [ "$(echo "$(stat -c %.9Y "$f") > $killed" | bc)" -eq 0 ] || after=$((after + 1)); done
[ "$after" -le 1 ] || fail "orphans: $after checkpoints were written after mpirun died"
echo "ok: orphans: the ranks of a killed mpirun stopped within $(echo "$(date +%s.%N) - $killed" | bc | cut -c1-4) s, completing at most the checkpoint in flight ($after)"
