#!/usr/bin/env bash
# A resumable stage for the Slurm stop/requeue test, built on tests/ckpt's test_checkpoint
# until `ackd train` lands. First start: `test_checkpoint signal` steps until SIGUSR1/SIGTERM,
# then writes a checkpoint and exits 75. Started again (after the requeue): the checkpoint it
# finds must be complete and hold the values of the step it stopped at (`test_checkpoint read`
# checks every value), which stands for "resumed"; then it exits 0.
# It runs under the job template's own launcher, $ACKD_MPIRUN, and execs it, so the template's
# trap signals mpirun itself, as it would for an ackd stage.
#   ckpt_stage.sh TEST_CHECKPOINT CKPT_DIR
read -r -a launcher <<<"${ACKD_MPIRUN:?run me from a job template}"
prog=$1 dir=$2
latest=$(ls "$dir" 2>/dev/null | sed -n 's/^ckpt_0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -n 1)
if [ -z "$latest" ]; then
  echo "ckpt_stage: no checkpoint in $dir: starting from step 1"
  exec "${launcher[@]}" "$prog" signal -ckpt_dir "$dir"
fi
echo "ckpt_stage: resuming from the checkpoint of step $latest"
"${launcher[@]}" "$prog" read "$latest" -ckpt_dir "$dir" && echo "ckpt_stage: resumed from step $latest, finished"
