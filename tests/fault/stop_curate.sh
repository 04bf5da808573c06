#!/usr/bin/env bash
# `ackd curate` honours the stop contract: SIGUSR1 to mpirun while it checks or writes thousands of
# rasters ends it with exit 75, no output and no .part; the same command then writes the dataset.
#   stop_curate.sh REPO ACKD OUT MPIRUN...
set -u
repo=$1 ackd=$2 out=$3
shift 3
mpirun=("$@")
source "$(dirname "$0")/common.sh"
fresh "$out"
/usr/bin/python3 "$repo/bench/curate/make_geotiffs.py" "$out/tifs" 8000 --size 16 || fail "the rasters"
curate=(curate -curate_ms_dir "$out/tifs" -curate_ms_bands 1,2,3,4,5,6,7,8,9,10,11,12,13 -curate_output "$out/d.h5")
# checking: signalled in pass 1 (reading every raster); writing: once the .part exists
for phase in checking writing; do
  "${mpirun[@]}" 2 "$ackd" "${curate[@]}" >"$out/$phase.log" 2>&1 &
  pid=$!
  if [ $phase = checking ]; then
    for _ in $(seq 600); do grep -q "^curate: checking" "$out/$phase.log" && break; sleep 0.05; done
    grep -q "^curate: checking" "$out/$phase.log" || fail "curate did not begin within 30 s: $(cat "$out/$phase.log")"
  else
    for _ in $(seq 6000); do [ -e "$out/d.h5.part" ] && break; sleep 0.005; done
    [ -e "$out/d.h5.part" ] || fail "curate did not begin writing within 30 s: $(cat "$out/$phase.log")"
  fi
  kill -USR1 $pid
  start=$SECONDS
  ended $pid 30 "$phase: curate"
  [ "$rc" -eq 75 ] || fail "$phase: exit $rc, expected 75: $(tail -n 5 "$out/$phase.log")"
  grep -q "curate: stopped by a signal; '$out/d.h5' not written" "$out/$phase.log" ||
    fail "$phase: no stop line: $(tail -n 3 "$out/$phase.log")"
  [ ! -e "$out/d.h5.part" ] && [ ! -e "$out/d.h5" ] || fail "$phase: left $(ls "$out")"
  echo "ok: $phase: USR1 stopped curate in $((SECONDS - start)) s, exit 75, nothing left"
done
"${mpirun[@]}" 2 "$ackd" "${curate[@]}" -quiet || fail "the rerun failed"
/usr/bin/python3 -c "import h5py, sys; assert h5py.File(sys.argv[1])['ms/images'].shape[0] == 8000" "$out/d.h5" ||
  fail "the rerun's dataset is incomplete"
echo "ok: the same command then wrote the whole dataset"
