#!/usr/bin/python3
"""`ackd distill` end to end through mpirun, on a small synthetic benchmark.

  distill_checks.py methods --mpirun L --ackd A --out DIR [--methods ...]
      every KD method, with and without -sembridge, runs on 2 ranks (1 epoch; 2 with -sembridge,
      whose DynM re-matches at epoch 1); its metrics are finite and the student's checkpoint
      evaluates. Which method wins is reported,
      not asserted.
  distill_checks.py resume --mpirun L --ackd A --out DIR
      -sembridge with DynM: SIGTERM after a re-matching, restart: bitwise the uninterrupted run
      (the matching is part of the checkpoint)
  distill_checks.py one_token --mpirun L --ackd A --out DIR   (after resume)
      SKA over one-token grids: one warning, and the run goes on
  distill_checks.py init --mpirun L --ackd A --out DIR   (after resume, whose student it starts from)
      -distill_init: the student starts from the resume run's student; after its Adam steps at lr
      1e-4 no weight is further from it than Adam's bound; a checkpoint of another model is refused
  distill_checks.py exchange --mpirun L --ackd A --out DIR   (after resume)
      SKA's gradients exchanged during the student's backward = one allreduce after the step,
      bitwise, with a rank that has no share of the last batch
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for checklib
import checklib  # noqa: E402

check = checklib.Checks("distill_checks")


def run(args, np_, cmd, expect=0):
    return checklib.run_ackd(args.mpirun.split(), np_, args.ackd, cmd, expect)


def fixture(args):
    """Dataset, teacher (with its gallery), embeddings and matching: once per output directory."""
    d = args.out
    data = os.path.join(d, "data.h5")
    if not os.path.exists(os.path.join(d, "match.h5")):
        run(args, 2, ["synth", "-synth_output", data, "-synth_ms_count", "400", "-synth_rgb_count", "400",
                      "-synth_size", "16", "-synth_classes", "6", "-synth_overlap", "0.7", "-synth_seed", "11", "-quiet"])
        run(args, 2, ["train", "-train_data", data, "-train_dir", os.path.join(d, "teacher"), "-teacher_arch",
                      "smallcnn", "-teacher_width", "0.5", "-train_epochs", "3", "-train_batch", "64", "-quiet"])
        emb = os.path.join(d, "embeddings.h5")
        ssm = [args.ackd, "ssm"]
        if args.real_ssm:
            run(args, 2, ["ssm", "-ssm_data", data, "-ssm_dir", os.path.join(d, "ssm"), "-ssm_arch", "smallcnn",
                          "-ssm_width", "0.5", "-ssm_epochs", "1", "-quiet"])
            emb = os.path.join(d, "ssm", "embeddings.h5")
        else:
            subprocess.run(["/usr/bin/python3", os.path.join(HERE, "..", "jobs", "fake_ssm.py"), data, emb], check=True,
                           capture_output=True)
        run(args, 2, ["match", "-match_input", emb, "-match_output", os.path.join(d, "match.h5"), "-match_solver",
                      "sinkhorn", "-match_ot_topk", "3", "-quiet"])
    return data


def distill_cmd(data, d, directory, extra):
    return ["distill", "-distill_data", data, "-distill_gallery", os.path.join(d, "teacher", "gallery.h5"),
            "-distill_match", os.path.join(d, "match.h5"), "-distill_dir", directory, "-student_arch", "smallcnn",
            "-student_width", "0.5", "-distill_batch", "48", "-distill_seed", "5", "-quiet", *extra]


def methods_from_help(args):
    out = subprocess.run([args.ackd, "distill", "-help"], capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.strip().startswith("-kd_method"))
    return re.search(r"<([a-z0-9|]+)>", line).group(1).split("|")  # -kd_method <none|kd|...> default ...


def check_dynm_statistics(data, d, directory, values):
    """DynM's statistics at its last adjust epoch, recomputed from what the final checkpoint holds
    (the re-matched table) and the teacher's gallery: a second path to the same four numbers."""
    ckpt = sorted(glob.glob(os.path.join(directory, "checkpoints", "ckpt_*.h5")))[-1]
    with h5py.File(ckpt, "r") as c, h5py.File(data, "r") as f, \
            h5py.File(os.path.join(d, "teacher", "gallery.h5"), "r") as g:
        index = np.asarray(c["optim/state.match_index"]).astype(int)
        weight = np.asarray(c["optim/state.match_weight"])
        split, labels = np.asarray(f["rgb/split"]), np.asarray(f["rgb/labels"])
        ms_to_rgb, classes = np.asarray(f["class_map/ms_to_rgb"]), int(f["rgb"].attrs["classes"])
        logits = np.asarray(g["gallery/logits"], dtype=np.float64)
    students = labels[split == 0]
    k = index.size // students.size
    index, weight = index.reshape(-1, k), weight.reshape(-1, k)
    live = (index >= 0) & (weight > 0)
    top1 = np.where(live.any(1), index[np.arange(len(index)), live.argmax(1)], -1)
    projected = np.full((logits.shape[0], classes), -np.inf)
    for m, r in enumerate(ms_to_rgb):
        if 0 <= r < classes:
            projected[:, r] = logits[:, m]
    p = np.exp(projected - projected.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    matched = top1 >= 0
    hubs = np.bincount(top1[matched])
    own = p[top1[matched], students[matched]].mean()
    last = lambda name: values[name][-1]
    check(last("dynm_distinct_teachers") == np.count_nonzero(hubs),
          f"DynM distinct top-1 teachers {last('dynm_distinct_teachers'):.0f} = {np.count_nonzero(hubs)} recomputed")
    check(last("dynm_largest_hub") == hubs.max(),
          f"DynM largest hub {last('dynm_largest_hub'):.0f} = {hubs.max()} recomputed")
    check(abs(last("dynm_own_class_probability") - own) <= 1e-5,
          f"DynM teacher's own-class probability {last('dynm_own_class_probability'):.6f} = {own:.6f} recomputed")
    check(0 <= last("dynm_changed") <= 1, f"DynM changed share {last('dynm_changed'):.3f} in [0, 1]")


def check_token_cache(args, data, directory, extra, cached):
    """The teacher's tokens computed once before training (the default) against a teacher forward at
    every step, the second path: the same run's losses. The tokens of one image differ between the
    two only by the rounding of convolutions run in batches of other compositions (a few float32
    ulps), and two epochs of training carry that to the losses' sixth digit at most."""
    again = directory + "_per_step"
    shutil.rmtree(again, ignore_errors=True)
    run(args, 2, distill_cmd(data, args.out, again, extra + ["-distill_teacher_token_cache", "false"]))
    with h5py.File(os.path.join(again, "metrics.h5"), "r") as m:
        for key in ("train_loss", "loss_ska", "loss_kd", "loss_ce"):
            ref = m[key][()]
            err = float(np.max(np.abs(cached[key] - ref) / np.maximum(np.abs(ref), 1e-12)))
            check(err <= 1e-4, f"{key} with the teacher's tokens computed once = a forward per step ({err:.1e})")


def check_hint_metric(args, data, directory, extra):
    """A hint beside SemBridge's KD (-kd_hint_weight) is recorded as loss_hint, and nothing else of the
    run's loss terms changes name."""
    hinted = directory + "+hint"
    shutil.rmtree(hinted, ignore_errors=True)
    run(args, 2, distill_cmd(data, args.out, hinted, extra + ["-kd_hint_weight", "0.3"]))
    with h5py.File(os.path.join(hinted, "metrics.h5"), "r") as m:
        hint = m["loss_hint"][()]
        terms = sorted(k for k in m.keys() if k.startswith("loss_"))
    check(np.all(np.isfinite(hint)) and np.all(hint > 0) and
          terms == ["loss_ce", "loss_hint", "loss_kd", "loss_shared_mass", "loss_ska"],
          f"kd+sembridge with a hint: loss_hint {hint[-1]:.4f} each epoch, terms {terms}")


def mode_methods(args):
    data = fixture(args)
    methods = args.methods or methods_from_help(args)
    check(len(methods) >= 10, f"{len(methods)} methods offered: {' '.join(methods)}")
    results = []
    for method in methods:
        for sembridge in {"off": (False,), "on": (True,), "both": (False, True)}[args.sembridge]:
            if method == "none" and sembridge:
                continue
            tag = method + ("+sembridge" if sembridge else "")
            directory = os.path.join(args.out, "student_" + tag)
            shutil.rmtree(directory, ignore_errors=True)
            # SemBridge's DynM re-matches at epoch 1, so its runs take 2 epochs; 1 shows the others' terms
            epochs = 2 if sembridge else 1
            extra = ["-kd_method", method, "-distill_epochs", str(epochs)]
            if sembridge:
                extra += ["-sembridge", "-dynm_e0", "1", "-dynm_delta", "1", "-dynm_growth", "0"]
            run(args, 2, distill_cmd(data, args.out, directory, extra))
            with h5py.File(os.path.join(directory, "metrics.h5"), "r") as m:
                values = {k: m[k][()] for k in m.keys()}
            # dynm_changed has no earlier matching to compare with at epoch 0
            finite = all(np.all(np.isfinite(v[1:] if k == "dynm_changed" else v)) for k, v in values.items()
                         if k not in ("val_loss",))
            check(finite and len(values["train_loss"]) == epochs, f"{tag}: {epochs} epoch(s), every metric finite")
            check("loss_hint" not in values, f"{tag}: no loss_hint metric without -kd_hint_weight")
            if sembridge and method == "kd":
                check_dynm_statistics(data, args.out, directory, values)
                check_token_cache(args, data, directory, extra, values)
                check_hint_metric(args, data, directory, extra)
            results.append((float(values["val_oa"][-1]), tag))
            # eval names the method as the checkpoint records it: one run for each way of naming
            if tag in ("none", "kd", "kd+sembridge"):
                run(args, 2, ["eval", "-eval_checkpoint", os.path.join(directory, "best.h5"), "-quiet"])
                with h5py.File(os.path.join(directory, "eval_test.h5"), "r") as e:
                    check(e.attrs["method"] == tag and 0 <= e.attrs["oa"] <= 1, f"{tag}: eval OA {e.attrs['oa']:.3f}")
    results.sort(reverse=True)
    print("validation OA by method (1 epoch, 2 with SemBridge; reported, not asserted):")
    for oa, tag in results:
        print(f"  {tag:24s} {oa:.4f}")


def mode_external(args):
    """A teacher known only by its gallery (e.g. exported from a foundation model): logits per MS
    training sample and no checkpoint. Logit methods run; a method that needs the teacher's
    feature maps is refused with one line, and so are a gallery with a NaN logit and a gallery or
    match file holding a dataset of the wrong rank."""
    data = fixture(args)
    ext = os.path.join(args.out, "external_gallery.h5")
    with h5py.File(os.path.join(args.out, "teacher", "gallery.h5"), "r") as g, h5py.File(ext, "w") as e:
        e.attrs["ackd_format"] = "gallery"
        e.attrs["ackd_format_version"] = 1
        e.attrs["source"] = "external: logits only"
        for name in ("logits", "labels", "index", "classes"):
            e["gallery/" + name] = g["gallery/" + name][()]
    d = os.path.join(args.out, "student_external")
    shutil.rmtree(d, ignore_errors=True)
    cmd = distill_cmd(data, args.out, d, ["-kd_method", "dkd", "-distill_epochs", "1"])
    cmd[cmd.index("-distill_gallery") + 1] = ext
    run(args, 2, cmd)
    with h5py.File(os.path.join(d, "metrics.h5"), "r") as m:
        check(np.all(np.isfinite(m["train_loss"][()])) and np.all(np.isfinite(m["loss_kd"][()])),
              "dkd from an external, logits-only gallery: finite losses")
    cmd = distill_cmd(data, args.out, d + "_at", ["-kd_method", "at", "-distill_epochs", "1"])
    cmd[cmd.index("-distill_gallery") + 1] = ext
    proc = subprocess.run(args.mpirun.split() + ["2", args.ackd] + cmd, capture_output=True, text=True)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ackd distill: error")]
    check(proc.returncode == 2 and len(lines) == 1 and "-distill_teacher" in lines[0],
          f"at (feature maps) from a gallery-only teacher is refused in one line: {lines}")
    # AT over a 1 x 1 layer-4 grid (MobileNetV2, stride 32, on 16 x 16 scenes) would be CE only under
    # AT's name: the normalised attention map of one token is 1 for every sample.
    cmd = distill_cmd(data, args.out, d + "_at_one_token", ["-kd_method", "at", "-distill_epochs", "1"])
    cmd[cmd.index("-student_arch") + 1] = "mobilenetv2"
    proc = subprocess.run(args.mpirun.split() + ["2", args.ackd] + cmd, capture_output=True, text=True)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ackd distill: error")]
    check(proc.returncode == 2 and len(lines) == 1 and "student's layer-4 grid has 1 token" in lines[0],
          f"at over a one-token grid is refused in one line: {lines}")
    # A NaN in a gallery's logits (a teacher that diverged, a broken export) is refused at load.
    nan_gallery = os.path.join(args.out, "nan_gallery.h5")
    shutil.copy(ext, nan_gallery)
    with h5py.File(nan_gallery, "r+") as g:
        logits = g["gallery/logits"][...]
        logits[5, 1] = np.nan
        g["gallery/logits"][...] = logits
        entry = 5 * logits.shape[1] + 1
    cmd = distill_cmd(data, args.out, d + "_nan", ["-kd_method", "kd", "-distill_epochs", "1"])
    cmd[cmd.index("-distill_gallery") + 1] = nan_gallery
    proc = subprocess.run(args.mpirun.split() + ["2", args.ackd] + cmd, capture_output=True, text=True)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ackd distill: error")]
    check(proc.returncode == 1 and len(lines) == 1 and nan_gallery in lines[0] and
          f"non-finite value at entry {entry}" in lines[0],
          f"a gallery with a NaN logit is refused in one line naming it and the entry: {proc.returncode} {lines}")
    check(not glob.glob(os.path.join(d + "_nan", "checkpoints", "*.h5")), "... before any checkpoint is written")
    # A gallery or match dataset of another rank (a damaged or foreign file) is read into a rows x
    # columns buffer: refused by every rank at once, before the read, naming the file and dataset.
    def reshaped(source, name, dataset, reshape):
        path = os.path.join(args.out, name)
        shutil.copy(source, path)
        with h5py.File(path, "r+") as f:
            values = f[dataset][...]
            del f[dataset]
            f[dataset] = reshape(values)
        return path
    gallery_fix = r"; write the gallery again with ackd train \(or in the layout of docs/FORMATS\.md\)$"
    cases = [("-distill_gallery", reshaped(ext, "rank3_gallery.h5", "gallery/logits", lambda z: z[:, :, None]),
              "gallery/logits has 3 dimensions, not 1 or 2" + gallery_fix),
             ("-distill_gallery", reshaped(ext, "rank0_gallery.h5", "gallery/labels", lambda y: y[0]),
              "gallery/labels has 0 dimensions, not 1 or 2" + gallery_fix),
             ("-distill_gallery", reshaped(ext, "wide_index_gallery.h5", "gallery/index",
                                           lambda i: np.stack([i, i], axis=1)),
              r"gallery/index has 2 columns, not 1 \(a dataset row per teacher\)" + gallery_fix),
             ("-distill_match", reshaped(os.path.join(args.out, "match.h5"), "rank3_match.h5", "match/weight",
                                         lambda w: w[:, :, None]),
              r"match/weight has 3 dimensions, not 1 or 2; write the match file again with ackd match$")]
    for option, path, message in cases:
        cmd = distill_cmd(data, args.out, d + "_rank", ["-kd_method", "kd", "-distill_epochs", "1"])
        cmd[cmd.index(option) + 1] = path
        ok, account = checklib.refusal(args.mpirun.split() + ["2", args.ackd] + cmd,
                                       "^ackd distill: error: '" + re.escape(path) + "': " + message, 1)
        check(ok, f"{os.path.basename(path)} is refused in one line: {account}")


def final_model(directory):
    newest = sorted(glob.glob(os.path.join(directory, "checkpoints", "ckpt_*.h5")))[-1]
    arrays = {}
    with h5py.File(newest, "r") as f:
        for group in [g for g in ("model", "optim", "kd") if g in f]:  # kd: the method's own parameters
            f[group].visit(lambda n: arrays.__setitem__(group + "/" + n, f[group][n][()])
                           if isinstance(f[group][n], h5py.Dataset) else None)
        return arrays, int(f["state"].attrs["step"])


def mode_resume(args):
    data = fixture(args)
    extra = ["-kd_method", "dkd", "-sembridge", "-dynm_e0", "1", "-dynm_delta", "1", "-dynm_growth", "0",
             "-distill_epochs", "3", "-distill_ckpt_every_steps", "3"]
    ref = os.path.join(args.out, "resume_ref")
    shutil.rmtree(ref, ignore_errors=True)
    run(args, 2, distill_cmd(data, args.out, ref, extra))
    d = os.path.join(args.out, "resume")
    shutil.rmtree(d, ignore_errors=True)
    # 6 training batches per epoch: the stop at step 8 comes after the first re-matching (epoch 2).
    run(args, 2, distill_cmd(data, args.out, d, extra + ["-distill_debug_signal_after", "8"]), expect=75)
    run(args, 2, distill_cmd(data, args.out, d, extra))
    a, sa = final_model(ref)
    b, sb = final_model(d)
    check(sa == sb, f"both runs end at step {sa}")
    same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    check(same, "stopped + resumed = uninterrupted, bitwise (model, optimizer, matching, the method's parameters)")
    # The teacher's gallery rewritten under the run (a teacher retrained into its directory): the
    # resume of the finished run, extended by an epoch, is refused in one line, before any step.
    other = os.path.join(args.out, "retrained_gallery.h5")
    shutil.copy(os.path.join(args.out, "teacher", "gallery.h5"), other)
    with h5py.File(other, "r+") as g:
        g["gallery/logits"][0, 0] += 0.5
    cmd = distill_cmd(data, args.out, d, extra[:-4] + ["-distill_epochs", "4", "-distill_ckpt_every_steps", "3"])
    cmd[cmd.index("-distill_gallery") + 1] = other
    proc = subprocess.run(args.mpirun.split() + ["2", args.ackd] + cmd, capture_output=True, text=True)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ackd distill: error")]
    check(proc.returncode == 2 and len(lines) == 1 and "was written from another -distill_gallery (" in lines[0]
          and "teacher samples x" in lines[0] and "another -distill_dir" in lines[0],
          f"resumed with another teacher's gallery: refused in one line ({proc.returncode}, {lines})")
    check(final_model(d)[1] == sb, f"... before any step (the newest checkpoint still at step {sb})")
    # ackd inspect says what a checkpoint was trained on.
    newest = sorted(glob.glob(os.path.join(d, "checkpoints", "ckpt_*.h5")))[-1]
    out = subprocess.run([args.ackd, "inspect", newest], capture_output=True, text=True).stdout
    shown = [l for l in out.splitlines() if l.startswith(("dataset ", "teacher "))]
    check(len(shown) == 2 and shown[0].startswith("dataset    /rgb: ") and "labels and split" in shown[0]
          and shown[1].startswith("teacher    280 teacher samples x 6 classes, gallery "),
          f"ackd inspect of a distill checkpoint names its dataset and teacher gallery: {shown}")


def mode_exchange(args):
    """SemBridge's own parameters (SKA's maps) go on the wire once its loss has their gradients, while
    the student's backward runs: the same run, bitwise, as exchanging every gradient in one allreduce
    after the step (-distill_grad_exchange fused; a sum over two ranks is exact in either order). A
    last batch of one sample leaves one rank with nothing, which must still take part."""
    data = fixture(args)
    # 280 training students in batches of 93: the last batch holds one sample.
    extra = ["-kd_method", "kd", "-sembridge", "-dynm", "false", "-distill_epochs", "1", "-distill_batch", "93"]
    runs = {}
    for exchange in ("overlapped", "fused"):
        d = os.path.join(args.out, f"exchange_{exchange}")
        shutil.rmtree(d, ignore_errors=True)
        r = run(args, 2, distill_cmd(data, args.out, d, extra + ["-distill_grad_exchange", exchange, "-log_view"]))
        runs[exchange] = final_model(d)
    # -log_view's events (count: the larger of the two ranks'): 4 steps, SKA's two parts twice per
    # call (maps: forward and backward; CORAL: tokens and embeddings), the teacher's tokens once for
    # the cache and once per step, and the set-up's reads of the two collections (RGB and MS).
    events = {w[0]: (int(w[1]), float(w[3])) for w in (l.split() for l in r.stdout.splitlines())
              if len(w) > 4 and re.fullmatch(r"(Train|KD|Distill|Data)\w+", w[0]) and w[1].isdigit()}
    want = {"TrainStep": 4, "TrainGradWait": 4, "KDLoss": 4, "KDSka": 4, "KDSkaMaps": 8, "KDSkaCoral": 8,
            "DistillTeacherTokens": 5, "DataLoad": 2}
    check(all(events.get(k, (0,))[0] == v for k, v in want.items()) and
          events["TrainStep"][1] >= events["KDLoss"][1] >= events["KDSka"][1],
          f"-log_view: {', '.join(f'{k} {events.get(k, (0,))[0]}' for k in want)} (want {want}); the step's time "
          "holds the loss's, the loss's SKA's")
    (a, sa), (b, sb) = runs["overlapped"], runs["fused"]
    ska = [k for k in a if k.startswith("kd/ska.") and "attention" in k]
    check(sa == sb == 4 and len(ska) >= 4, f"both runs end at step {sa} (4); SKA's maps in the checkpoint: {len(ska)}")
    same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    check(same, "SKA's exchange during the student's backward = one allreduce after the step, bitwise")
    # AT and the token hint divide by the batch to count tokens: the empty rank must not.
    for name, method in (("at", ["-kd_method", "at"]), ("hint", ["-kd_method", "kd", "-kd_hint_weight", "0.3"])):
        d = os.path.join(args.out, f"exchange_{name}")
        shutil.rmtree(d, ignore_errors=True)
        run(args, 2, distill_cmd(data, args.out, d, method + extra[2:]))
        m = metrics_of(d)
        check(final_model(d)[1] == 4 and all(np.all(np.isfinite(v)) for v in m.values()),
              f"{' '.join(method)} with an empty rank in the last batch: 4 steps, finite metrics")


def model_weights(path):
    with h5py.File(path, "r") as f:
        found = {}
        f["model"].visititems(lambda n, o: found.__setitem__(n, np.asarray(o, dtype=np.float64))
                              if isinstance(o, h5py.Dataset) and n.endswith("weight") and "bn" not in n else None)
        return found, int(f.attrs["step"])


def mode_init(args):
    data = fixture(args)
    start = os.path.join(args.out, "resume_ref", "best.h5")
    directory = os.path.join(args.out, "student_init")
    shutil.rmtree(directory, ignore_errors=True)
    run(args, 2, distill_cmd(data, args.out, directory, ["-kd_method", "kd", "-distill_epochs", "1", "-distill_lr",
                                                         "1e-4", "-distill_init", start]))
    before, _ = model_weights(start)
    after, steps = model_weights(os.path.join(directory, "best.h5"))
    moved = max(np.abs(after[k] - before[k]).max() for k in before)
    bound = steps * checklib.adam_step_bound(1e-4)
    check(moved <= bound, f"-distill_init: after {steps} steps at lr 1e-4 the largest weight change is {moved:.2e} "
          f"(<= {bound:.1e})")
    # The MS teacher's checkpoint (10 bands) is not a start for the RGB student (3 bands).
    r = run(args, 2, distill_cmd(data, args.out, os.path.join(args.out, "student_init_wrong"),
                                 ["-distill_init", os.path.join(args.out, "teacher", "best.h5")]), expect=2)
    line = [l for l in r.stderr.splitlines() if "error" in l]
    check(len(line) == 1 and "-distill_init" in line[0] and "holds a smallcnn at width 0.5, 10 bands, 6 classes; the "
          "model is a smallcnn at width 0.5, 3 bands, 6 classes" in line[0],
          f"-distill_init of the teacher: one line naming both models: {line}")


def metrics_of(directory):
    with h5py.File(os.path.join(directory, "metrics.h5"), "r") as m:
        return {k: m[k][()] for k in m.keys() if k != "seconds"}


def mode_object(args):
    """The stage as a library object (test_distillation_object, two objects in one process) against
    the executable on the same options: the same run, bitwise."""
    data = fixture(args)
    extra = ["-kd_method", "dkd", "-sembridge", "-dynm_e0", "1", "-dynm_delta", "1", "-dynm_growth", "0",
             "-distill_epochs", "2"]
    exe = os.path.join(args.out, "object_exe")
    base = os.path.join(args.out, "object")
    for d in (exe, base):
        shutil.rmtree(d, ignore_errors=True)
    run(args, 2, distill_cmd(data, args.out, exe, extra))
    command = distill_cmd(data, args.out, "unused", extra)[1:] + ["-object_base", base]
    checklib.run_or_exit(args.mpirun.split() + ["2", args.program, *command], what="test_distillation_object")
    ref, ref_step = final_model(exe)
    ref_metrics = metrics_of(exe)
    for run_index in (0, 1):
        d = os.path.join(base, f"object_{run_index}")
        model, step = final_model(d)
        metrics = metrics_of(d)
        same = step == ref_step and model.keys() == ref.keys() and all(np.array_equal(model[k], ref[k]) for k in ref)
        check(same, f"object {run_index}: model and optimizer after {step} steps = the executable's, bitwise")
        same = metrics.keys() == ref_metrics.keys() and all(
            np.array_equal(metrics[k], ref_metrics[k], equal_nan=True) for k in ref_metrics)
        check(same, f"object {run_index}: every metric but the wall time = the executable's ({len(metrics)} metrics)")


def mode_one_token(args):
    """SKA over layer-4 grids of one token (stride-32 backbones on 16 x 16 scenes) has no attention
    to compute: the run goes on, with one warning saying so."""
    data = fixture(args)
    teacher = os.path.join(args.out, "teacher_resnet18")
    if not os.path.exists(os.path.join(teacher, "gallery.h5")):
        run(args, 2, ["train", "-train_data", data, "-train_dir", teacher, "-teacher_arch", "resnet18",
                      "-teacher_width", "0.25", "-train_epochs", "1", "-quiet"])
    directory = os.path.join(args.out, "student_one_token")
    shutil.rmtree(directory, ignore_errors=True)
    cmd = distill_cmd(data, args.out, directory, ["-kd_method", "kd", "-sembridge", "-dynm", "false",
                                                  "-distill_epochs", "1"])
    cmd[cmd.index("-distill_gallery") + 1] = os.path.join(teacher, "gallery.h5")
    cmd[cmd.index("-student_arch") + 1] = "mobilenetv2"
    r = run(args, 2, cmd)
    warnings = [l for l in r.stderr.splitlines() if "SKA: both networks end in a layer-4 grid of 1 token" in l]
    check(len(warnings) == 1 and warnings[0].startswith("ackd: warning: SKA:"),
          f"SKA on one token per sample: one warning, the run goes on ({warnings})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["methods", "resume", "external", "init", "one_token", "object", "exchange"])
    p.add_argument("--mpirun", required=True)
    p.add_argument("--ackd", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--methods", nargs="*")
    p.add_argument("--program", help="object: the test_distillation_object program")
    p.add_argument("--sembridge", choices=["off", "on", "both"], default="both",
                   help="methods: each method without SemBridge, with it, or both")
    p.add_argument("--real-ssm", action="store_true", help="embeddings from ackd ssm instead of the stand-in")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    globals()["mode_" + args.mode](args)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
