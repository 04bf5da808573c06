#!/usr/bin/env bash
# `ackd match` honours the stop contract: SIGUSR1 to mpirun during the solve (dense, and by class
# blocks) ends it at the next convergence check with exit 75 and no match file or .part; the same
# command then solves and writes it. The solve starts again: its state is not saved yet.
#   stop_match.sh ACKD OUT MPIRUN...
set -u
ackd=$1 out=$2
shift 2
mpirun=("$@")
source "$(dirname "$0")/common.sh"
fresh "$out"
/usr/bin/python3 - "$out/features.h5" <<'PY' || fail "features"
import sys, h5py, numpy as np
rng = np.random.default_rng(1)
with h5py.File(sys.argv[1], "w") as f:
    for side in ("student", "teacher"):
        f[f"{side}/features"] = rng.standard_normal((1500, 32)).astype(np.float32)
        f[f"{side}/labels"] = (np.arange(1500) % 4).astype(np.int32)
PY
for blocks in false true; do
  match=(match -match_input "$out/features.h5" -match_output "$out/m_$blocks.h5" -match_ot_eps 0.002
    -match_ot_tol 1e-13 -match_class_blocks "$blocks")
  # long enough to be signalled: the dense solve, or four blocks of a quarter the size each
  if [ "$blocks" = true ]; then match+=(-match_ot_max_it 100000); else match+=(-match_ot_max_it 4000); fi
  "${mpirun[@]}" 2 "$ackd" "${match[@]}" >"$out/$blocks.log" 2>&1 &
  pid=$!
  # The signal goes once every rank hears it (match says so), and a little into the solve.
  for _ in $(seq 600); do grep -q "match: solving" "$out/$blocks.log" && break; sleep 0.1; done
  grep -q "match: solving" "$out/$blocks.log" || fail "blocks $blocks: the solve did not begin within 60 s"
  sleep 0.5
  kill -0 $pid 2>/dev/null || fail "blocks $blocks: match ended before the signal: $(cat "$out/$blocks.log")"
  kill -USR1 $pid
  start=$SECONDS
  ended $pid 30 "blocks $blocks: match"
  [ "$rc" -eq 75 ] || fail "blocks $blocks: exit $rc, expected 75: $(tail -n 5 "$out/$blocks.log")"
  [ ! -e "$out/m_$blocks.h5" ] && [ ! -e "$out/m_$blocks.h5.part" ] || fail "blocks $blocks: left $(ls "$out")"
  echo "ok: class blocks $blocks: USR1 stopped match in $((SECONDS - start)) s, exit 75, no file"
  timeout 300 "${mpirun[@]}" 2 "$ackd" "${match[@]}" -match_ot_max_it 200 -quiet ||
    fail "blocks $blocks: the rerun failed"
  [ -e "$out/m_$blocks.h5" ] || fail "blocks $blocks: the rerun wrote no match file"
done
echo "ok: the same commands then wrote their match files"
