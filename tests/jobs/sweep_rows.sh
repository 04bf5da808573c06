#!/usr/bin/env bash
# Every command line the job templates would run, through ackd's real option parsing: for each
# options file of inputs/, each row of jobs/sweep.grid expanded by jobs/lib/ackd-job.sh exactly
# as a sweep task expands it (stages distill and eval of jobs/sweep.stages), and every stage of
# jobs/pipeline.stages. Each command runs with -check_options, which reads every option and
# refuses a misspelt or misplaced one, then exits without work. Rows of one METHOD[+sembridge]
# differ only in the values of -student_arch and of paths: the parser sees one command line, and
# it runs once (the first pair's). Every row is checked for turning SemBridge off when it should.
#   sweep_rows.sh REPO ACKD
set -uo pipefail
repo=${1:?usage: sweep_rows.sh REPO ACKD}
ackd=${2:?usage: sweep_rows.sh REPO ACKD}
source "$repo/jobs/lib/ackd-job.sh"
export ACKD=$ackd ACKD_MPIRUN=env ACKD_RUN=/nonexistent/run
grid=$repo/jobs/sweep.grid
commands=$(mktemp)
trap 'rm -f "$commands"' EXIT
failures=0 checked=0

# Every row parses; the first row of each METHOD[+sembridge] stands for its label below (the
# expansion does not depend on the options file).
rows=$(sed -e 's/#.*$//' "$grid" | awk 'NF >= 2' | wc -l)
declare -A first_of=()
for ((i = 0; i < rows; i++)); do
  ackd_grid_row "$grid" "$i" >/dev/null || { echo "FAIL: row $i of $grid"; failures=$((failures + 1)); continue; }
  [ -n "${first_of[$ACKD_LABEL]:-}" ] || first_of[$ACKD_LABEL]=$i
done
representatives=$(printf '%s\n' "${first_of[@]}" | sort -n)
for opts in "$repo"/inputs/*.opts; do
  export ACKD_OPTS=$opts
  declare -A seen=()
  for i in $representatives; do
    ackd_grid_row "$grid" "$i" >/dev/null
    seen[$ACKD_LABEL]=1
    # A row without +sembridge must turn it off after the options file, which may turn it on.
    if [ "$ACKD_LABEL" = "$ACKD_METHOD" ] && [[ " $ACKD_EXTRA " != *" -sembridge false "* ]]; then
      echo "FAIL: row $i ($ACKD_LABEL) does not turn SemBridge off: extra '$ACKD_EXTRA'"
      failures=$((failures + 1))
    fi
    stages=distill
    [ "${#seen[@]}" -gt 1 ] || stages="distill eval eval_train" # the evals' lines are the same for every row
    for stage in $stages; do
      ackd_stage_argv "$repo/jobs/sweep.stages" "$stage" || { failures=$((failures + 1)); continue; }
      printf '%q ' "${ACKD_ARGV[@]}" -check_options -quiet >>"$commands"
      printf '\n' >>"$commands"
    done
  done
  unset ACKD_METHOD ACKD_TEACHER ACKD_STUDENT ACKD_PAIR ACKD_TAG ACKD_EXTRA
  for stage in $(ackd_stage_names "$repo/jobs/pipeline.stages"); do
    ackd_stage_argv "$repo/jobs/pipeline.stages" "$stage" || { failures=$((failures + 1)); continue; }
    printf '%q ' "${ACKD_ARGV[@]}" -check_options -quiet >>"$commands"
    printf '\n' >>"$commands"
  done
done

# Two at a time: each start-up is an MPI singleton. An isolated singleton starts no orted, which
# halves its start-up (~0.7 s instead of ~1.2 s on 2 shared cores); -check_options never needs one.
# Without an orted, every isolated singleton takes the same session directory name
# (ompi.HOST.0/jf.0/1), and one that ends removes it under another that starts: each gets its own
# temporary directory.
export OMPI_MCA_ess_singleton_isolated=1
results=$(sort -u "$commands" | xargs -d '\n' -P 2 -I{} bash -c 'tmp=$(mktemp -d); \
  OMPI_MCA_orte_tmpdir_base=$tmp {} >/dev/null 2>$tmp/err && echo ok || { echo "FAIL: {}"; sed "s/^/    /" $tmp/err; }; \
  rm -rf $tmp')
checked=$(grep -c '^ok$' <<<"$results")
bad=$(grep -c '^FAIL' <<<"$results")
grep -v '^ok$' <<<"$results"
failures=$((failures + bad))
echo "$checked command lines accepted, $failures failure(s), from $(ls "$repo"/inputs/*.opts | wc -l) options files"
[ "$failures" -eq 0 ] && [ "$checked" -gt 0 ]
