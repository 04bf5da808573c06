"""Shared reading of ackd's files (docs/FORMATS.md) for the analysis scripts: open a file of an
expected kind, read metrics, eval, match and checkpoint contents, name methods and pairs, and
write figures without a display (matplotlib's Agg backend)."""
import argparse
import os
import re
import sys

import h5py
import numpy as np

# The paper's architecture pairs (teacher/student), in its table's column order.
PAIRS = ["R/R", "M/M", "S/S", "R/M", "R/S", "M/S"]
ARCH_LETTER = {"resnet34": "R", "mobilenetv2": "M", "shufflenetv2": "S"}


def die(message):
    """One line on stderr naming the problem, exit 1 (as ackd's own errors)."""
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    sys.exit(1)


def parser(description):
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def open_file(path, kind):
    """Opens an ackd HDF5 file read-only and checks its root attribute ackd_format: `kind`, or one
    of a tuple of kinds."""
    if not os.path.exists(path):
        die(f"file '{path}' not found")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        die(f"cannot open '{path}' as HDF5 ({e})")
    found = text(f.attrs.get("ackd_format", ""))
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if found not in kinds:
        wanted = " or ".join(repr(k) for k in kinds)
        die(f"'{path}' is {'an ackd ' + repr(found) + ' file' if found else 'not an ackd file'}, expected {wanted}")
    return f


def text(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value[()])
    return str(value)


def strings(dataset):
    return [text(v) for v in dataset[...]]


def read_metrics(path):
    """{name: float64 vector} for every per-epoch quantity, and the root attributes."""
    with open_file(path, "metrics") as f:
        series = {k: np.asarray(f[k][...], dtype=np.float64) for k in f if isinstance(f[k], h5py.Dataset)}
        attrs = {k: text(v) if isinstance(v, (bytes, str)) else v for k, v in f.attrs.items()}
    if "epoch" not in series:
        die(f"'{path}' has no 'epoch' vector")
    return series, attrs


def read_eval(path):
    """The eval file as a dict: root attrs plus the arrays that exist."""
    with open_file(path, "eval") as f:
        out = {k: text(v) if isinstance(v, (bytes, str)) else v for k, v in f.attrs.items()}
        for k in ("confusion", "per_class_accuracy", "per_class_count", "prediction", "index", "per_class_ap", "logits",
                  "score"):
            if k in f:
                out[k] = f[k][...]
        if "classes" in f:
            out["classes"] = strings(f["classes"])
    return out


def read_match(path):
    """teacher_index (N_s, k), weight (N_s, k) and the /ot attributes of a match file."""
    with open_file(path, "match") as f:
        index, weight = f["match/teacher_index"][...], f["match/weight"][...]
        ot = {k: text(v) if isinstance(v, (bytes, str)) else v for k, v in f["ot"].attrs.items()} if "ot" in f else {}
        teachers = len(f["ot/g"]) if "ot/g" in f else int(index.max()) + 1
    return index, weight, ot, teachers


def read_checkpoint_matching(path, students):
    """The matching a distill checkpoint keeps (DynM's latest): teacher indices and weights, (students, k),
    and the checkpoint's epoch."""
    with open_file(path, "checkpoint") as f:
        if "optim/state.match_index" not in f:
            die(f"'{path}' keeps no matching (/optim/state.match_index): is it a checkpoint of ackd distill?")
        index = np.asarray(f["optim/state.match_index"]).astype(np.int64)
        weight = np.asarray(f["optim/state.match_weight"], dtype=np.float64)
        epoch = int(f.attrs.get("epoch", -1))
    if index.size % students:
        die(f"'{path}': a matching of {index.size} entries is not k per student for {students} students; give "
            "the dataset the run trained on")
    k = index.size // students
    return index.reshape(students, k), weight.reshape(students, k), epoch


def top_teacher(index, weight):
    """Each student's top-1 teacher, -1 for none: the first live column, since ackd keeps each
    student's teachers sorted by decreasing weight."""
    live = (index >= 0) & (weight > 0)
    return np.where(live.any(1), index[np.arange(len(index)), live.argmax(1)], -1)


def read_embeddings(path):
    """Labels (student class space) per side from an embeddings file (or any ackd match input)."""
    with h5py.File(path, "r") as f:
        return {side: f[side + "/labels"][...] if side + "/labels" in f else None for side in ("student", "teacher")}


def checkpoint_layers(path):
    """{layer: {param: float64 array}} from /model/<layer>/<param>, in file order."""
    layers = {}
    with open_file(path, "checkpoint") as f:
        if "model" not in f:
            die(f"'{path}' has no /model group")

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                layer, _, param = name.rpartition("/")
                layers.setdefault(layer or "(root)", {})[param] = np.asarray(obj[...], dtype=np.float64)
        f["model"].visititems(visit)
        state = f["state"].attrs if "state" in f else {}
        step = int(f.attrs["step"]) if "step" in f.attrs else int(state["step"]) if "step" in state else None
    return layers, step


def pair_of(teacher_arch, student_arch):
    return f"{ARCH_LETTER.get(teacher_arch, '?')}/{ARCH_LETTER.get(student_arch, '?')}"


def method_and_pair(path, attrs):
    """How a result names its method and pair: the eval file's root attributes `method` and
    `pair` (e.g. "dkd+sembridge", "R/M") when present, else the run directory's name
    METHOD_TS (as the sweep templates write: {run}/sweep/dkd+sembridge_RM/eval_test.h5)."""
    if "method" in attrs and "pair" in attrs:
        return attrs["method"], attrs["pair"]
    name = os.path.basename(os.path.dirname(os.path.abspath(path)))
    m = re.fullmatch(r"(.+)_([RMS])([RMS])", name)
    if not m:
        return None, None
    return m.group(1), f"{m.group(2)}/{m.group(3)}"


def figure(*args, **kwargs):
    import matplotlib
    matplotlib.use("Agg")  # batch nodes have no display
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kwargs)


def save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def eval_role(path):
    """The role ("teacher", "student") an eval file records, or None."""
    with h5py.File(path, "r") as f:
        role = f.attrs.get("role")
    return role.decode() if isinstance(role, bytes) else role


def checkpoint_series(run_dir):
    """[(step, path)] of a run's checkpoints (RUN/checkpoints/ckpt_<step>.h5), oldest first. The
    trainer keeps the newest -*_ckpt_keep (3) of them; a long series needs a larger keep."""
    directory = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(directory):
        die(f"'{run_dir}' has no checkpoints/ directory; give the -train_dir or -distill_dir of a run")
    series = []
    for name in os.listdir(directory):
        m = re.fullmatch(r"ckpt_(\d+)\.h5", name)
        if m:
            series.append((int(m.group(1)), os.path.join(directory, name)))
    if not series:
        die(f"'{directory}' holds no checkpoint (ckpt_<step>.h5)")
    return sorted(series)


def write_csv(path, header, rows):
    import csv
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    print(f"wrote {path}")
