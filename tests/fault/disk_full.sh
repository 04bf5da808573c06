#!/usr/bin/env bash
# A file system that fills up under every collective writer of ackd: the dataset (synth), the
# checkpoints, best.h5, metrics and gallery (train), the embeddings (ssm), the match file (match)
# and the eval file (eval). Each stage writes onto a small tmpfs of several sizes, so that the disk
# fills at different points of its writes. Every run must end within its timeout (no hang), with a
# non-zero exit and one `ackd STAGE: error:` line; no .part may be left; what was there before
# (earlier checkpoints) must still open. A close that hangs all the same is ended by the watchdog
# of -h5_close_timeout. Last, a shared-memory file system too small for the node's copy of a
# collection. Mounting needs root: elsewhere the test skips (77).
#   disk_full.sh ACKD OUT MPIRUN...
set -u
ackd=$1 out=$2
shift 2
mpirun=("$@")
source "$(dirname "$0")/common.sh" # its fail exits, and the EXIT trap below cleans up
# Nothing here signals mpirun, and every run fails by itself: no grace to sleep through (2 s a run).
export OMPI_MCA_odls_base_sigkill_timeout=0
mnt=$out/tmpfs
cleanup() { mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"; }
trap cleanup EXIT
rm -rf "$out" && mkdir -p "$mnt" || fail "cannot create $out"
mount -t tmpfs -o size=64k tmpfs "$mnt" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs here (not root?)"; exit 77; }
umount "$mnt"
py=/usr/bin/python3

run() { "${mpirun[@]}" 2 "$ackd" "$@" -quiet; }
# ---- inputs on the ordinary disk
run synth -synth_output "$out/data.h5" -synth_ms_count 400 -synth_rgb_count 200 -synth_size 16 -synth_classes 4 \
  -synth_seed 5 || fail "synth"
train=(train -train_data "$out/data.h5" -teacher_arch smallcnn -teacher_width 0.5 -train_batch 32 -train_seed 1)
run "${train[@]}" -train_epochs 1 -train_dir "$out/teacher" || fail "train"
run ssm -ssm_data "$out/data.h5" -ssm_arch smallcnn -ssm_width 0.25 -ssm_epochs 1 -ssm_batch 32 -ssm_dir "$out/ssm" ||
  fail "ssm"

cases=0
# full STAGE KB SETUP -- ARGS...: the stage on a fresh tmpfs of KB kibibytes (SETUP: a command run
# first, with $mnt as its argument, e.g. to put earlier checkpoints there).
full() {
  local stage=$1 kb=$2 setup=$3
  shift 4
  mount -t tmpfs -o "size=${kb}k" tmpfs "$mnt" || fail "mount"
  [ "$setup" = - ] || $setup "$mnt"
  local before
  before=$(cd "$mnt" && find . -name '*.h5' | sort)
  local start=$SECONDS
  timeout 90 "${mpirun[@]}" 2 "$ackd" "$stage" "$@" -quiet >"$out/$stage.$kb.log" 2>&1
  local rc=$?
  [ "$rc" -ne 124 ] || fail "$stage on ${kb} KiB: still running after 90 s (a hang)"
  [ "$rc" -ne 0 ] || fail "$stage on ${kb} KiB: exit 0 on a full file system"
  local lines
  lines=$(grep -c "^ackd $stage: error:" "$out/$stage.$kb.log")
  [ "$lines" -eq 1 ] || fail "$stage on ${kb} KiB: $lines error lines, expected 1: $(head -c 600 "$out/$stage.$kb.log")"
  local parts
  parts=$(find "$mnt" -name '*.part')
  [ -z "$parts" ] || fail "$stage on ${kb} KiB: left $parts"
  for f in $before; do
    $py -c "import h5py, sys; h5py.File(sys.argv[1], 'r').close()" "$mnt/$f" ||
      fail "$stage on ${kb} KiB: $f, there before, no longer opens"
  done
  echo "ok: $stage on ${kb} KiB: exit $rc after $((SECONDS - start)) s, $(grep "^ackd $stage: error:" "$out/$stage.$kb.log" | cut -c1-110)..."
  umount "$mnt"
  cases=$((cases + 1))
}
earlier_checkpoints() { mkdir -p "$1/t/checkpoints" && cp "$out"/teacher/checkpoints/*.h5 "$1/t/checkpoints/"; }

for kb in 64 200 600; do full synth $kb - -- -synth_output "$mnt/d.h5" -synth_ms_count 400 -synth_rgb_count 200 \
  -synth_size 16 -synth_classes 4; done
for kb in 400 900 1000 1300 1400; do full train $kb earlier_checkpoints -- "${train[@]:1}" -train_epochs 3 -train_dir "$mnt/t"; done
for kb in 40 4200; do full ssm $kb - -- -ssm_data "$out/data.h5" -ssm_arch smallcnn -ssm_width 0.25 -ssm_epochs 1 \
  -ssm_batch 32 -ssm_dir "$mnt/s"; done
for kb in 8 16; do full match $kb - -- -match_input "$out/ssm/embeddings.h5" -match_output "$mnt/m.h5"; done
for kb in 8; do full eval $kb - -- -eval_checkpoint "$out/teacher/best.h5" -eval_output "$mnt/e.h5"; done

# The close itself failing: a disk that fills after the room check, or a quota the check cannot
# see. With the check switched off, eval's close on 8 KiB either fails on every rank (one error line)
# or fails on one and leaves the others at HDF5's barrier, where the watchdog of -h5_close_timeout
# ends the wait; which of the two depends on which rank's write meets the full disk. Either way:
# bounded, one line, no .part.
mount -t tmpfs -o size=8k tmpfs "$mnt" || fail "mount"
start=$SECONDS
timeout 60 "${mpirun[@]}" 2 "$ackd" eval -eval_checkpoint "$out/teacher/best.h5" -eval_output "$mnt/e.h5" \
  -h5_debug_skip_room_check -h5_close_timeout 3 -quiet >"$out/close_full.log" 2>&1
rc=$?
[ "$rc" -ne 124 ] || fail "a failing close: still running after 60 s, the watchdog did not end it"
[ "$rc" -ne 0 ] || fail "a failing close: exit 0 on a full file system"
lines=$(grep -c "^ackd: error: closing '$mnt/e.h5.part' has not finished after 3 s\|^ackd eval: error: closing '$mnt/e.h5.part'" \
  "$out/close_full.log")
[ "$lines" -eq 1 ] || fail "a failing close: $lines error lines, expected 1: $(head -c 600 "$out/close_full.log")"
[ -z "$(find "$mnt" -name '*.part')" ] || fail "a failing close: left $(find "$mnt" -name '*.part')"
umount "$mnt"
echo "ok: a close on a full disk without the room check: ended after $((SECONDS - start)) s, exit $rc: $(grep -o "^ackd.*error: closing [^;]*" "$out/close_full.log" | cut -c1-90)..."

# The watchdog itself, deterministically: rank 1 comes to the close 30 s late, rank 0's close waits
# for it at the barrier, and -h5_close_timeout 3 ends the run with one line and no .part.
start=$SECONDS
timeout 60 "${mpirun[@]}" 2 "$ackd" eval -eval_checkpoint "$out/teacher/best.h5" -eval_output "$out/late.h5" \
  -h5_debug_close_delay 30 -h5_close_timeout 3 -quiet >"$out/close_timeout.log" 2>&1
rc=$?
[ "$rc" -ne 124 ] || fail "a hanging close: still running after 60 s, the watchdog did not end it"
[ "$rc" -ne 0 ] || fail "a hanging close: exit 0"
lines=$(grep -c "^ackd: error: closing '$out/late.h5.part' has not finished after 3 s" "$out/close_timeout.log")
[ "$lines" -eq 1 ] || fail "a hanging close: $lines watchdog lines, expected 1: $(head -c 600 "$out/close_timeout.log")"
[ ! -e "$out/late.h5.part" ] && [ ! -e "$out/late.h5" ] || fail "a hanging close: left $(ls "$out" | grep late)"
[ $((SECONDS - start)) -lt 25 ] || fail "a hanging close: ended after $((SECONDS - start)) s, not by the watchdog"
echo "ok: a close that hangs (rank 1 30 s late): ended by the watchdog after $((SECONDS - start)) s, exit $rc, one line, no .part"

# Node memory for the collection in a shared-memory file system that is too small (a container's
# /dev/shm): one line naming the collection, its size and both ways out; -h5_streaming then runs.
mount -t tmpfs -o size=1m tmpfs "$mnt" || fail "mount"
export OMPI_MCA_osc_sm_backing_directory=$mnt
timeout 60 "${mpirun[@]}" 2 "$ackd" "${train[@]}" -train_epochs 1 -train_max_steps 2 -train_dir "$out/shm" -quiet \
  >"$out/shm.log" 2>&1
rc=$?
[ "$rc" -ne 124 ] || fail "a small /dev/shm: still running after 60 s"
lines=$(grep -c "^ackd train: error: '$out/data.h5': holding /ms's images in node memory needs 4 MB of shared memory.*-h5_streaming" \
  "$out/shm.log")
[ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] || fail "a small /dev/shm: exit $rc, $lines matching lines: $(head -c 900 "$out/shm.log")"
timeout 60 "${mpirun[@]}" 2 "$ackd" "${train[@]}" -train_epochs 1 -train_max_steps 2 -train_dir "$out/shm" -quiet \
  -h5_streaming >"$out/shm_streaming.log" 2>&1 || fail "a small /dev/shm with -h5_streaming: $(head -c 600 "$out/shm_streaming.log")"
unset OMPI_MCA_osc_sm_backing_directory
umount "$mnt"
echo "ok: a /dev/shm too small for the collection: one line naming -h5_streaming, which then runs"
echo "ok: $cases cases: every writer failed cleanly on a full file system"
