#!/usr/bin/env bash
# The stop chain of the job templates (jobs/lib/ackd-job.sh's ackd_run) with a real `ackd train`
# under mpirun. A scheduler stops a job in one of two ways, and both must end in exit 75 with a
# checkpoint that the next run resumes from:
#   group   TERM to every process of the job at once (Slurm's time limit, scancel, preemption;
#           PBS's qdel): mpirun itself is hit and exits 1, the ranks checkpoint and exit 75, and
#           rank 0's stop record (ACKD_STOP_RECORD) turns the job's code into 75;
#   shell   TERM or USR1 to the job shell alone (sbatch --signal=B:..., scancel --batch).
#   stop_chain.sh REPO ACKD OUT MPIRUN...
set -u
repo=$1 ackd=$2 out=$3
shift 3
mpirun=("$@")
source "$(dirname "$0")/common.sh"
fresh "$out"
"${mpirun[@]}" 2 "$ackd" synth -synth_output "$out/data.h5" -synth_ms_count 800 -synth_rgb_count 16 -synth_size 16 \
  -synth_classes 4 -synth_seed 3 -quiet || fail "synth"

# One job: the template's ackd_run in its own process group, as a batch step is. The stop comes
# after the first checkpoint (step 2); every step waits 50 ms (-train_debug_step_delay), so the 50
# steps of 2 epochs last 2.5 s on any machine, and a fast one does not finish first.
job() { # job NAME: starts it; sets pid (the job shell, leader of its group)
  local name=$1
  setsid bash -c 'source "$1/jobs/lib/ackd-job.sh"; shift; dir=$1; shift
                  ackd_run "$@" >"$dir.log" 2>&1; echo $? >"$dir.rc"' _ "$repo" "$out/$name" \
    "${mpirun[@]}" 2 "$ackd" train -train_data "$out/data.h5" -teacher_arch smallcnn -teacher_width 0.5 \
    -train_epochs 2 -train_debug_step_delay 0.05 -train_ckpt_every_steps 2 -train_batch 32 -train_dir "$out/$name" \
    -train_seed 1 &
  pid=$!
}
# A stop is asked for once the run has its first checkpoint on disk. compgen: the glob alone, where
# ls would also stat each name and fail on a checkpoint pruned in between (one every 2 steps here).
wait_for_checkpoint() {
  local dir=$1
  for _ in $(seq 600); do
    compgen -G "$dir/checkpoints/ckpt_*.h5" >/dev/null && return 0
    sleep 0.1
  done
  fail "no checkpoint in $dir after 60 s: $(cat "$dir.log")"
}
finish() { # finish NAME EXPECTED: waits (bounded) and checks the job's code
  local name=$1 expected=$2
  for _ in $(seq 900); do [ -s "$out/$name.rc" ] && break; sleep 0.1; done
  [ -s "$out/$name.rc" ] || fail "$name: the job did not end within 90 s of the stop"
  local rc
  rc=$(cat "$out/$name.rc")
  [ "$rc" = "$expected" ] || fail "$name: exit $rc, expected $expected: $(tail -n 5 "$out/$name.log")"
}

# A short grace: the test is of the mechanism; the default (10 s) is what jobs get.
export ACKD_STOP_GRACE=3
for how in group shell; do
  job "$how"
  wait_for_checkpoint "$out/$how"
  # Open MPI puts each rank in its own process group, so "every process of the job" is the
  # session, as Slurm's cgroup or PBS's session kill sees it.
  if [ "$how" = group ]; then pkill -TERM -s "$pid"; else kill -TERM "$pid"; fi
  finish "$how" 75
  ls "$out/$how"/*.part "$out/$how"/checkpoints/*.part >/dev/null 2>&1 && fail "$how: a .part file was left"
  step=$(sed -n 's/.*stopped by a signal at step \([0-9]*\).*/\1/p' "$out/$how.log" | head -n 1)
  [ -n "$step" ] || fail "$how: no 'stopped by a signal' line: $(tail -n 5 "$out/$how.log")"
  # mpirun hit by TERM exits 1 whatever its ranks did: the stop record must have turned it into 75.
  [ "$how" != group ] || grep -q "the launcher exited 1, but the stage had checkpointed" "$out/$how.log" ||
    fail "group: mpirun's own exit code was not the one corrected: $(tail -n 3 "$out/$how.log")"
  mv "$out/$how.log" "$out/$how.first.log"
  rm -f "$out/$how.rc"
  # The requeued job: the same command resumes where the stop left it and finishes.
  job "$how"
  finish "$how" 0
  grep -q "resuming from .*, step $step" "$out/$how.log" ||
    fail "$how: the second run did not resume at step $step: $(grep -m1 resuming "$out/$how.log")"
  echo "ok: $how: TERM -> checkpoint at step $step, exit 75, resumed at step $step, exit 0"
done
