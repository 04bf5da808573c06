#!/usr/bin/python3
"""PyTorch in and out.

analysis/export_torch.py on checkpoints that `ackd train` writes, one per architecture family:
the state_dict loads with strict=True into analysis/ackd_torch.py's network; the exported model's logits on the eval split equal the logits `ackd
eval` wrote for the same rows (a second implementation: oneDNN in ackd, PyTorch here); the ONNX
file passes onnx's checker; a checkpoint that does not fit the network and a file that is not a
checkpoint are refused with one line.

analysis/import_torch.py on torchvision's resnet18 as a user brings it (3 bands, 1000 classes;
randomly initialised here, as nothing is downloaded): with --adapt-stem and --fresh-head it becomes
a 10-band, 4-class start that `ackd eval` scores as PyTorch does and `ackd train -train_init`
starts from (after 4 Adam steps at lr 1e-4 no weight has moved by more than Adam's bound), and whose
trained checkpoint exports into torchvision's own resnet18; without them, or
into a model of another architecture, one line names what does not fit.

analysis/torch_gallery.py with a torchvision resnet18 of its own 6-class label space as an external
teacher: its gallery's logits are the model's, pooled into the dataset's MS classes by a class map
(scipy's logsumexp as the reference; a class without a model class at the sample's lowest logit
minus 50), its embedding the model's pooled features; `ackd distill` then runs from it; a bad
--model or class map is one line.

  torch_interop_checks.py --repo DIR --ackd ACKD --mpirun "mpirun --oversubscribe -n" --out DIR
                         --part export|import|gallery"""
import argparse
import contextlib
import io
import json
import os
import runpy
import shlex
import shutil
import subprocess
import sys
import traceback

import h5py
import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for checklib
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis"))
import ackd_torch  # noqa: E402
import checklib  # noqa: E402

check = checklib.Checks("torch_interop")
# The bound --verify enforces (the issue's): float32 forward passes of the same weights, summed in
# other orders by oneDNN's and PyTorch's kernels. Rounding errors of one pass are random-walk sums of
# 2^-24-sized terms over each layer's fan-in, relative to its activations: measured 3e-7 to 7e-7 of
# the largest logit here (AMD EPYC, AVX-512), 15x inside the bound; another CPU's kernels change the
# order of the sums, not their size.
TOLERANCE = 1e-5
MODELS = [  # name, role, architecture, width (ResNet-18 at width 1: the import part trains and exports it)
    ("resnet34", "teacher", "resnet34", 0.25),
    ("mobilenetv2", "student", "mobilenetv2", 0.5),
    ("shufflenetv2", "student", "shufflenetv2", 0.5),
]


def run(args, words, **kw):
    r = subprocess.run(shlex.split(args.mpirun) + ["2", args.ackd] + words + ["-quiet"], capture_output=True,
                       text=True, **kw)
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-2000:])
        sys.exit(check.summary(f"ackd {words[0]} failed"))
    return r


def in_process(args, name, *words):
    """analysis/NAME run as __main__ in this process: a CompletedProcess with its exit code and output.
    A new interpreter spends ~2 s importing PyTorch again, so each script runs once as a process of
    its own (script(), below: the CLI as users start it) and its other runs, the refusals among them,
    run here."""
    path = os.path.join(args.repo, "analysis", name)
    out, err, argv, code = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = [path, *words]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except Exception:  # an unexpected failure is the script's defect: its traceback fails the check
        code = 1
        err.write(traceback.format_exc())
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess([path, *words], code, out.getvalue(), err.getvalue())


def script(args, name, *words):
    """analysis/NAME as its own process, as a user runs it."""
    return subprocess.run(["/usr/bin/python3", os.path.join(args.repo, "analysis", name), *words],
                          capture_output=True, text=True)


def model_tensors(path):
    with h5py.File(path, "r") as f:
        found = {}
        f["model"].visititems(lambda n, o: found.__setitem__(n.replace("/", "."), np.asarray(o, dtype=np.float64))
                              if isinstance(o, h5py.Dataset) else None)
    return found


def check_import(args, data):
    out = os.path.join(args.out, "import")
    os.makedirs(out)
    torch.manual_seed(7)
    imagenet = torchvision.models.resnet18()  # 3 bands, 1000 classes: what a user downloads
    pt = os.path.join(out, "resnet18_imagenet.pt")
    torch.save(imagenet.state_dict(), pt)
    init = os.path.join(out, "init.h5")
    common = ["--arch", "resnet18", "--bands", "10", "--classes", "4"]
    r = script(args, "import_torch.py", pt, "-o", init, *common, "--adapt-stem", "--fresh-head")
    check(r.returncode == 0, f"import: {(r.stdout + r.stderr).strip()}")
    if r.returncode != 0:
        return
    mine = model_tensors(init)
    source = {k: v.double().numpy() for k, v in imagenet.state_dict().items()}
    stem = source["conv1.weight"]
    expect = np.repeat(stem.mean(1, keepdims=True), 10, axis=1) * 3 / 10
    check(np.allclose(mine["conv1.weight"].reshape(expect.shape), expect, rtol=1e-6, atol=1e-9),
          "import: the stem's 3-band filters become their band mean x 3/10 on 10 bands")
    same = sorted(set(mine) - {"conv1.weight", "fc.weight", "fc.bias"})
    check(all(k in source and np.array_equal(mine[k], source[k].ravel().astype(np.float32)) for k in same),
          f"import: the other {len(same)} tensors are the weights' own, bit for bit")
    check(mine["fc.weight"].size == 4 * 512 and np.abs(mine["fc.weight"]).max() <= 1 / np.sqrt(512) + 1e-7,
          "import: the head is fresh, 4 x 512, within PyTorch's default bound 1/sqrt(512)")

    # ackd reads the file as the checkpoint of that network: eval's logits are PyTorch's.
    evaluation = os.path.join(out, "eval_init.h5")
    run(args, ["eval", "-eval_checkpoint", init, "-eval_data", data, "-eval_output", evaluation])
    net, _ = ackd_torch.load_checkpoint(init)
    with h5py.File(evaluation, "r") as e, h5py.File(data, "r") as f:
        rows = np.sort(np.asarray(e["index"]))
        images = torch.from_numpy(np.asarray(f["ms"]["images"][rows]))
        reference = np.asarray(e["logits"], dtype=np.float64)[np.argsort(np.asarray(e["index"]))]
    with torch.no_grad():
        error = np.abs(net(images).double().numpy() - reference).max() / np.abs(reference).max()
    check(error <= TOLERANCE, f"import: ackd eval of the imported start agrees with PyTorch ({error:.1e})")

    # train starts from it. Adam moves a weight by at most lr (1 - b1) / sqrt(1 - b2) = 3.16 lr a step
    # (Kingma and Ba, section 2.1), so 4 steps at lr 1e-4 stay within 1.3e-3 of the start, where a
    # fresh initialisation differs by the weights' own size (up to 0.04 in layer 4).
    directory = os.path.join(out, "teacher")
    run(args, ["train", "-train_data", data, "-train_dir", directory, "-teacher_arch", "resnet18", "-teacher_width",
               "1", "-train_init", init, "-train_epochs", "1", "-train_batch", "32", "-train_lr", "1e-4",
               "-train_gallery", "false"])
    trained = model_tensors(os.path.join(directory, "best.h5"))
    moved = max(np.abs(trained[k] - mine[k]).max() for k in mine if k.endswith(".weight") and "bn" not in k
                and "downsample.1" not in k)
    with h5py.File(os.path.join(directory, "best.h5"), "r") as f:
        steps = int(f.attrs["step"])
    bound = steps * checklib.adam_step_bound(1e-4)
    check(moved <= bound, f"train -train_init: after {steps} steps at lr 1e-4 the largest weight change is "
          f"{moved:.2e} (<= {bound:.1e})")

    # The trained ResNet-18 at width 1 goes back out, into torchvision's own resnet18.
    trained_eval = os.path.join(directory, "eval_test.h5")
    run(args, ["eval", "-eval_checkpoint", os.path.join(directory, "best.h5"), "-eval_output", trained_eval])
    pt_out = os.path.join(out, "trained.pt")
    r = in_process(args, "export_torch.py", os.path.join(directory, "best.h5"), "-o", pt_out, "--verify",
                   trained_eval, "--tolerance", str(TOLERANCE))
    check(r.returncode == 0, f"export of the trained resnet18: {(r.stdout + r.stderr).strip().splitlines()[-1:]}")
    if r.returncode == 0:
        tv = torchvision.models.resnet18(num_classes=4)
        tv.conv1 = torch.nn.Conv2d(10, 64, 7, 2, 3, bias=False)
        missing = tv.load_state_dict(torch.load(pt_out), strict=True)
        trained_net, _ = ackd_torch.load_checkpoint(os.path.join(directory, "best.h5"))
        with torch.no_grad():
            same = torch.equal(tv.eval()(images), trained_net(images))
        check(not missing.missing_keys and same, "the exported resnet18 loads into torchvision.models.resnet18 "
              "itself, the same logits")

    # What does not fit is refused with one line.
    for words, expect in [
        ([], "tensor 'conv1.weight' is (64, 3, 7, 7) in the weights, ackd's resnet18 needs (64, 10, 7, 7); "
             "--adapt-stem"),
        (["--adapt-stem"], "tensor 'fc.weight' is (1000, 512) in the weights, ackd's resnet18 needs (4, 512); "
                           "--fresh-head"),
    ]:
        r = in_process(args, "import_torch.py", pt, "-o", os.path.join(out, "bad.h5"), *common, *words)
        err = r.stderr.strip()
        check(r.returncode == 1 and "\n" not in err and expect in err and not os.path.exists(os.path.join(out, "bad.h5")),
              f"import {' '.join(words) or 'without options'}: one line, nothing written: {err}")
    r = in_process(args, "import_torch.py", pt, "-o", os.path.join(out, "bad.h5"), "--arch", "resnet34", "--bands",
                   "10", "--classes", "4", "--adapt-stem", "--fresh-head")
    check(r.returncode == 1 and "the weights have no tensor 'layer1.2.conv1.weight'" in r.stderr,
          f"import as resnet34: one line: {r.stderr.strip()}")
    wrong = subprocess.run(shlex.split(args.mpirun) + ["2", args.ackd, "train", "-train_data", data, "-train_dir",
                                                       os.path.join(out, "wrong"), "-teacher_arch", "resnet34",
                                                       "-teacher_width", "0.25", "-train_init", init, "-quiet"],
                           capture_output=True, text=True)
    line = [l for l in wrong.stderr.splitlines() if "error" in l]
    check(wrong.returncode == 2 and len(line) == 1 and "-train_init" in line[0] and "holds a resnet18 at width 1" in line[0]
          and "the model is a resnet34 at width 0.25" in line[0], f"train -train_init of another model: {line}")


def check_gallery(args, data):
    out = os.path.join(args.out, "gallery")
    os.makedirs(out)
    torch.manual_seed(3)
    net = torchvision.models.resnet18(num_classes=6)
    net.conv1 = torch.nn.Conv2d(10, 64, 7, 2, 3, bias=False)
    weights = os.path.join(out, "teacher.pt")
    torch.save(net.state_dict(), weights)
    factory = os.path.join(out, "teacher_model.py")
    with open(factory, "w") as f:
        f.write("import torch\nimport torchvision\n\n\ndef teacher():\n"
                "    net = torchvision.models.resnet18(num_classes=6)\n"
                "    net.conv1 = torch.nn.Conv2d(10, 64, 7, 2, 3, bias=False)\n"
                f"    net.load_state_dict(torch.load({weights!r}))\n    return net\n")
    with h5py.File(data, "r") as f:
        names = [c.decode() for c in f["ms/classes"][...]]
        rows = np.flatnonzero(np.asarray(f["ms/split"]) == 0)
        images = torch.from_numpy(np.asarray(f["ms/images"][rows]))
        labels = np.asarray(f["ms/labels"])[rows]
    # model classes 0 and 1 pool into the first MS class; 2 and 3 are the next two; 4 and 5 map to
    # nothing; the last MS class has no model class
    class_map = os.path.join(out, "classes.csv")
    with open(class_map, "w") as f:
        f.write(f"# model class, dataset class\n0,{names[0]}\n1,{names[0]}\n2,{names[1]}\n3,{names[2]}\n")
    gallery = os.path.join(out, "gallery.h5")
    r = script(args, "torch_gallery.py", data, "-o", gallery, "--model", f"{factory}:teacher", "--class-map",
               class_map, "--embedding-of", "fc")
    check(r.returncode == 0, f"gallery: {(r.stdout + r.stderr).strip()}")
    if r.returncode != 0:
        return
    from scipy.special import logsumexp
    net.eval()
    with torch.no_grad():
        z = net(images).double().numpy()
        x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
        pooled = torch.flatten(net.avgpool(net.layer4(net.layer3(net.layer2(net.layer1(x))))), 1).numpy()
    expect = np.stack([logsumexp(z[:, [0, 1]], axis=1), z[:, 2], z[:, 3], z.min(1) - 50], axis=1)
    with h5py.File(gallery, "r") as g:
        got = np.asarray(g["gallery/logits"], dtype=np.float64)
        error = np.abs(got - expect).max() / np.abs(expect).max()
        check(got.shape == expect.shape and error <= 1e-6, f"gallery logits: the model's, pooled by the class map "
              f"({got.shape}, relative error {error:.1e} against scipy's logsumexp)")
        emb = np.asarray(g["gallery/embedding"])
        check(emb.shape == pooled.shape and np.abs(emb - pooled).max() <= 1e-6 * np.abs(pooled).max(),
              f"gallery embedding: the input of fc, {emb.shape}")
        check(np.array_equal(g["gallery/index"][...], rows) and np.array_equal(g["gallery/labels"][...], labels)
              and [c.decode() for c in g["gallery/classes"][...]] == names,
              "gallery index, labels and classes: the MS training split in dataset order")

    # ackd distill from it, end to end: its own stand-in matcher, then the matching, then a student.
    embeddings = os.path.join(out, "embeddings.h5")
    subprocess.run(["/usr/bin/python3", os.path.join(args.repo, "tests", "jobs", "fake_ssm.py"), data, embeddings],
                   check=True, capture_output=True)
    match = os.path.join(out, "match.h5")
    run(args, ["match", "-match_input", embeddings, "-match_output", match, "-match_ot_topk", "3"])
    student = os.path.join(out, "student")
    run(args, ["distill", "-distill_data", data, "-distill_gallery", gallery, "-distill_match", match, "-distill_dir",
               student, "-student_arch", "smallcnn", "-student_width", "0.5", "-kd_method", "kd", "-distill_epochs",
               "1", "-distill_batch", "32"])
    with h5py.File(os.path.join(student, "metrics.h5"), "r") as m:
        check(np.all(np.isfinite(m["loss_kd"][...])) and float(m["loss_kd"][-1]) > 0,
              f"distill from the external gallery: KD loss {float(m['loss_kd'][-1]):.4f}, finite")

    for what, words, expect in [
        ("a missing function", ["--model", f"{factory}:nothere", "--class-map", class_map],
         f"'{factory}' has no function 'nothere'"),
        ("other classes and no class map", ["--model", f"{factory}:teacher"],
         "the model has 6 classes, /ms has 4; give --class-map"),
    ]:
        r = in_process(args, "torch_gallery.py", data, "-o", os.path.join(out, "bad.h5"), *words)
        err = r.stderr.strip()
        check(r.returncode == 1 and "\n" not in err and expect in err and not os.path.exists(os.path.join(out, "bad.h5")),
              f"gallery with {what}: one line, nothing written: {err}")
    bad_map = os.path.join(out, "bad.csv")
    open(bad_map, "w").write("0,Forrest\n")
    r = in_process(args, "torch_gallery.py", data, "-o", os.path.join(out, "bad.h5"), "--model",
                   f"{factory}:teacher", "--class-map", bad_map)
    check(r.returncode == 1 and f"{bad_map}:1: 'Forrest' is not a class of the collection" in r.stderr,
          f"a misspelt class in the class map: one line naming the file and line: {r.stderr.strip()}")


def main():
    p = argparse.ArgumentParser()
    for name in ("repo", "ackd", "mpirun", "out"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--part", choices=("export", "import", "gallery"), required=True,
                   help="one CTest test each, run side by side")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    torch.set_num_threads(1)
    data = os.path.join(args.out, "data.h5")
    run(args, ["synth", "-synth_output", data, "-synth_ms_count", "160", "-synth_rgb_count", "160", "-synth_size",
               "32", "-synth_classes", "4", "-synth_seed", "3"])
    if args.part != "export":
        (check_import if args.part == "import" else check_gallery)(args, data)
        return check.summary()

    for name, role, arch, width in MODELS:
        directory = os.path.join(args.out, name)
        prefix = "teacher" if role == "teacher" else "student"
        run(args, ["train", "-train_data", data, "-train_dir", directory, "-train_role", role, f"-{prefix}_arch", arch,
                   f"-{prefix}_width", str(width), "-train_epochs", "1", "-train_batch", "32", "-train_gallery", "false"])
        checkpoint = os.path.join(directory, "best.h5")
        evaluation = os.path.join(directory, "eval_test.h5")
        run(args, ["eval", "-eval_checkpoint", checkpoint, "-eval_output", evaluation])
        with h5py.File(evaluation, "r") as e:
            logits, prediction = np.asarray(e["logits"]), np.asarray(e["prediction"])
            check(logits.shape == (int(e.attrs["count"]), 4) and np.array_equal(logits.argmax(1), prediction),
                  f"{name}: eval's logits {logits.shape}, their argmax is its prediction")

        pt = os.path.join(directory, "model.pt")
        onnx_path = os.path.join(directory, "model.onnx")
        run_script = script if name == MODELS[0][0] else in_process  # one process of its own is enough
        r = run_script(args, "export_torch.py", checkpoint, "-o", pt, "--verify", evaluation, "--tolerance",
                       str(TOLERANCE), "--onnx", onnx_path)
        check(r.returncode == 0, f"{name}: exported and verified: {(r.stdout + r.stderr).strip().splitlines()[-1:]}")
        if r.returncode != 0:
            continue
        print("  " + r.stdout.strip().splitlines()[-1])
        config = json.load(open(os.path.join(directory, "model.json")))
        with h5py.File(data, "r") as f:
            classes = [c.decode() for c in f[config["modality"]]["classes"][...]]
        check(config["model"]["arch"] == arch and config["classes"] == classes and len(classes) == 4,
              f"{name}: model.json names the architecture and the classes of the model's collection")

        # The verify path, done here again by hand: a fresh network, the .pt loaded strictly.
        net = ackd_torch.build(**config["model"]).eval()
        net.load_state_dict(torch.load(pt), strict=True)
        with h5py.File(evaluation, "r") as e, h5py.File(data, "r") as f:
            rows = np.asarray(e["index"])
            images = torch.from_numpy(np.asarray(f[config["modality"]]["images"][np.sort(rows)]))
            reference = np.asarray(e["logits"], dtype=np.float64)[np.argsort(rows)]
        with torch.no_grad():
            mine = net(images).double().numpy()
        error = np.abs(mine - reference).max() / np.abs(reference).max()
        check(error <= TOLERANCE, f"{name}: PyTorch's logits within {error:.1e} of ackd eval's (bound {TOLERANCE:g})")

        try:
            import onnx
        except ImportError:
            check(False, "python3-onnx is installed (scripts/install-deps)")
        else:
            model = onnx.load(onnx_path)
            onnx.checker.check_model(model)
            check([i.name for i in model.graph.input][:1] == ["images"], f"{name}: the ONNX model passes onnx's checker")

    # A checkpoint that does not fit: a tensor taken out, then a tensor of the wrong size.
    source = os.path.join(args.out, "shufflenetv2", "best.h5")
    for case, edit, expect in [
        ("missing", lambda m: m.__delitem__("fc/bias"), "the checkpoint has no tensor 'fc.bias'"),
        ("resized", lambda m: (m.__delitem__("fc/bias"), m.create_dataset("fc/bias", data=np.zeros(3, np.float32))),
         "checkpoint tensor 'fc.bias' has 3 values"),
    ]:
        broken = os.path.join(args.out, f"{case}.h5")
        shutil.copy(source, broken)
        with h5py.File(broken, "r+") as f:
            edit(f["model"])
        r = in_process(args, "export_torch.py", broken, "-o", os.path.join(args.out, f"{case}.pt"))
        err = r.stderr.strip()
        check(r.returncode == 1 and "\n" not in err and expect in err, f"a {case} tensor: one line, exit 1: {err}")
        check(not os.path.exists(os.path.join(args.out, f"{case}.pt")), f"a {case} tensor: nothing written")
    r = in_process(args, "export_torch.py", data, "-o", os.path.join(args.out, "data.pt"))
    err = r.stderr.strip()
    check(r.returncode == 1 and "\n" not in err and "not an ackd model checkpoint" in err,
          f"a dataset given as the checkpoint: one line, exit 1: {err}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
