#!/usr/bin/env bash
# ssm and distill honour the stop contract with real signals, the way train does in stop_chain.sh:
#   ssm      SIGUSR1 to mpirun once a checkpoint is on disk;
#   distill  SIGTERM to one rank only (a node's share of a preempted job): any rank's request
#            stops every rank at the same step.
# Each must end with exit 75 and a checkpoint, leave no .part, and the same command must resume at
# the stopped step and finish with exit 0. eval, which keeps no state, stops without writing (last).
#   stop_stages.sh REPO ACKD OUT MPIRUN...
set -u
repo=$1 ackd=$2 out=$3
shift 3
mpirun=("$@")
source "$(dirname "$0")/common.sh"
fresh "$out"
run() { timeout 180 "${mpirun[@]}" 2 "$ackd" "$@"; }
run synth -synth_output "$out/data.h5" -synth_ms_count 240 -synth_rgb_count 240 -synth_size 16 -synth_classes 4 \
  -synth_seed 3 -quiet || fail "synth"
run train -train_data "$out/data.h5" -train_dir "$out/teacher" -teacher_arch smallcnn -teacher_width 0.5 \
  -train_epochs 1 -train_batch 32 -quiet || fail "teacher"

# stop NAME HOW DIR COMMAND...: starts the stage, signals it once its first checkpoint is on disk,
# checks exit 75 and the stop line, then runs the same command again and checks the resume.
stop() {
  local name=$1 how=$2 dir=$3
  shift 3
  "${mpirun[@]}" 2 "$ackd" "$@" >"$out/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do compgen -G "$dir/checkpoints/ckpt_*.h5" >/dev/null && break; sleep 0.1; done
  compgen -G "$dir/checkpoints/ckpt_*.h5" >/dev/null || fail "$name: no checkpoint after 60 s: $(tail -n 3 "$out/$name.log")"
  if [ "$how" = USR1-mpirun ]; then
    kill -USR1 $pid
  else
    local ranks
    ranks=($(pgrep -P $pid))
    [ "${#ranks[@]}" -eq 2 ] || fail "$name: expected 2 ranks under mpirun $pid, found ${ranks[*]}"
    kill -TERM "${ranks[1]}"
  fi
  ended $pid 60 "$name"
  [ $rc -eq 75 ] || fail "$name: $how gave exit $rc, expected 75: $(tail -n 5 "$out/$name.log")"
  local step
  step=$(sed -n 's/.*stopped by a signal at step \([0-9]*\).*/\1/p' "$out/$name.log" | sort -u)
  [ "$(wc -w <<<"$step")" -eq 1 ] || fail "$name: expected one 'stopped by a signal at step' line, got '$step'"
  ls "$dir"/*.part "$dir"/checkpoints/*.part >/dev/null 2>&1 && fail "$name: a .part file was left"
  timeout 180 "${mpirun[@]}" 2 "$ackd" "$@" >"$out/$name.resumed.log" 2>&1 ||
    fail "$name: the same command did not finish: $(tail -n 3 "$out/$name.resumed.log")"
  grep -q "resuming from .*, step $step\$" "$out/$name.resumed.log" ||
    fail "$name: not resumed at step $step: $(grep -m1 resuming "$out/$name.resumed.log")"
  echo "ok: $name: $how -> checkpoint at step $step, exit 75; the same command resumed at step $step, exit 0"
}

stop ssm USR1-mpirun "$out/ssm" ssm -ssm_data "$out/data.h5" -ssm_dir "$out/ssm" -ssm_arch smallcnn -ssm_width 0.5 \
  -ssm_epochs 4 -ssm_batch 32 -ssm_ckpt_every_steps 1
[ -e "$out/ssm/embeddings.h5" ] || fail "ssm: no embeddings after the resumed run"
run match -match_input "$out/ssm/embeddings.h5" -match_output "$out/match.h5" -match_solver sinkhorn \
  -match_ot_topk 3 -quiet || fail "match"
stop distill TERM-one-rank "$out/student" distill -distill_data "$out/data.h5" \
  -distill_gallery "$out/teacher/gallery.h5" -distill_match "$out/match.h5" -distill_dir "$out/student" \
  -student_arch smallcnn -student_width 0.5 -distill_batch 32 -distill_epochs 4 -distill_ckpt_every_steps 1 \
  -kd_method kd -sembridge
[ -e "$out/student/best.h5" ] || fail "distill: no best.h5 after the resumed run"

# eval: rank 0 gets SIGTERM before its third batch (-eval_debug_signal_after, a real signal through
# the real handler); every rank leaves the pass, nothing is written, exit 75; the same command
# without the signal then writes the file.
ev=(eval -eval_checkpoint "$out/teacher/best.h5" -eval_split train -eval_batch 16 -eval_output "$out/eval.h5")
timeout 120 "${mpirun[@]}" 2 "$ackd" "${ev[@]}" -eval_debug_signal_after 3 >"$out/eval.log" 2>&1
rc=$?
[ $rc -eq 75 ] || fail "eval: SIGTERM on rank 0 gave exit $rc, expected 75: $(tail -n 5 "$out/eval.log")"
grep -q "eval: stopped by a signal; '$out/eval.h5' not written, run the same command again" "$out/eval.log" ||
  fail "eval: no stop line: $(tail -n 3 "$out/eval.log")"
[ ! -e "$out/eval.h5" ] && [ ! -e "$out/eval.h5.part" ] || fail "eval: wrote $(ls "$out" | grep eval)"
run "${ev[@]}" >"$out/eval.resumed.log" 2>&1 || fail "eval: the same command failed: $(tail -n 3 "$out/eval.resumed.log")"
[ -e "$out/eval.h5" ] || fail "eval: no eval file after the second run"
echo "ok: eval: SIGTERM to rank 0 -> every rank stopped, nothing written, exit 75; the same command then wrote it"

# A signal during the set-up (a large collection takes seconds to minutes to read, here a delay of
# 4 s stands in for it): the stop handlers are in place from the stage's start, so USR1 to mpirun
# does not kill the ranks by its default action; distill, resuming, stops before its first step
# with nothing to save, exit 75 and the stop record, and the same command then goes on.
dist=(distill -distill_data "$out/data.h5" -distill_gallery "$out/teacher/gallery.h5" -distill_match "$out/match.h5"
  -distill_dir "$out/student" -student_arch smallcnn -student_width 0.5 -distill_batch 32 -distill_epochs 5
  -distill_ckpt_every_steps 1 -kd_method kd -sembridge)
before=$(ls "$out/student/checkpoints")
ACKD_STOP_RECORD=$out/stop.record "${mpirun[@]}" 2 "$ackd" "${dist[@]}" -debug_setup_delay 4 \
  >"$out/setup.log" 2>&1 &
pid=$!
sleep 1
kill -USR1 $pid
ended $pid 60 "distill signalled during its set-up"
[ $rc -eq 75 ] || fail "distill: USR1 during the set-up gave exit $rc, expected 75: $(tail -n 5 "$out/setup.log")"
grep -q "stopped by a signal before step [0-9]*; nothing new to save" "$out/setup.log" ||
  fail "distill: no stop line for a stop during the set-up: $(tail -n 3 "$out/setup.log")"
[ "$(ls "$out/student/checkpoints")" = "$before" ] || fail "distill: a stop during the set-up wrote a checkpoint"
grep -q "^ackd distill stopped on request; exit 75" "$out/stop.record" || fail "distill: no stop record"
run "${dist[@]}" -quiet || fail "distill: the same command after a stop during the set-up"
echo "ok: distill: USR1 during the set-up -> stopped before its first step, nothing written, exit 75; the same command then finished"
