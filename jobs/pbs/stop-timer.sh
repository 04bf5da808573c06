# Sourced by the PBS job scripts: USR1 to this job script MARGIN seconds before its walltime,
# since PBS itself only sends SIGTERM at the walltime (then SIGKILL after the queue's kill_delay).
# The walltime comes from the job's own Resource_List (qstat -f); ACKD_WALLTIME (seconds)
# overrides it where qstat is not reachable from the compute node.

ackd_walltime_seconds() {
  local w=${ACKD_WALLTIME:-}
  [ -n "$w" ] || w=$(qstat -f "$PBS_JOBID" 2>/dev/null | sed -n 's/^ *Resource_List.walltime = //p' | head -n 1)
  case "$w" in
    *:*:*) IFS=: read -r h m s <<<"$w"; echo $((10#$h * 3600 + 10#$m * 60 + 10#$s)) ;;
    '' | *[!0-9]*) echo "" ;;
    *) echo "$w" ;;
  esac
}

ackd_stop_timer() {
  local margin=$1 wall
  wall=$(ackd_walltime_seconds)
  ACKD_TIMER_PID=""
  if [ -z "$wall" ]; then
    ackd_job_log "walltime unknown (set ACKD_WALLTIME): no USR1 before it, only PBS's SIGTERM"
    return 0
  fi
  local delay=$((wall - margin))
  [ "$delay" -gt 0 ] || delay=1
  # the subshell takes its sleep down with it when cancelled; $$ is still the job script
  (trap 'kill $sleeper 2>/dev/null; exit 0' TERM; sleep "$delay" & sleeper=$!; wait $sleeper && kill -USR1 $$) &
  ACKD_TIMER_PID=$!
  ackd_job_log "USR1 in ${delay}s (walltime ${wall}s, margin ${margin}s)"
}

ackd_stop_timer_cancel() {
  [ -z "${ACKD_TIMER_PID:-}" ] || kill "$ACKD_TIMER_PID" 2>/dev/null
}
