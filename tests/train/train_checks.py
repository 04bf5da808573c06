#!/usr/bin/python3
"""End-to-end checks of `ackd train` and `ackd eval` through mpirun.

  train_checks.py MODE --mpirun MPIRUN --ackd ACKD --out DIR [--h5dump H5DUMP]

MODE:
  accuracy     a teacher trained on the synthetic MS set reaches a stated test OA;
               eval's numbers are recomputed here from its predictions and the dataset;
               the same teacher trained with -train_precision bf16 reaches the same bound
               (best validation OA) within 0.05 of float32's, says so in its files, and
               resumed in float32 says that too; on a CPU without bf16 instructions
               (/proc/cpuinfo) the option is refused in one line instead
  equivalence  20 steps on 1, 2 and 4 ranks: the same losses and final parameters (1e-5)
  resume       stopped by SIGTERM after 10 steps and restarted: bitwise the uninterrupted
               run on the same rank count, within 1e-5 on another
  kill         SIGKILL in the middle of a checkpoint write: the previous checkpoint
               loads, the run continues and ends bitwise where the uninterrupted one does
  cover_fractions
               -train_targets cover_fractions: on cover fractions that are the labels' one-hot
               rows, bitwise the run on the labels; on a mixed world's fractions, a teacher
               whose softmax on the neighbour class grows with the neighbour's share of the
               scene (the labels' teacher's does far less); a world without the table, a
               multi-label collection and a row that is not a distribution are refused
"""
import argparse
import glob
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("train_checks")


def run(args, cmd, expect=0):
    """cmd: the rank count, ackd and its arguments."""
    return checklib.run_or_exit(args.mpirun + cmd, expect, what=" ".join(cmd[:3]))


def synth(args, path, count, size=32, extra=()):
    if os.path.exists(path):
        return
    run(args, ["2", args.ackd, "synth", "-synth_output", path, "-synth_ms_count", str(count), "-synth_rgb_count",
               str(count // 2), "-synth_size", str(size), "-synth_classes", "10", "-synth_seed", "7", "-quiet", *extra])


def checkpoint_model(directory, which=-1):
    """The /model arrays of a checkpoint kept in DIR/checkpoints (by default the newest; 0: the oldest), and
    its step."""
    path = sorted(glob.glob(os.path.join(directory, "checkpoints", "ckpt_*.h5")))[which]
    arrays = {}
    with h5py.File(path, "r") as f:
        f["model"].visit(lambda name: arrays.__setitem__(name, f["model"][name][()])
                         if isinstance(f["model"][name], h5py.Dataset) else None)
        step = int(f["state"].attrs["step"])
    return arrays, step


def relative_difference(a, b):
    """||a - b|| / ||b|| over all arrays together."""
    diff = np.sqrt(sum(float(np.sum((a[n].astype(np.float64) - b[n]) ** 2)) for n in a))
    return diff / np.sqrt(sum(float(np.sum(b[n].astype(np.float64) ** 2)) for n in a))


def compare(a, b, what, rtol=None):
    """Bitwise (rtol None), or relative in the norm of all parameters together: ||a - b|| / ||b||.
    A per-array maximum would be dominated by batch-norm channels whose batch variance is ~0, where
    1/sqrt(var + eps) multiplies round-off by ~300 at every step, in any framework."""
    check(a.keys() == b.keys(), f"{what}: the same arrays")
    if rtol is None:
        for name in a:
            if not np.array_equal(a[name], b[name]):
                check(False, f"{what}: {name} bitwise equal")
                return
        check(True, f"{what}: every array bitwise equal")
        return
    rel = relative_difference(a, b)
    worst = max(a, key=lambda n: float(np.abs(a[n] - b[n]).max()))
    check(rel <= rtol, f"{what}: ||a - b|| / ||b|| = {rel:.2e} <= {rtol} (largest entry difference "
          f"{float(np.abs(a[worst] - b[worst]).max()):.1e} in {worst})")


def train_cmd(data, directory, arch, extra=()):
    return [args_ackd(), "train", "-train_data", data, "-train_dir", directory, "-teacher_arch", arch,
            "-teacher_width", "0.5", "-train_batch", str(ARGS.batch), "-train_seed", "3", "-train_ckpt_every_steps", "4", "-quiet",
            *extra]


def args_ackd():
    return ARGS.ackd


def mode_accuracy(args):
    data = os.path.join(args.out, "acc.h5")
    synth(args, data, 1500)
    d = os.path.join(args.out, "acc_teacher")
    shutil.rmtree(d, ignore_errors=True)
    run(args, ["2", args.ackd, "train", "-train_data", data, "-train_dir", d, "-teacher_arch", "smallcnn",
               "-train_epochs", "8", "-train_batch", "64", "-quiet"])
    run(args, ["2", args.ackd, "eval", "-eval_checkpoint", os.path.join(d, "best.h5"), "-quiet"])
    with h5py.File(os.path.join(d, "eval_test.h5"), "r") as e, h5py.File(data, "r") as ds:
        labels = ds["ms/labels"][()]
        split = ds["ms/split"][()]
        index = e["index"][()]
        pred = e["prediction"][()]
        check(np.array_equal(index, np.flatnonzero(split == 2)), "eval covers exactly the test split, in order")
        oa = float(np.mean(pred == labels[index]))
        check(abs(oa - e.attrs["oa"]) < 1e-12, f"eval's OA {e.attrs['oa']:.4f} = recomputed {oa:.4f}")
        conf = np.zeros((10, 10), dtype=np.int64)
        np.add.at(conf, (labels[index], pred), 1)
        check(np.array_equal(conf, e["confusion"][()]), "confusion matrix = recomputed from the predictions")
        # Chance is 0.1; the synthetic MS classes are separable (nearest centroid reaches 0.93).
        check(oa >= 0.85, f"teacher test OA {oa:.4f} >= 0.85 after 8 epochs")
    with h5py.File(os.path.join(d, "metrics.h5"), "r") as m:
        val = m["val_oa"][()]
        check(len(val) == 8 and m.attrs["best_epoch"] == int(np.argmax(val)), "metrics: 8 epochs, best = argmax val_oa")
        check(m.attrs["precision"] == "fp32", "metrics: precision fp32 by default")
        fp32_val = float(m.attrs["best_score"])
        check(np.all(np.isfinite(m["train_loss"][()])) and m["train_loss"][-1] < m["train_loss"][0],
              "metrics: training loss finite and falling")
    with h5py.File(os.path.join(d, "gallery.h5"), "r") as g, h5py.File(data, "r") as ds:
        n = int(np.sum(ds["ms/split"][()] == 0))
        check(g["gallery/logits"].shape == (n, 10) and g["gallery/index"].shape == (n,), "gallery: one row per MS train sample")
        check(np.array_equal(g["gallery/labels"][()], ds["ms/labels"][()][g["gallery/index"][()]]), "gallery labels")
    if args.h5dump:
        for f in [os.path.join(d, "best.h5"), os.path.join(d, "metrics.h5"), os.path.join(d, "eval_test.h5")]:
            check(subprocess.run([args.h5dump, "-H", f], capture_output=True).returncode == 0, f"h5dump opens {f}")
    check_bf16(args, data, fp32_val)


def check_bf16(args, data, fp32_val):
    """The accuracy run's teacher again in bf16 (see the module's docstring), compared by the best
    validation OA (fp32_val, float32's); its test OA needs no second look at eval's arithmetic."""
    d = os.path.join(args.out, "bf16_teacher")
    shutil.rmtree(d, ignore_errors=True)
    cmd = ["2", args.ackd, "train", "-train_data", data, "-train_dir", d, "-teacher_arch", "smallcnn",
           "-train_epochs", "8", "-train_batch", "64", "-train_gallery", "false", "-train_precision", "bf16",
           "-quiet"]
    fp32_teacher = os.path.join(args.out, "acc_teacher", "best.h5")
    eval_cmd = ["2", args.ackd, "eval", "-eval_checkpoint", fp32_teacher, "-eval_precision", "bf16", "-eval_output",
                os.path.join(args.out, "eval_bf16.h5"), "-quiet"]
    if not checklib.cpu_has_bf16():
        proc = run(args, cmd, expect=2)
        check("needs a CPU with AVX512_BF16 or AMX" in proc.stdout + proc.stderr
              and "use -train_precision fp32" in proc.stdout + proc.stderr,
              "without bf16 instructions -train_precision bf16 is refused, naming the fix")
        check(not os.path.exists(os.path.join(d, "best.h5")), "and nothing is trained")
        proc = run(args, eval_cmd, expect=2)
        check("use -eval_precision fp32" in proc.stdout + proc.stderr, "and so is -eval_precision bf16")
        return
    check_eval_bf16(args, eval_cmd)
    run(args, cmd)
    with h5py.File(os.path.join(d, "metrics.h5"), "r") as m, h5py.File(os.path.join(d, "best.h5"), "r") as b:
        bf16_val = float(m.attrs["best_score"])
        check(m.attrs["precision"] == "bf16" and b.attrs["precision"] == "bf16",
              "metrics.h5 and best.h5 record precision bf16")
        check(np.all(np.isfinite(m["train_loss"][()])) and m["train_loss"][-1] < m["train_loss"][0],
              "bf16: training loss finite and falling")
    # float32's bound and float32's own OA on the same seed: bf16 rounds the convolutions' operands to
    # 8 significant bits, which training must absorb.
    check(bf16_val >= 0.85, f"bf16 teacher's best validation OA {bf16_val:.4f} >= 0.85 after 8 epochs")
    check(abs(bf16_val - fp32_val) <= 0.05, f"bf16's {bf16_val:.4f} within 0.05 of fp32's {fp32_val:.4f}")
    # resumed for a ninth epoch in float32 (a node without bf16): allowed, and said
    proc = run(args, [*cmd, "-train_epochs", "9", "-train_precision", "fp32"])
    check("with -train_precision fp32; the steps before it ran in bf16" in proc.stdout + proc.stderr,
          "a bf16 run resumed in fp32 says so")
    with h5py.File(os.path.join(d, "metrics.h5"), "r") as m:
        check(len(m["val_oa"][()]) == 9 and m.attrs["precision"] == "fp32", "and goes on from its ninth epoch")


def check_eval_bf16(args, eval_cmd):
    """The float32 teacher evaluated with bf16 convolutions: the same predictions on nearly every test
    scene. Rounding the operands to 8 significant bits (u = 2^-9) at each of smallcnn's convolutions
    moves the logits by about 1% of their scale; a scene whose two top logits are that close may flip."""
    run(args, eval_cmd)
    with h5py.File(os.path.join(args.out, "eval_bf16.h5"), "r") as b, \
            h5py.File(os.path.join(args.out, "acc_teacher", "eval_test.h5"), "r") as f:
        check(b.attrs["precision"] == "bf16" and f.attrs["precision"] == "fp32", "the eval files record their precision")
        agree = float(np.mean(b["prediction"][()] == f["prediction"][()]))
        err = checklib.relative_error(b["logits"][()], f["logits"][()])
        check(agree >= 0.97 and err <= 0.05, f"bf16 eval: the same prediction on {agree:.4f} of the test scenes "
              f"(>= 0.97), logits within {err:.1e} of float32's largest (<= 5e-2)")


def mode_equivalence(args):
    """The same 20 steps at P = 1, 2 and 4 must agree within 1e-5 relative. With --control OPTION, the P=4
    run is repeated without OPTION (sync BN: each rank then normalises by its own 6-7 samples) and must
    differ by more than 100x that, so the check can tell a wrong distribution from round-off."""
    data = os.path.join(args.out, f"small{args.size}.h5")
    synth(args, data, 300, size=args.size)

    def train(np_, name, extra):
        d = os.path.join(args.out, name)
        shutil.rmtree(d, ignore_errors=True)
        # SGD: Adam turns round-off in a near-zero gradient into a step of +-lr, which says nothing about the
        # distribution (the resume test below runs Adam).
        run(args, [np_, *train_cmd(data, d, args.arch, ["-train_max_steps", "20", "-train_epochs", "3",
                                                         "-train_optimizer", "sgd", "-train_lr", str(args.lr),
                                                         "-train_ckpt_keep", "5", *extra])])
        arrays, step = checkpoint_model(d)
        check(step == 20, f"P={np_}: stopped at step 20")
        with h5py.File(os.path.join(d, "metrics.h5"), "r") as m:
            losses = m["train_loss"][()]
        return arrays, losses, d

    ref, ref_losses, ref_dir = train("1", "eq1", args.extra)
    # The parameters must really move, or agreeing would prove nothing.
    early, step = checkpoint_model(ref_dir, which=0)
    trained = [n for n in ref if "running" not in n]  # not the batch-norm running statistics
    moved = relative_difference({n: ref[n] for n in trained}, {n: early[n] for n in trained})
    check(moved > 1e-3, f"P=1: steps {step + 1}-20 move the trained parameters by {moved:.2e} relative (> 1e-3)")
    for np_ in ["2", "4"]:
        arrays, losses, _ = train(np_, f"eq{np_}", args.extra)
        compare(arrays, ref, f"P={np_} vs P=1 parameters", rtol=1e-5)
        rel = float(np.max(np.abs(losses - ref_losses) / np.abs(ref_losses)))
        check(rel <= 1e-5, f"P={np_} vs P=1 epoch losses: relative difference {rel:.2e} <= 1e-5")
    if args.control:
        without = [x for x in args.extra if x != args.control]
        arrays, _, _ = train("4", "eq4_control", without)
        rel = relative_difference(arrays, ref)
        check(rel > 1e-3, f"P=4 without {args.control} vs P=1: {rel:.2e} relative (> 1e-3, the check can fail)")


def mode_gradients(args):
    """The distributed step itself, free of training dynamics: with lr 0 the parameters never move, so
    the SGD momentum after 9 steps (all 9 batches of an epoch, the last one 2 samples over up to 4 ranks)
    is a fixed sum of gradients, which must not depend on the rank count."""
    data = os.path.join(args.out, "small.h5")
    synth(args, data, 300)
    ref = None
    for np_ in ["1", "2", "4"]:
        d = os.path.join(args.out, f"grad{np_}")
        shutil.rmtree(d, ignore_errors=True)
        run(args, [np_, *train_cmd(data, d, args.arch, ["-train_max_steps", "9", "-train_epochs", "3",
                                                         "-train_optimizer", "sgd", "-train_lr", "0",
                                                         "-train_momentum", "0.9", *args.extra])])
        newest = sorted(glob.glob(os.path.join(d, "checkpoints", "ckpt_*.h5")))[-1]
        with h5py.File(newest, "r") as f:
            moments = {"model.m": f["optim/model.m"][()]}
        if ref is None:
            ref = moments
            continue
        compare(moments, ref, f"P={np_} vs P=1 gradient sums over an epoch with an uneven last batch", rtol=1e-5)


def mode_resume(args):
    data = os.path.join(args.out, f"small{args.size}.h5")
    synth(args, data, 300, size=args.size)
    common = ["-train_max_steps", "20", "-train_epochs", "3", *args.extra]
    ref_dir = os.path.join(args.out, "resume_ref")
    shutil.rmtree(ref_dir, ignore_errors=True)
    run(args, ["2", *train_cmd(data, ref_dir, args.arch, common)])
    ref, _ = checkpoint_model(ref_dir)
    for second in ["2", args.other_ranks]:
        d = os.path.join(args.out, f"resume_2_{second}")
        shutil.rmtree(d, ignore_errors=True)
        run(args, ["2", *train_cmd(data, d, args.arch, [*common, "-train_debug_signal_after", "10"])], expect=75)
        _, step = checkpoint_model(d)
        check(step == 10, f"SIGTERM after step 10: exit 75 with a checkpoint at step {step}")
        proc = run(args, [second, *train_cmd(data, d, args.arch, common)])
        check("differ from the checkpoint" not in proc.stderr,
              "resumed with the options that wrote the checkpoint (less the testing signal): no warning")
        arrays, step = checkpoint_model(d)
        check(step == 20, f"resumed on {second} ranks to step 20")
        if second == "2":
            compare(arrays, ref, "stop at 10 + resume on the same 2 ranks vs uninterrupted")
        else:
            compare(arrays, ref, f"stop at 10 on 2 ranks + resume on {second} vs uninterrupted", rtol=1e-5)
    # The finished run extended with two options changed: one warning naming both with their old values.
    proc = run(args, ["2", *train_cmd(data, ref_dir, args.arch,
                                      [*common[2:], "-train_max_steps", "24", "-train_lr", "0.01"])])
    lines = [line for line in proc.stderr.splitlines() if "differ from the checkpoint" in line]
    check(len(lines) == 1 and "-train_max_steps 24 (was 20)" in lines[0]
          and "-train_lr 0.01 (was not given)" in lines[0],
          f"resumed with changed options: one warning naming them {lines}")
    # The same values spelt otherwise (1e-2 for 0.01, a flag's value given as 1) are no change.
    proc = run(args, ["2", *train_cmd(data, ref_dir, args.arch,
                                      [*common[2:], "-train_max_steps", "24", "-train_lr", "1e-2"])])
    check("differ from the checkpoint" not in proc.stderr,
          f"resumed with the same values spelt otherwise: no warning {proc.stderr.splitlines()[-3:]}")
    # The dataset regenerated under the run (another seed: the same size and shape, other labels):
    # refused in one line naming both, before any step.
    other = os.path.join(args.out, f"small{args.size}_seed8.h5")
    if not os.path.exists(other):
        run(args, ["2", args.ackd, "synth", "-synth_output", other, "-synth_ms_count", "300", "-synth_rgb_count",
                   "150", "-synth_size", str(args.size), "-synth_classes", "10", "-synth_seed", "8", "-quiet"])
    proc = run(args, ["2", *train_cmd(other, ref_dir, args.arch, [*common[2:], "-train_max_steps", "28"])], expect=2)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ackd train: error:")]
    check(len(lines) == 1 and "was written from another -train_data (/ms: 300 samples" in lines[0]
          and "than this run's -train_data (/ms: 300 samples" in lines[0] and "another -train_dir" in lines[0],
          f"resumed on a regenerated dataset: refused in one line {lines}")
    _, step = checkpoint_model(ref_dir)
    check(step == 24, f"... and nothing written after the refusal (newest checkpoint at step {step})")


def mode_kill(args):
    data = os.path.join(args.out, "small.h5")
    synth(args, data, 300)
    common = ["-train_max_steps", "20", "-train_epochs", "3"]
    ref_dir = os.path.join(args.out, "kill_ref")
    shutil.rmtree(ref_dir, ignore_errors=True)
    run(args, ["2", *train_cmd(data, ref_dir, args.arch, common)])
    ref, _ = checkpoint_model(ref_dir)
    d = os.path.join(args.out, "kill")
    shutil.rmtree(d, ignore_errors=True)
    run(args, ["2", *train_cmd(data, d, args.arch, ["-train_max_steps", "8", "-train_epochs", "3"])])
    # Resumes at 8; the next checkpoint file (best.h5 at the end of epoch 1, step 9) is cut after 3 arrays.
    proc = subprocess.run(args.mpirun + ["2", *train_cmd(data, d, args.arch,
                                                         [*common, "-train_ckpt_debug_kill_after", "3"])],
                          capture_output=True, text=True)
    check(proc.returncode != 0, f"the killed run failed (exit {proc.returncode})")
    parts = glob.glob(os.path.join(d, "**", "*.part"), recursive=True)
    check(len(parts) == 1, f"the kill left one half-written file behind: {parts}")
    _, step = checkpoint_model(d)
    check(step == 8, "the newest complete checkpoint is still step 8's")
    proc = run(args, ["2", *train_cmd(data, d, args.arch, common)])
    arrays, step = checkpoint_model(d)
    check(step == 20, "the restarted run continued to step 20")
    compare(arrays, ref, "killed mid-write + restarted vs uninterrupted")
    check(not glob.glob(os.path.join(d, "**", "*.part"), recursive=True), "no .part file is left at the end")
    for f in glob.glob(os.path.join(d, "checkpoints", "*.h5")):
        with h5py.File(f, "r") as h:
            check(h.attrs["ackd_format"] == "checkpoint", f"h5py opens {os.path.basename(f)}")


def mode_streaming(args):
    """-h5_streaming reads each batch from the file: the same run, bitwise, as from node memory."""
    data = os.path.join(args.out, "small.h5")
    synth(args, data, 300)
    runs = {}
    for mode, extra in (("shared", []), ("streaming", ["-h5_streaming"])):
        d = os.path.join(args.out, f"stream_{mode}")
        shutil.rmtree(d, ignore_errors=True)
        run(args, ["2", *train_cmd(data, d, args.arch, ["-train_max_steps", "12", "-train_epochs", "3", *extra])])
        runs[mode], _ = checkpoint_model(d)
        run(args, ["2", args.ackd, "eval", "-eval_checkpoint", os.path.join(d, "best.h5"), "-quiet", *extra])
        with h5py.File(os.path.join(d, "eval_test.h5"), "r") as e:
            runs[mode + "_eval"] = (e["prediction"][()], e.attrs["oa"])
    compare(runs["streaming"], runs["shared"], "streamed from the file vs held in node memory")
    check(np.array_equal(runs["streaming_eval"][0], runs["shared_eval"][0]), "eval: the same predictions streamed")


def fit_to_fractions(gallery, data):
    """How a teacher's softmax p fits the cover fractions F of its training scenes: the mean KL(F || p),
    and the correlation of p on each scene's neighbour class with the neighbour's share of the scene."""
    with h5py.File(gallery, "r") as g, h5py.File(data, "r") as ds:
        index, logits = g["gallery/index"][()], g["gallery/logits"][()].astype(np.float64)
        fractions = ds["ms/cover_fractions"][()][index].astype(np.float64)
        neighbour, share = ds["ms/neighbour_class"][()][index], ds["ms/neighbour_share"][()][index]
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    kl = np.sum(fractions * (np.log(np.maximum(fractions, 1e-30)) - log_p), axis=1).mean()
    on_neighbour = np.exp(log_p[np.arange(len(index)), neighbour])
    return float(kl), float(np.corrcoef(share, on_neighbour)[0, 1])


def mode_cover_fractions(args):
    data = os.path.join(args.out, "mixed.h5")
    synth(args, data, 800, extra=("-synth_mixing", "0.4"))
    onehot = os.path.join(args.out, "onehot.h5")
    shutil.copy(data, onehot)
    with h5py.File(onehot, "r+") as f:
        fractions = np.zeros(f["ms/cover_fractions"].shape, np.float32)
        fractions[np.arange(len(fractions)), f["ms/labels"][()]] = 1
        f["ms/cover_fractions"][...] = fractions
    runs = {}
    for targets in ("labels", "cover_fractions"):
        d = os.path.join(args.out, f"onehot_{targets}")
        shutil.rmtree(d, ignore_errors=True)
        run(args, ["2", *train_cmd(onehot, d, args.arch, ["-train_max_steps", "12", "-train_targets", targets])])
        runs[targets], _ = checkpoint_model(d)
    compare(runs["cover_fractions"], runs["labels"], "one-hot cover fractions vs the labels")

    # Cross-entropy on the fractions is KL(F || p) plus a constant: the teacher trained on them must fit
    # them better than one trained on the labels (6 epochs of a small CNN on 560 scenes: 0.67 of its KL
    # on this EPYC machine).
    fits = {}
    for targets in ("labels", "cover_fractions"):
        d = os.path.join(args.out, f"mixed_{targets}")
        shutil.rmtree(d, ignore_errors=True)
        run(args, ["2", args.ackd, "train", "-train_data", data, "-train_dir", d, "-teacher_arch", "smallcnn",
                   "-train_epochs", "6", "-train_batch", "64", "-train_lr", "2e-3", "-train_targets", targets, "-quiet"])
        fits[targets] = fit_to_fractions(os.path.join(d, "gallery.h5"), data)
        with h5py.File(os.path.join(d, "best.h5"), "r") as f:
            check(f.attrs["targets"] == targets, f"best.h5 says it was trained on {targets}")
    (kl_labels, corr_labels), (kl_fractions, corr_fractions) = fits["labels"], fits["cover_fractions"]
    check(kl_fractions < 0.85 * kl_labels and corr_fractions > corr_labels,
          f"trained on the fractions, the teacher fits them better: KL(F || p) {kl_fractions:.3f} against "
          f"{kl_labels:.3f} on the labels (below 0.85 of it), and its softmax on the neighbour follows the "
          f"neighbour's share more closely (correlation {corr_fractions:.2f} against {corr_labels:.2f})")

    plain = os.path.join(args.out, "plain.h5")
    synth(args, plain, 300)
    nan_row, short_row = os.path.join(args.out, "nan_row.h5"), os.path.join(args.out, "short_row.h5")
    for path, row, value in ((nan_row, 5, np.nan), (short_row, 9, 0.0)):
        shutil.copy(data, path)
        with h5py.File(path, "r+") as f:
            f["ms/cover_fractions"][row, f["ms/labels"][row]] = value
    narrow = os.path.join(args.out, "narrow.h5")
    shutil.copy(data, narrow)
    with h5py.File(narrow, "r+") as f:
        table = f["ms/cover_fractions"][()]
        del f["ms/cover_fractions"]
        f["ms/cover_fractions"] = table[:, :-1]
    multilabel = os.path.join(args.out, "multilabel.h5")
    synth(args, multilabel, 300, extra=("-synth_mixing", "0.4", "-synth_ms_multilabel"))
    for path, regex, code, what in (
            (plain, r"plain\.h5' has no /ms/cover_fractions .*synth -synth_mixing", 1, "a world without the table"),
            (nan_row, r"nan_row\.h5': /ms/cover_fractions row 5 holds NaN or Inf", 1, "a row holding NaN"),
            (short_row, r"short_row\.h5': /ms/cover_fractions row 9 is not a distribution .*sum to 0\.", 1,
             "a row without its label's share"),
            (narrow, r"narrow\.h5': /ms/cover_fractions must be \(800, 10\), .* it is 2-dimensional \(800, 9\)", 1,
             "a table without a column per class"),
            (multilabel, r"-train_targets cover_fractions trains a softmax .* is multi-label", 2, "multi-label")):
        d = os.path.join(args.out, "refused")
        shutil.rmtree(d, ignore_errors=True)
        ok, account = checklib.refusal(args.mpirun + ["2", *train_cmd(path, d, args.arch, ["-train_max_steps", "1",
                                                                                           "-train_targets",
                                                                                           "cover_fractions"])],
                                       regex, code)
        check(ok, f"{what} refused: {account}")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["accuracy", "equivalence", "gradients", "resume", "kill", "streaming",
                                    "cover_fractions"])
    p.add_argument("--mpirun", required=True, help="launcher with its -n flag, e.g. 'mpirun --oversubscribe -n'")
    p.add_argument("--ackd", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--h5dump")
    p.add_argument("--arch", default="mlp", help="model for equivalence/resume/kill")
    p.add_argument("--other-ranks", default="1", help="rank count of the different-P resume")
    p.add_argument("--batch", type=int, default=24, help="global batch (210 training samples: 26 leaves a last "
                   "batch of 2, so 2 of 4 ranks get nothing)")
    p.add_argument("--size", type=int, default=32, help="equivalence, resume: image size of the synthetic data")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate of the equivalence runs")
    p.add_argument("--control", help="equivalence: an option of --extra whose absence must break it")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more options for every train run")
    ARGS = args = p.parse_args()
    args.mpirun = args.mpirun.split()
    os.makedirs(args.out, exist_ok=True)
    globals()["mode_" + args.mode](args)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
