#!/usr/bin/env bash
# `ackd synth` honours the stop contract: SIGUSR1 (and SIGTERM) to mpirun in the middle of writing
# ends it after the current round of writes with exit 75, no output and no .part; the same command
# then writes the whole dataset (rendering again is cheaper than resuming).
#   stop_synth.sh ACKD OUT MPIRUN...
set -u
ackd=$1 out=$2
shift 2
mpirun=("$@")
source "$(dirname "$0")/common.sh"
fresh "$out"
synth=(synth -synth_output "$out/d.h5" -synth_ms_count 3000 -synth_rgb_count 3000 -synth_size 32 -quiet)
for sig in USR1 TERM; do
  "${mpirun[@]}" 2 "$ackd" "${synth[@]}" >"$out/$sig.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do [ -e "$out/d.h5.part" ] && break; sleep 0.05; done
  [ -e "$out/d.h5.part" ] || fail "$sig: synth never began writing: $(cat "$out/$sig.log")"
  sleep 1
  kill -"$sig" $pid
  start=$SECONDS
  ended $pid 30 "$sig: synth"
  if [ "$sig" = USR1 ]; then
    [ "$rc" -eq 75 ] || fail "USR1: exit $rc, expected 75: $(tail -n 5 "$out/$sig.log")"
  else
    # mpirun, itself terminated, exits 1 whatever its ranks did (docs/EXIT_CODES.md)
    [ "$rc" -ne 0 ] || fail "TERM: exit 0"
  fi
  [ ! -e "$out/d.h5.part" ] && [ ! -e "$out/d.h5" ] || fail "$sig: left $(ls "$out")"
  echo "ok: $sig: synth stopped in $((SECONDS - start)) s, exit $rc, nothing left"
done
"${mpirun[@]}" 2 "$ackd" "${synth[@]}" || fail "the rerun failed"
/usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1]); assert f['ms/images'].shape[0] == 3000 and f['rgb/images'].shape[0] == 3000" \
  "$out/d.h5" || fail "the rerun's dataset is incomplete"
echo "ok: the same command then wrote the whole dataset"
