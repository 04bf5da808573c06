# Shared by the Slurm and PBS job scripts (sourced, bash): read a stage's command from a
# stage table, and run it so that a stop request reaches the MPI ranks.
#
# Stage table (jobs/pipeline.stages, jobs/sweep.stages): one stage per line,
#   NAME  LAUNCH  COMMAND...
# LAUNCH is `mpi` (prefixed with the launcher, $ACKD_MPIRUN) or `serial`. COMMAND may use
#   {ackd} the executable   {opts} the options file   {run} the run directory
#   {method} {teacher} {student} {pair} {tag} {extra}   one row of a sweep grid
# `#` starts a comment. Words are split on blanks; no shell quoting or expansion happens, so a
# table cannot run anything but the command it shows.

ackd_job_log() {
  printf '%s ackd-job %s: %s\n' "$(date +%Y-%m-%dT%H:%M:%S)" "${ACKD_JOB_ID:-local}" "$*"
}

# ackd_slurm_seconds TIME: a Slurm time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in seconds;
# prints nothing for INFINITE/UNLIMITED or a value it cannot read.
ackd_slurm_seconds() {
  local t=$1 days=0 a b c
  case $t in INFINITE | UNLIMITED | infinite | unlimited | "") return 0 ;; esac
  if [[ $t == *-* ]]; then
    days=${t%%-*} t=${t#*-}
    IFS=: read -r a b c <<<"$t"
    [[ $days =~ ^[0-9]+$ && $a =~ ^[0-9]+$ && ${b:-0} =~ ^[0-9]+$ && ${c:-0} =~ ^[0-9]+$ ]] || return 0
    echo $(((10#$days * 24 + 10#$a) * 3600 + 10#${b:-0} * 60 + 10#${c:-0}))
    return 0
  fi
  IFS=: read -r a b c <<<"$t"
  [[ $a =~ ^[0-9]+$ && ${b:-0} =~ ^[0-9]+$ && ${c:-0} =~ ^[0-9]+$ ]] || return 0
  if [ -n "$c" ]; then echo $((10#$a * 3600 + 10#$b * 60 + 10#$c)); else echo $((10#$a * 60 + 10#${b:-0})); fi
}

# ackd_slurm_signal_option SBATCH_ARGS...: the templates ask for USR1 600 s before the time
# limit (--signal=B:USR1@600). Under a limit shorter than a few times that, Slurm would signal
# the job at once, and every requeued allocation again: a loop that advances a minute at a time.
# For such a limit (the last --time/-t wins, as in sbatch) this prints a --signal option with a
# lead of a quarter of the limit (at least 30 s); nothing when the limit is long or the caller
# chose --signal itself.
ackd_slurm_signal_option() {
  local limit="" arg next=0 seconds lead
  for arg in "$@"; do
    if [ "$next" -eq 1 ]; then limit=$arg next=0; continue; fi
    case $arg in
      --signal | --signal=*) return 0 ;;
      --time=*) limit=${arg#--time=} ;;
      --time | -t) next=1 ;;
      -t*) limit=${arg#-t} ;;
    esac
  done
  seconds=$(ackd_slurm_seconds "$limit")
  [ -n "$seconds" ] && [ "$seconds" -lt 2400 ] || return 0
  lead=$((seconds / 4))
  [ "$lead" -ge 30 ] || lead=30
  echo "--signal=B:USR1@$lead"
}

# ackd_stage_names TABLE: the stage names, in table order.
ackd_stage_names() {
  awk '{ sub(/#.*/, "") } NF >= 3 { print $1 }' "$1"
}

# ackd_stage_argv TABLE STAGE: sets the array ACKD_ARGV to the stage's full command line.
ackd_stage_argv() {
  local table=$1 stage=$2 line key value word
  # one process per lookup: a sweep of hundreds of rows expands each of them
  line=$(awk -v s="$stage" '{ sub(/#.*/, "") } $1 == s && NF >= 3 { print; exit }' "$table")
  if [ -z "$line" ]; then
    ackd_job_log "error: stage '$stage' is not in $table (it has: $(ackd_stage_names "$table" | tr '\n' ' '))"
    return 2
  fi
  local -a words
  read -r -a words <<<"$line"
  local launch=${words[1]}
  ACKD_ARGV=()
  case "$launch" in
    mpi) read -r -a ACKD_ARGV <<<"${ACKD_MPIRUN:?ACKD_MPIRUN (the MPI launcher) is not set}" ;;
    serial) ;;
    *) ackd_job_log "error: stage '$stage': launch '$launch' must be mpi or serial"; return 2 ;;
  esac
  local -A subst=([ackd]="${ACKD:-ackd}" [opts]="${ACKD_OPTS:-}" [run]="${ACKD_RUN:-}"
    [method]="${ACKD_METHOD:-}" [teacher]="${ACKD_TEACHER:-}" [student]="${ACKD_STUDENT:-}"
    [pair]="${ACKD_PAIR:-}" [tag]="${ACKD_TAG:-}")
  for word in "${words[@]:2}"; do
    if [ "$word" = "{extra}" ]; then
      local -a extra=()
      read -r -a extra <<<"${ACKD_EXTRA:-}"
      ACKD_ARGV+=("${extra[@]}")
      continue
    fi
    for key in "${!subst[@]}"; do
      value=${subst[$key]}
      word=${word//\{$key\}/$value}
    done
    if [[ "$word" == *"{"*"}"* ]]; then
      ackd_job_log "error: stage '$stage': unknown placeholder in '$word'"
      return 2
    fi
    ACKD_ARGV+=("$word")
  done
}

# ackd_grid_row GRID INDEX: sets ACKD_METHOD, ACKD_PAIR, ACKD_TEACHER, ACKD_STUDENT, ACKD_TAG
# and ACKD_EXTRA from row INDEX (0-based, comments and blank lines skipped) of a sweep grid
# (`METHOD[+sembridge][+VARIANT...] PAIR [EXTRA OPTIONS...]`, PAIR = teacher/student letters:
# R ResNet34, M MobileNetV2, S ShuffleNetV2, C the small CNN of tests and smoke runs, e.g. R/M). The tag LABEL_TS names the row's run.
ackd_grid_row() {
  local grid=$1 index=$2 line
  line=$(awk -v n="$((index + 1))" '{ sub(/#.*/, "") } NF >= 2 && ++k == n { print; exit }' "$grid")
  if [ -z "$line" ]; then
    ackd_job_log "error: $grid has no row $index"
    return 2
  fi
  local -a w
  read -r -a w <<<"$line"
  ACKD_LABEL=${w[0]} ACKD_PAIR=${w[1]} ACKD_EXTRA="${w[*]:2}"
  ACKD_METHOD=${ACKD_LABEL%%+*}
  # METHOD+sembridge: the method with SemBridge's matching, DynM and SKA on top. A row without
  # it turns SemBridge off explicitly: the run's options file may turn it on for its pipeline.
  # Further +NAME parts only name a variant (scripts/study's rows); its EXTRA options say what it is.
  if [[ "+${ACKD_LABEL#*+}+" == *"+sembridge+"* && "$ACKD_LABEL" == *+* ]]; then
    ACKD_EXTRA="-sembridge $ACKD_EXTRA"
  else
    ACKD_EXTRA="-sembridge false $ACKD_EXTRA"
  fi
  if [[ ! "$ACKD_METHOD" =~ ^[a-z0-9]+$ ]]; then
    ackd_job_log "error: $grid row $index: '$ACKD_LABEL' is not METHOD[+sembridge][+VARIANT...]"
    return 2
  fi
  ACKD_TEACHER=$(ackd_arch "${ACKD_PAIR%%/*}") || return 2
  ACKD_STUDENT=$(ackd_arch "${ACKD_PAIR##*/}") || return 2
  ACKD_TAG="${ACKD_LABEL}_${ACKD_PAIR%%/*}${ACKD_PAIR##*/}"
  export ACKD_LABEL ACKD_METHOD ACKD_PAIR ACKD_EXTRA ACKD_TEACHER ACKD_STUDENT ACKD_TAG
}

ackd_arch() {
  case "$1" in
    R) echo resnet34 ;;
    M) echo mobilenetv2 ;;
    S) echo shufflenetv2 ;;
    C) echo smallcnn ;;
    *) ackd_job_log "error: architecture letter '$1' is not R, M, S or C"; return 2 ;;
  esac
}

# ackd_run CMD...: runs CMD in the background and waits for it, so that a stop request reaches
# the MPI ranks whichever way the scheduler sends it. Returns CMD's exit code (75: the stage
# checkpointed; run it again to resume); ACKD_STOP_SIGNAL names the signal that asked, if any.
#
# - A USR1 or TERM that reaches this shell is passed on to CMD as USR1. mpirun and srun forward
#   USR1 to every rank, which finishes its step, writes a checkpoint and exits 75, and mpirun
#   exits 75 too. A TERM passed on as TERM would make Open MPI's mpirun abort the job and exit 1.
# - A scheduler that signals every process of the job at once (Slurm's time limit, scancel,
#   preemption; PBS's qdel) hits mpirun with TERM directly: the ranks still checkpoint and exit
#   75, but mpirun exits 1. ackd's rank 0 writes the file named by ACKD_STOP_RECORD when it
#   stops on request, and its presence turns that 1 back into 75. OMPI_MCA_odls_base_sigkill_timeout
#   (ACKD_STOP_GRACE seconds, 10 unless set) is how long mpirun then waits before each of its
#   SIGTERM and SIGKILL to the ranks: the time they have to finish the checkpoint.
# Bash runs a trap only between commands, so a command in the foreground would hold the signal
# back until it ended on its own: hence the background job and the wait loop.
ackd_run() {
  ACKD_STOP_SIGNAL=""
  ackd_job_log "run: $*"
  local record code interrupted child
  record=$(mktemp "${TMPDIR:-/tmp}/ackd-stop.XXXXXX") || return 1
  rm -f "$record"
  ACKD_STOP_RECORD=$record OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-${ACKD_STOP_GRACE:-10}} \
    "$@" &
  child=$!
  trap 'interrupted=1; ACKD_STOP_SIGNAL=USR1; ackd_job_log "USR1: asking the stage to checkpoint and stop"; kill -USR1 '"$child"' 2>/dev/null' USR1
  trap 'interrupted=1; ACKD_STOP_SIGNAL=TERM; ackd_job_log "TERM: asking the stage to checkpoint and stop"; kill -USR1 '"$child"' 2>/dev/null' TERM
  while :; do
    interrupted=0
    wait "$child"
    code=$?
    [ "$interrupted" -eq 1 ] || break # a trap ended the wait, not the child: wait again
  done
  trap - USR1 TERM
  if [ "$code" -ne 0 ] && [ "$code" -ne 75 ] && [ -s "$record" ]; then
    ackd_job_log "the launcher exited $code, but the stage had checkpointed and stopped ($(cat "$record")): 75"
    code=75
  fi
  rm -f "$record"
  ackd_job_log "exit $code"
  return "$code"
}

# ackd_run_stages TABLE STAGE...: runs the stages in order; stops at the first that does not
# exit 0 and returns its code (75: checkpointed, run again to resume).
ackd_run_stages() {
  local table=$1 stage code
  shift
  for stage in "$@"; do
    ackd_stage_argv "$table" "$stage" || return $?
    ackd_run "${ACKD_ARGV[@]}"
    code=$?
    [ "$code" -eq 0 ] || return "$code"
  done
  return 0
}
