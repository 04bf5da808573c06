#!/usr/bin/env bash
# A rerun with the same parameters leaves the file alone (a killed pipeline can
# simply be started again); other parameters are refused and the file survives.
set -u
ackd=$1 dir=$2
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" || exit 1
opts=(-synth_output rerun.h5 -synth_ms_count 300 -synth_rgb_count 200 -quiet)
"$ackd" synth "${opts[@]}" || { echo "FAIL: first run"; exit 1; }
before=$(md5sum rerun.h5)
out=$("$ackd" synth "${opts[@]/-quiet/}" 2>&1) || { echo "FAIL: rerun"; exit 1; }
grep -q "up to date" <<<"$out" || { echo "FAIL: rerun did not report 'up to date': $out"; exit 1; }
[ "$(md5sum rerun.h5)" = "$before" ] || { echo "FAIL: rerun changed the file"; exit 1; }
err=$("$ackd" synth "${opts[@]}" -synth_seed 7 2>&1); code=$?
[ $code -eq 2 ] && grep -q "pass -synth_force" <<<"$err" || { echo "FAIL: other parameters: exit $code: $err"; exit 1; }
[ "$(md5sum rerun.h5)" = "$before" ] || { echo "FAIL: a refused run changed the file"; exit 1; }
[ ! -e rerun.h5.part ] || { echo "FAIL: a refused run left a partial file"; exit 1; }
"$ackd" synth "${opts[@]}" -synth_seed 7 -synth_force || { echo "FAIL: -synth_force"; exit 1; }
[ "$(md5sum rerun.h5)" != "$before" ] || { echo "FAIL: -synth_force did not rewrite"; exit 1; }
echo "ok: rerun, refusal and -synth_force"
