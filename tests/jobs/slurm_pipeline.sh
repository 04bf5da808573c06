#!/usr/bin/env bash
# The Slurm pipeline template on a real (local, single-node) Slurm cluster:
#  1. jobs/slurm/submit-pipeline submits the stages below as jobs chained with afterok;
#  2. one stage (`stop`) is signalled USR1 while it runs (scancel --signal=USR1 --batch, what
#     --signal=B:USR1@T does at T seconds before the time limit): the template's trap must
#     pass it to mpirun, the ranks checkpoint and exit 75, the template requeues the job, the
#     job runs again, finds the checkpoint and finishes, and the later stages still run;
#  3. the outputs are checked with h5py, and every job ended COMPLETED with exit 0.
# Exit 77 (CTest skip) only when this machine cannot start Slurm.
#   slurm_pipeline.sh REPO ACKD TEST_CHECKPOINT WORKDIR
set -uo pipefail
# The job scripts signal mpirun, which must give the ranks their grace to checkpoint (ACKD_STOP_GRACE
# below); the suite's OMPI_MCA_odls_base_sigkill_timeout=0 would override it.
unset OMPI_MCA_odls_base_sigkill_timeout
repo=$1 ackd=$2 test_checkpoint=$3 work=$4
tests=$repo/tests/jobs
python=/usr/bin/python3
deadline=$((SECONDS + ${ACKD_SLURM_TEST_TIMEOUT:-250}))
fail() { echo "FAIL: $*"; for s in ${STAGES:-}; do echo "  $s: job ${job[$s]:-} $(state "${job[$s]:-0}")"; done; for f in "$work"/logs/*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done; cancel_all; exit 1; }
ids=()
declare -A job
cancel_all() { [ ${#ids[@]} -eq 0 ] || scancel "${ids[@]}" 2>/dev/null; }

# ---- a cluster ---------------------------------------------------------------------------------
# The test stops what it starts (munged, slurmctld, slurmd), but not a cluster that was up before.
was_up=0
"$repo/scripts/slurm-local" status && was_up=1
[ "$was_up" -eq 1 ] || trap '"$repo/scripts/slurm-local" stop >/dev/null 2>&1' EXIT
out=$("$repo/scripts/slurm-local" start)
case $? in
  0) eval "$out" ;;
  3) echo "SKIP: this machine cannot start a local Slurm cluster (see the line above)"; exit 77 ;;
  *) fail "scripts/slurm-local start failed" ;;
esac
source "$repo/scripts/env.sh" # sbatch exports this environment to the jobs (Open MPI as root)

rm -rf "$work" && mkdir -p "$work/logs" && cd "$work" || exit 1
run=$work/run

# ---- the pipeline: jobs/pipeline.stages itself, every stage real --------------------------------
# The teacher trains long enough to be signalled mid-run: its 8 epochs of 7 steps wait 0.1 s after
# each step (-train_debug_step_delay), at least 5.6 s on any machine without using the CPU for it.
# Everything else is small.
STAGES="synth teacher ssm match distill eval"
SIGNALLED=teacher
cat >"$work/tiny.opts" <<EOF
-synth_output $run/synth.h5
-synth_ms_count 600
-synth_rgb_count 400
-synth_classes 5
-synth_size 16
-train_data $run/synth.h5
-train_dir $run/teacher
-teacher_arch resnet18
-teacher_width 0.25
-train_epochs 8
-train_debug_step_delay 0.1
-train_ckpt_every_steps 4
-ssm_data $run/synth.h5
-ssm_dir $run/ssm
-ssm_arch smallcnn
-ssm_width 0.5
-ssm_epochs 1
-match_input $run/ssm/embeddings.h5
-match_output $run/match.h5
-match_ot_topk 3
-distill_data $run/synth.h5
-distill_gallery $run/teacher/gallery.h5
-distill_match $run/match.h5
-distill_dir $run/student
-student_arch smallcnn
-student_width 0.5
-distill_epochs 2
-kd_method dkd
-eval_checkpoint $run/student/best.h5
EOF

# ---- the templates' directives, as this Slurm reads them (sizes shrunk to this one node) --------
for t in pipeline.sbatch sweep.sbatch; do
  out=$(ACKD_OPTS=$work/tiny.opts sbatch --test-only --nodes=1 --ntasks-per-node=1 --cpus-per-task=1 \
        "$repo/jobs/slurm/$t" x 2>&1) || fail "sbatch --test-only $t: $out"
  grep -q "to start at" <<<"$out" || fail "sbatch --test-only $t: $out"
done

# ---- submit ------------------------------------------------------------------------------------
# ACKD_STOP_GRACE: Open MPI's mpirun, seeing the first rank exit 75, takes down the others with
# a SIGTERM and a SIGKILL, sleeping the grace before each even when they have already ended: the
# template's default of 10 s costs 20 s per stop. This test's checkpoints take milliseconds.
export ACKD=$ackd ACKD_RUN=$run ACKD_STOP_GRACE=2
submitted=$("$repo/jobs/slurm/submit-pipeline" -s "${STAGES// /,}" "$work/tiny.opts" \
  --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=00:10:00 --output="$work/logs/%x-%j.out") ||
  fail "submit-pipeline: $submitted"
echo "$submitted"
while read -r stage id; do job[$stage]=$id; ids+=("$id"); done <<<"$submitted"
[ ${#ids[@]} -eq $(wc -w <<<"$STAGES") ] || fail "expected one job per stage"
# the chain: every job after the first depends on its predecessor with afterok
prev=""
for stage in $STAGES; do
  dep=$(scontrol show job "${job[$stage]}" | grep -o "Dependency=[^ ]*")
  if [ -n "$prev" ]; then
    [[ "$dep" == *"afterok:${job[$prev]}"* ]] || fail "$stage: $dep, expected afterok:${job[$prev]}"
  fi
  prev=$stage
done

state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; }

# ---- the sweep: two arrays (teachers, then the grid's rows with a % throttle) ---------------------
# Stand-in stages record what the template passed them, so the test checks the grid parsing,
# the placeholders, the array sizes and throttle, and the afterok between the arrays.
cat >"$work/sweep.stages" <<EOF
teacher  serial  $tests/record_row.sh {run}/sweep/teacher_{teacher}.txt teacher {run}/none {method} {teacher} {student} {pair} {extra}
distill  serial  $tests/record_row.sh {run}/sweep/{tag}/record.txt distill {run}/sweep/teacher_{teacher}.txt {method} {teacher} {student} {pair} {extra}
eval     serial  $tests/record_row.sh {run}/sweep/{tag}/record.txt eval {run}/sweep/teacher_{teacher}.txt {method} {teacher} {student} {pair} {extra}
eval_train  serial  $tests/record_row.sh {run}/sweep/{tag}/record.txt eval_train {run}/sweep/teacher_{teacher}.txt {method} {teacher} {student} {pair} {extra}
EOF
cat >"$work/sweep.grid" <<EOF
# method  pair  extra
kd            R/M
dkd           S/S   -dkd_beta 8
kd+sembridge  R/S
EOF
swept=$("$repo/jobs/slurm/submit-sweep" -g "$work/sweep.grid" -t "$work/sweep.stages" -p 2 "$work/tiny.opts" \
  --nodes=1 --ntasks-per-node=1 --cpus-per-task=1 --time=00:05:00 --output="$work/logs/%x-%A_%a.out") ||
  fail "submit-sweep: $swept"
echo "$swept"
teachers_id=$(awk '$1 == "teachers" { print $2 }' <<<"$swept")
students_id=$(awk '$1 == "students" { print $2 }' <<<"$swept")
ids+=("$teachers_id" "$students_id")
scontrol show job "$students_id" | grep -q "ArrayTaskThrottle=2" || fail "the students array has no %2 throttle"
scontrol show job "$students_id" | grep -q "Dependency=afterok:${teachers_id}" || fail "students do not depend on teachers"

# ---- USR1 to the running stage ------------------------------------------------------------------
sig_id=${job[$SIGNALLED]}
log() { cat "$work"/logs/ackd-"$SIGNALLED"-"$sig_id".out 2>/dev/null; }
until log | grep -q "^epoch   1/"; do
  [ $SECONDS -lt $deadline ] || fail "stage $SIGNALLED never started (state $(state "$sig_id"))"
  case $(state "$sig_id") in FAILED | CANCELLED | TIMEOUT) fail "stage $SIGNALLED: $(state "$sig_id")" ;; esac
  sleep 1
done

scancel --signal=USR1 --batch "$sig_id" || fail "scancel --signal=USR1 --batch $sig_id"
echo "sent USR1 to job $sig_id"

# ---- wait for the chain --------------------------------------------------------------------------
last=${job[${STAGES##* }]}
until [ "$(state "$last")" = COMPLETED ]; do
  [ $SECONDS -lt $deadline ] || fail "the pipeline did not finish in time: $(for s in $STAGES; do echo -n "$s=$(state "${job[$s]}") "; done)"
  for s in $STAGES; do
    case $(state "${job[$s]}") in FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) fail "stage $s: $(state "${job[$s]}")" ;; esac
  done
  sleep 1
done

# ---- check -----------------------------------------------------------------------------------
for s in $STAGES; do
  [ "$(state "${job[$s]}")" = COMPLETED ] && [ "$(field "${job[$s]}" ExitCode)" = 0:0 ] ||
    fail "stage $s: $(state "${job[$s]}") exit $(field "${job[$s]}" ExitCode)"
done
[ "$(field "$sig_id" Restarts)" = 1 ] || fail "stage $SIGNALLED restarted $(field "$sig_id" Restarts) times, expected 1"
for s in $STAGES; do
  [ "$s" = "$SIGNALLED" ] || [ "$(field "${job[$s]}" Restarts)" = 0 ] || fail "stage $s was restarted"
done
text=$(log)
for expect in "USR1: asking the stage to checkpoint and stop" "exit 75" "checkpointed (USR1); requeueing job $sig_id" \
  "restart 1" "stopped by a signal at step" "resuming from" "teacher gallery:"; do
  grep -qF "$expect" <<<"$text" || fail "the $SIGNALLED log lacks '$expect'"
done
step=$(sed -n 's/^stopped by a signal at step \([0-9]*\);.*/\1/p' <<<"$text" | sort -u)
[ "$(wc -w <<<"$step")" -eq 1 ] || fail "expected one stop step, got '$step'"
grep -q "resuming from .*ckpt_0*$step.h5: epoch [0-9]*, step $step\$" <<<"$text" ||
  fail "not resumed from the checkpoint of step $step"
grep -q "epoch   8/8" <<<"$text" || fail "the resumed teacher did not reach its last epoch"

# the sweep: both arrays completed; each row saw its own method, architectures and extras
for _ in $(seq 30); do
  [ -z "$(squeue -h -j "$teachers_id,$students_id" 2>/dev/null)" ] && break
  sleep 1
done
[ -z "$(squeue -h -j "$teachers_id,$students_id" 2>/dev/null)" ] || fail "the sweep did not finish"
expect_record() {
  [ "$(cat "$run/sweep/$1" 2>/dev/null)" = "$2" ] || fail "sweep record $1: '$(cat "$run/sweep/$1" 2>/dev/null)', expected '$2'"
}
# a row without +sembridge turns it off after the options file (which may turn it on)
expect_record teacher_resnet34.txt "teacher teacher resnet34 resnet34 R/R -sembridge false"
expect_record teacher_shufflenetv2.txt "teacher teacher shufflenetv2 shufflenetv2 S/S -sembridge false"
expect_record kd_RM/record.txt "$(printf 'distill kd resnet34 mobilenetv2 R/M -sembridge false\neval kd resnet34 mobilenetv2 R/M -sembridge false\neval_train kd resnet34 mobilenetv2 R/M -sembridge false')"
expect_record dkd_SS/record.txt "$(printf 'distill dkd shufflenetv2 shufflenetv2 S/S -sembridge false -dkd_beta 8\neval dkd shufflenetv2 shufflenetv2 S/S -sembridge false -dkd_beta 8\neval_train dkd shufflenetv2 shufflenetv2 S/S -sembridge false -dkd_beta 8')"
expect_record kd+sembridge_RS/record.txt "$(printf 'distill kd resnet34 shufflenetv2 R/S -sembridge\neval kd resnet34 shufflenetv2 R/S -sembridge\neval_train kd resnet34 shufflenetv2 R/S -sembridge')"
[ "$(ls "$run/sweep" | grep -c '^teacher_.*txt$')" -eq 2 ] || fail "expected 2 teacher tasks: $(ls "$run/sweep")"

"$python" - "$run" <<'PY' || fail "outputs"
import sys, h5py, numpy as np
run = sys.argv[1]
with h5py.File(f"{run}/synth.h5", "r") as f:
    assert f.attrs["ackd_format"] == "dataset"
    assert f["ms/images"].shape == (600, 10, 16, 16) and f["rgb/images"].shape == (400, 3, 16, 16)
with h5py.File(f"{run}/ssm/embeddings.h5", "r") as e, h5py.File(f"{run}/match.h5", "r") as m:
    assert m.attrs["ackd_format"] == "match"
    ti, w = m["match/teacher_index"][...], m["match/weight"][...]
    ys, yt = e["student/labels"][...], e["teacher/labels"][...]
    assert ti.shape == (len(ys), 3), ti.shape
    has = ti[:, 0] >= 0
    assert has.sum() > 0.5 * len(ys), has.sum()
    # every kept teacher is of the student's class, and weights sum to 1 per row
    for s in np.flatnonzero(has):
        k = ti[s][ti[s] >= 0]
        assert (yt[k] == ys[s]).all(), (s, k)
        assert abs(w[s][ti[s] >= 0].sum() - 1) < 1e-9
with h5py.File(f"{run}/teacher/metrics.h5", "r") as m:
    assert len(m["epoch"]) == 8 and np.all(np.isfinite(m["train_loss"][...]))
with h5py.File(f"{run}/student/eval_test.h5", "r") as e:
    assert e.attrs["ackd_format"] == "eval" and e.attrs["method"] == "dkd" and 0 <= e.attrs["oa"] <= 1
print("outputs ok")
PY
echo "ok: sweep of 3 rows after 2 teacher tasks, throttle %2, placeholders as expected"
echo "ok: $(wc -w <<<"$STAGES") stages chained with afterok ran to completion; stage $SIGNALLED got USR1, checkpointed at step $step (exit 75), was requeued and resumed; later stages ran after it"
