#!/usr/bin/env bash
# ackd STAGE -help lists ackd's own options, one format for every type
# ("-name <type> default D, now V: meaning"); -help_all adds the PETSc options of
# the solvers inside (Tao, KSP, PC) that -help leaves out.
#   help.sh ACKD
set -u
ackd=$1
fail() { echo "FAIL: $*"; exit 1; }

for stage in synth curate train ssm match distill eval predict inspect; do
  out=$("$ackd" "$stage" -help 2>&1) || fail "ackd $stage -help exits $?: $(printf '%s\n' "$out" | tail -1)"
  printf '%s\n' "$out" | grep -Eq 'tao_|ksp_|_pc_|formerly|PetscOptionsGetViewer' &&
    fail "ackd $stage -help lists PETSc's internal options: $(printf '%s\n' "$out" | grep -E 'tao_|ksp_|formerly' | head -1)"
  n=$(printf '%s\n' "$out" | wc -l)
  [ "$n" -le 120 ] || fail "ackd $stage -help prints $n lines, want at most 120"
done

out=$("$ackd" distill -help)
line=$(printf '%s\n' "$out" | grep -n -- '^  -distill_seed <int> default 0: ' | cut -d: -f1)
[ -n "$line" ] || fail "distill -help has no '-distill_seed <int> default 0:' line"
[ "$line" -le 100 ] || fail "-distill_seed is on line $line of distill -help"

# The value in force is shown beside the default, the same way for every type.
out=$("$ackd" distill -help -kd_method dkd -distill_augment false -distill_lr 0.01 -distill_epochs 7 \
  -distill_data d.h5 -distill_milestones 3,5)
for want in '  -distill_augment <bool> default true, now false: ' '  -distill_lr <real> default 0.001, now 0.01: ' \
  '  -distill_epochs <int> default 200, now 7: ' '  -distill_data <string> default unset, now d.h5: ' \
  '  -kd_method <none|kd|logits|' 'default none, now dkd: ' '  -distill_milestones <int,int,...> default unset, now 3,5: ' \
  '  -distill_sync_bn <bool> default false: ' '  -dkd_temperature <real> default 4: '; do
  printf '%s\n' "$out" | grep -qF -- "$want" || fail "distill -help lacks '$want'"
done

# -help_all: the solver's PETSc options as well, ackd's still in ackd's format.
for stage in distill match; do
  out=$("$ackd" $stage -help_all) || fail "ackd $stage -help_all exits $?"
  printf '%s\n' "$out" | grep -q -- 'ot_semidual_tao_type' || fail "$stage -help_all lacks the Tao options"
  printf '%s\n' "$out" | grep -q -- '_ot_eps <real> default 0.01: ' || fail "$stage -help_all lacks ackd's own lines"
done
"$ackd" help | grep -q -- '-help_all' || fail "'ackd help' does not mention -help_all"
echo "ok"
