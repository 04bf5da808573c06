#!/usr/bin/env bash
# The USR1 lead the Slurm submit scripts choose for a time limit: each case is worked out by
# hand from the rule (a quarter of limits under 40 min, at least 30 s; none otherwise).
set -uo pipefail
source "${1:?usage: signal_lead.sh REPO}/jobs/lib/ackd-job.sh"
failures=0
expect() { # expect WANTED SBATCH_ARGS...
  local want=$1 got
  shift
  got=$(ackd_slurm_signal_option "$@")
  if [ "$got" != "$want" ]; then
    echo "FAIL: [$*] gave '$got', expected '$want'"
    failures=$((failures + 1))
  fi
}
expect "--signal=B:USR1@150" --time=00:10:00      # 600 s
expect "--signal=B:USR1@150" --time 10            # minutes
expect "--signal=B:USR1@150" -t 10:00             # M:S = 10 min
expect "--signal=B:USR1@75" -t5                   # 300 s
expect "--signal=B:USR1@30" --time=1              # 60 s: a quarter is 15, raised to 30
expect "--signal=B:USR1@450" --time=0-0:30        # D-H:M
expect "" --time=00:40:00                         # 2400 s: long enough for the template's 600
expect "" --time=1-00                             # a day
expect "" --time=UNLIMITED
expect "" --nodes=2                               # no limit given: the template's own
expect "" --time=00:10:00 --signal=B:USR1@60      # the caller's choice stands
expect "" --time=00:10:00 --time=12:00:00         # the last --time wins, as in sbatch
expect "--signal=B:USR1@150" --time=12:00:00 --time=00:10:00
expect "" --time=soon                             # unreadable: left to sbatch to reject
[ "$failures" -eq 0 ] && echo "ok: 14 time limits" || exit 1
