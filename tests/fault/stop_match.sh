#!/usr/bin/env bash
# `ackd match` honours the stop contract and resumes: SIGUSR1 to mpirun during the Sinkhorn solve
# (dense, by class blocks, and truncated) ends it at the next convergence check with exit 75, no match file
# or .part, and the solver's state (eps stage and potentials) in OUTPUT.state; the same command
# resumes from it and writes the match file an uninterrupted run writes (the same top-k teachers,
# weights to 1e-6: both runs stop at a column error below 1e-10), and removes the state. A state
# of another problem (other options), a corrupt one and one with a NaN potential are not used:
# the solve starts again with a warning. With -match_save_every the state is also saved along the
# way, and a run killed outright (kill -9) resumes from the last save.
#   stop_match.sh ACKD OUT MPIRUN...
set -u
ackd=$1 out=$2
shift 2
mpirun=("$@")
source "$(dirname "$0")/common.sh"
fresh "$out"
# 4 classes of random features; each solve is a fraction of a second of work. A run that must be
# signalled or killed mid-solve waits at every convergence check (-match_ot_debug_check_delay,
# the answer unchanged): it lasts seconds on any machine, without spending them on the CPU.
# eps 0.05 of the largest cost: tens of iterations per solve, not thousands. Each iteration is a
# collective, which on cores shared with the suite's other lane waits for the scheduler: at eps
# 0.01 (3,300 and 23,000 iterations) this test took 25 s alone and up to 60 s in the suite.
solve=(-match_ot_eps 0.05 -match_ot_tol 1e-10 -match_ot_max_it 100000)
/usr/bin/python3 - "$out" <<'PY' || fail "features"
import sys, h5py, numpy as np
rng = np.random.default_rng(1)
for name, n in (("dense", 600), ("blocks", 1200)):
    with h5py.File(f"{sys.argv[1]}/{name}.h5", "w") as f:
        for side in ("student", "teacher"):
            f[f"{side}/features"] = rng.standard_normal((n, 32)).astype(np.float32)
            f[f"{side}/labels"] = (np.arange(n) % 4).astype(np.int32)
PY
same_plan() { # same_plan A B: the same top-k teachers, weights within 1e-6
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
same = np.array_equal(a["match/teacher_index"][()], b["match/teacher_index"][()])
diff = float(np.abs(a["match/weight"][()] - b["match/weight"][()]).max())
print(f"same teachers: {same}, largest weight difference {diff:.2e}")
sys.exit(0 if same and diff <= 1e-6 else 1)
PY
}
for kind in dense blocks truncated; do
  # Signalled runs: about 3.5 s of waits (dense ~12 checks, blocks ~24, truncated ~16); the
  # saving runs go to the end, held above 0.7 s by their waits alone: two or more saves every 0.3 s.
  blocks=false delay=(-match_ot_debug_check_delay 0.3) save_delay=(-match_ot_debug_check_delay 0.08)
  input=$kind extra=()
  [ $kind = blocks ] && blocks=true delay=(-match_ot_debug_check_delay 0.15) \
    save_delay=(-match_ot_debug_check_delay 0.04)
  # the truncated solve (Sinkhorn on a sparse part of C, certified by dense passes) on the dense problem
  [ $kind = truncated ] && input=dense extra=(-match_ot_truncate 16) delay=(-match_ot_debug_check_delay 0.22) \
    save_delay=(-match_ot_debug_check_delay 0.06)
  match=(match -match_input "$out/$input.h5" "${solve[@]}" -match_class_blocks $blocks "${extra[@]}")
  timeout 120 "${mpirun[@]}" 2 "$ackd" "${match[@]}" -match_output "$out/ref_$kind.h5" -quiet || fail "$kind: reference"
  m=$out/m_$kind.h5
  "${mpirun[@]}" 2 "$ackd" "${match[@]}" "${delay[@]}" -match_output "$m" >"$out/$kind.log" 2>&1 &
  pid=$!
  # The signal goes once every rank hears it (match says so), and a little into the solve.
  for _ in $(seq 600); do grep -q "match: solving" "$out/$kind.log" && break; sleep 0.1; done
  grep -q "match: solving" "$out/$kind.log" || fail "$kind: the solve did not begin within 60 s"
  sleep 0.5
  kill -0 $pid 2>/dev/null || fail "$kind: match ended before the signal: $(cat "$out/$kind.log")"
  kill -USR1 $pid
  start=$SECONDS
  ended $pid 30 "$kind: match"
  [ "$rc" -eq 75 ] || fail "$kind: exit $rc, expected 75: $(tail -n 5 "$out/$kind.log")"
  [ ! -e "$m" ] && [ ! -e "$m.part" ] && [ ! -e "$m.state.part" ] || fail "$kind: left $(ls "$out")"
  [ -e "$m.state" ] || fail "$kind: no state saved: $(tail -n 3 "$out/$kind.log")"
  echo "ok: $kind: USR1 stopped match in $((SECONDS - start)) s, exit 75, its state in $(basename "$m").state"
  cp "$m.state" "$out/$kind.state.copy" # for the unusable states below
  timeout 120 "${mpirun[@]}" 2 "$ackd" "${match[@]}" -match_output "$m" >"$out/$kind.resumed.log" 2>&1 ||
    fail "$kind: the resumed run failed: $(tail -n 3 "$out/$kind.resumed.log")"
  grep -q "match: resuming from '$m.state'" "$out/$kind.resumed.log" ||
    fail "$kind: did not resume: $(head -n 3 "$out/$kind.resumed.log")"
  [ ! -e "$m.state" ] || fail "$kind: the state was left after the finished solve"
  same_plan "$m" "$out/ref_$kind.h5" || fail "$kind: the resumed plan differs from the uninterrupted one"
  echo "ok: $kind: the same command resumed ($(grep -o "resuming from .*" "$out/$kind.resumed.log" | cut -d: -f2-))" \
    "and wrote the uninterrupted run's plan"
  # Periodic saves (-match_save_every): the solve pauses, saves and goes on to the same plan.
  p=$out/saving_$kind.h5
  timeout 120 "${mpirun[@]}" 2 "$ackd" "${match[@]}" "${save_delay[@]}" -match_output "$p" -match_save_every 0.3 \
    >"$out/saving_$kind.log" 2>&1 ||
    fail "$kind: the saving run failed: $(tail -n 3 "$out/saving_$kind.log")"
  saves=$(grep -c "match: saved the solver's state in '$p.state'" "$out/saving_$kind.log")
  [ "$saves" -ge 1 ] || fail "$kind: no periodic save in a solve of several seconds: $(head -n 5 "$out/saving_$kind.log")"
  [ ! -e "$p.state" ] || fail "$kind: the state was left after the finished solve"
  same_plan "$p" "$out/ref_$kind.h5" || fail "$kind: saving along the way changed the plan"
  echo "ok: $kind: $saves periodic saves of the state every 0.3 s of solving, and the uninterrupted plan"
done

# Killed outright (kill -9 of mpirun and its ranks: no handler runs) after a periodic save: the
# same command resumes from the saved state and writes the uninterrupted plan.
m=$out/killed.h5
dense=(match -match_input "$out/dense.h5" -match_output "$m" "${solve[@]}" -match_class_blocks false)
"${mpirun[@]}" 2 "$ackd" "${dense[@]}" -match_ot_debug_check_delay 0.3 -match_save_every 0.3 \
  >"$out/killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "match: saved the solver's state" "$out/killed.log" && break; sleep 0.1; done
grep -q "match: saved the solver's state" "$out/killed.log" || fail "killed: no periodic save within 60 s"
kill -0 $pid 2>/dev/null || fail "killed: match ended before the kill: $(tail -n 3 "$out/killed.log")"
kill -9 $(pgrep -P $pid) $pid
wait $pid 2>/dev/null
[ -e "$m.state" ] && [ ! -e "$m" ] && [ ! -e "$m.part" ] || fail "killed: left $(ls "$out" | grep killed)"
timeout 120 "${mpirun[@]}" 2 "$ackd" "${dense[@]}" >"$out/killed.resumed.log" 2>&1 ||
  fail "killed: the rerun failed: $(tail -n 3 "$out/killed.resumed.log")"
grep -q "match: resuming from '$m.state'" "$out/killed.resumed.log" ||
  fail "killed: did not resume: $(head -n 3 "$out/killed.resumed.log")"
same_plan "$m" "$out/ref_dense.h5" || fail "killed: the resumed plan differs from the uninterrupted one"
echo "ok: kill -9 after a periodic save: the same command resumed from it and wrote the uninterrupted plan"

# a state of another problem: stopped at eps 0.1, then run at eps 0.05
m=$out/other.h5
"${mpirun[@]}" 2 "$ackd" match -match_input "$out/dense.h5" -match_output "$m" -match_ot_eps 0.1 \
  -match_ot_tol 1e-13 -match_ot_max_it 100000 -match_class_blocks false -match_ot_debug_check_delay 0.3 \
  >"$out/other.log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "match: solving" "$out/other.log" && break; sleep 0.1; done
kill -0 $pid 2>/dev/null || fail "other: match ended before the signal: $(cat "$out/other.log")"
kill -USR1 $pid
ended $pid 30 "other: match"
[ "$rc" -eq 75 ] && [ -e "$m.state" ] || fail "other: exit $rc, state $(ls "$out" | grep other)"
timeout 120 "${mpirun[@]}" 2 "$ackd" match -match_input "$out/dense.h5" -match_output "$m" "${solve[@]}" \
  -match_class_blocks false >"$out/other.resumed.log" 2>&1 ||
  fail "other: the run failed: $(tail -n 3 "$out/other.resumed.log")"
grep -q "warning: match: not resuming from '$m.state': it is of another problem" "$out/other.resumed.log" ||
  fail "other: no warning: $(head -n 3 "$out/other.resumed.log")"
same_plan "$m" "$out/ref_dense.h5" || fail "other: the plan differs from the uninterrupted one"
echo "ok: a state of another problem (eps 0.1) was not used: warned, solved afresh, the uninterrupted plan"

# A state that cannot be used is a cache lost, not an error: garbage bytes, and a state of this
# problem with a NaN potential, are each warned about and the solve starts again.
/usr/bin/python3 - "$out/dense.state.copy" "$out/nan.h5.state" <<'PY' || fail "a NaN state"
import shutil, sys, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    f["f"][3] = float("nan")
PY
head -c 4096 /dev/urandom >"$out/garbage.h5.state"
for bad in garbage:"it is not an HDF5 file (corrupt or truncated)" nan:"potential f\[3\] is not a number"; do
  name=${bad%%:*} why=${bad#*:}
  m=$out/$name.h5
  timeout 120 "${mpirun[@]}" 2 "$ackd" match -match_input "$out/dense.h5" -match_output "$m" "${solve[@]}" \
    -match_class_blocks false >"$out/$name.log" 2>&1 ||
    fail "$name state: the run failed: $(tail -n 3 "$out/$name.log")"
  grep -q "warning: match: not resuming from '$m.state': $why; the solve starts again" "$out/$name.log" ||
    fail "$name state: no warning: $(head -n 3 "$out/$name.log")"
  [ ! -e "$m.state" ] || fail "$name state: left after the finished solve"
  same_plan "$m" "$out/ref_dense.h5" || fail "$name state: the plan differs from the uninterrupted one"
  echo "ok: a $name state was not used: warned, solved afresh, the uninterrupted plan"
done
