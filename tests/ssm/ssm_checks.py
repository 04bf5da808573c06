#!/usr/bin/python3
"""End-to-end checks of `ackd ssm` through mpirun.

  ssm_checks.py MODE --mpirun MPIRUN --ackd ACKD --out DIR

MODE:
  reference  smallcnn encoders, RGB images of another size than MS (8x8 vs 16x16), 4 steps on
             2 ranks: the embeddings file equals PyTorch's recomputation from the final
             checkpoint (encoders from analysis/ackd_torch.py, the heads written out
             here) within 1e-4; labels through /class_map/ms_to_rgb, index = the split-0 rows,
             unit norms; a second run is a no-op (the file is not rewritten); `ackd match`
             reads the file and matches within classes
  learning   300 steps (smallcnn): the loss of the last epoch is below half the first's, and the
             pseudo-RGB embedding of an MS training image retrieves that same image among all
             MS embeddings (cosine top-1) for at least 30% of them (chance: 1/280)
  ranks      1, 2 and 4 ranks, an uneven last batch of 1 sample (ranks without samples):
             the same losses and embeddings within 1e-4
  standardize  -ssm_standardize (the default): the embeddings equal, bitwise, those of
             -ssm_standardize false on a copy whose images NumPy standardised by the file's
             band_mean and band_std, and those of a streaming run (-h5_streaming); a file without
             the statistics, and a run's directory with the other -ssm_standardize, are refused in
             one line; on a paired world (ackd synth -synth_paired)
             the RGB embedding ranks its own ground's MS embedding in the nearest third of its
             class's, where without standardising it ranks it no better than chance
"""
import argparse
import os
import pathlib
import shutil
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS), str(TESTS.parent / "analysis")]  # checklib; ackd_torch
import checklib  # noqa: E402
from ackd_torch import MLP, SmallCNN  # noqa: E402  (the encoders as torchvision-style modules)

check = checklib.Checks("ssm_checks")
TOL = 1e-4
torch.set_num_threads(1)


def run(args, np_, cmd, expect=0):
    return checklib.run_ackd(args.mpirun, np_, args.ackd, cmd, expect)


def synth(args, path, ms=400, rgb=300, size=16):
    run(args, 2, ["synth", "-synth_output", path, "-synth_ms_count", str(ms), "-synth_rgb_count", str(rgb),
                  "-synth_size", str(size), "-synth_seed", "5", "-synth_force", "-quiet"])


def standardized(f, side, x):
    """Images of /side standardised as ackd does: float32 (x - mean) * (1 / std), std 0 only centred."""
    mean = f[f"{side}/band_mean"][()]
    std = f[f"{side}/band_std"][()]
    scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0)
    return ((x - mean.astype(np.float32)[None, :, None, None]) * scale.astype(np.float32)[None, :, None, None]).astype(
        np.float32)


def shrink_rgb(path, out):
    """The same dataset with its RGB images average-pooled 2x2 (another size than MS)."""
    shutil.copyfile(path, out)
    with h5py.File(out, "r+") as f:
        g = f["rgb"]
        x = g["images"][()]
        n, c, h, w = x.shape
        small = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5)).astype(np.float32)
        del g["images"]
        g.create_dataset("images", data=small, chunks=(1, c, h // 2, w // 2))
        g.attrs["height"], g.attrs["width"] = h // 2, w // 2


def group_state(f, group):
    """A checkpoint group as a state_dict (ackd's names are PyTorch's)."""
    state = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            value = obj[()]
            shape = tuple(obj.attrs["shape"]) if "shape" in obj.attrs else value.shape
            state[name.replace("/", ".")] = torch.tensor(value.reshape(shape))

    f[group].visititems(visit)
    return state


def load(net, state, what):
    mine = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    check(mine == set(state), f"{what}: checkpoint entries are exactly the module's state_dict")
    net.load_state_dict(state, strict=False)
    return net.eval()


def head(state, name, x):
    p = x @ state[f"{name}.projection.weight"].t() + state[f"{name}.projection.bias"]
    f = F.gelu(p) @ state[f"{name}.fc.weight"].t() + state[f"{name}.fc.bias"]
    e = F.layer_norm(p + f, (p.shape[1],), state[f"{name}.layer_norm.weight"], state[f"{name}.layer_norm.bias"],
                     eps=1e-5)
    return F.normalize(e, dim=1)


def encoders(ckpt, arch, ms_shape, width):
    """The final MS and pseudo-RGB encoders and the heads' parameters, from best.h5."""
    with h5py.File(ckpt, "r") as f:
        classes, bands = int(f.attrs["classes"]), ms_shape[1]
        state_ms, state_rgb, heads = group_state(f, "ms_encoder"), group_state(f, "rgb_encoder"), group_state(f, "heads")
        rgb_bands = [int(b) - 1 for b in f.attrs["rgb_bands"]]
    if arch == "smallcnn":
        ms, rgb = SmallCNN(bands, classes, width), SmallCNN(3, classes, width)
    else:
        side = ms_shape[2] * ms_shape[3]
        ms, rgb = MLP(bands * side, classes, width), MLP(3 * side, classes, width)
    return load(ms, state_ms, "ms_encoder"), load(rgb, state_rgb, "rgb_encoder"), heads, rgb_bands


def embed(net, heads, name, x):
    with torch.no_grad():
        return head(heads, name, net.outputs(torch.tensor(x))[1]).numpy()


def ssm_cmd(data, directory, arch, width, extra=(), quiet=True):
    return ["ssm", "-ssm_data", data, "-ssm_dir", directory, "-ssm_arch", arch, "-ssm_width", str(width), *extra] + (
        ["-quiet"] if quiet else [])


def reference(args):
    base, data = os.path.join(args.out, "s.h5"), os.path.join(args.out, "small_rgb.h5")
    synth(args, base, ms=300, rgb=200)
    shrink_rgb(base, data)
    d = os.path.join(args.out, "ref")
    shutil.rmtree(d, ignore_errors=True)  # a finished run left by an earlier build would be resumed as done
    run(args, 2, ssm_cmd(data, d, "smallcnn", 0.25, ["-ssm_max_steps", "4", "-ssm_batch", "32", "-ssm_dim", "32"]))
    emb = os.path.join(d, "embeddings.h5")
    with h5py.File(data, "r") as f:
        ms_x, ms_y, ms_split = f["ms/images"][()], f["ms/labels"][()], f["ms/split"][()]
        rgb_x, rgb_y, rgb_split = f["rgb/images"][()], f["rgb/labels"][()], f["rgb/split"][()]
        ms_to_rgb = f["class_map/ms_to_rgb"][()]
        ms_x, rgb_x = standardized(f, "ms", ms_x), standardized(f, "rgb", rgb_x)
    ms_net, rgb_net, heads, _ = encoders(os.path.join(d, "best.h5"), "smallcnn", ms_x.shape, 0.25)
    t_rows, s_rows = np.flatnonzero(ms_split == 0), np.flatnonzero(rgb_split == 0)
    want = {"teacher": embed(ms_net, heads, "ms_head", ms_x[t_rows]),
            "student": embed(rgb_net, heads, "rgb_head", rgb_x[s_rows])}
    with h5py.File(emb, "r") as f:
        check(f.attrs["ackd_format"] in ("embeddings", b"embeddings"), "ackd_format is 'embeddings'")
        for side in ("teacher", "student"):
            got = f[f"{side}/features"][()]
            check(got.dtype == np.float32 and got.shape == want[side].shape,
                  f"/{side}/features: float32 {want[side].shape}")
            err = float(np.abs(got - want[side]).max())
            check(err <= TOL, f"/{side}/features = PyTorch's recomputation: max |diff| {err:.2e} <= {TOL}")
            norms = np.linalg.norm(got.astype(np.float64), axis=1)
            check(np.abs(norms - 1).max() < 1e-5, f"/{side}/features rows have unit norm")
        check(np.array_equal(f["teacher/index"][()], t_rows), "/teacher/index = the MS split-0 rows")
        check(np.array_equal(f["student/index"][()], s_rows), "/student/index = the RGB split-0 rows")
        mapped = np.where(ms_to_rgb[ms_y[t_rows]] >= 0, ms_to_rgb[ms_y[t_rows]], -1)
        check(np.array_equal(f["teacher/labels"][()], mapped) and (mapped == -1).any(),
              "/teacher/labels = MS labels through /class_map/ms_to_rgb (with -1 for MS-only classes)")
        check(np.array_equal(f["student/labels"][()], rgb_y[s_rows]), "/student/labels = the RGB labels")
        check(f["teacher/labels"].dtype == np.int32 and f["teacher/index"].dtype == np.int64, "int32 labels, int64 index")

    before = os.stat(emb).st_mtime_ns
    proc = run(args, 2, ssm_cmd(data, d, "smallcnn", 0.25, ["-ssm_max_steps", "4", "-ssm_batch", "32", "-ssm_dim",
                                                            "32"], quiet=False))
    check(os.stat(emb).st_mtime_ns == before and "nothing to do" in proc.stdout,
          "a second run of the finished stage leaves embeddings.h5 alone")

    match = os.path.join(args.out, "match.h5")
    run(args, 2, ["match", "-match_input", emb, "-match_output", match, "-match_solver", "argmin", "-quiet"])
    with h5py.File(match, "r") as m, h5py.File(emb, "r") as f:
        top = m["match/teacher_index"][()][:, 0]
        s_lab, t_lab = f["student/labels"][()], f["teacher/labels"][()]
        has = top >= 0
        check(has.sum() > 0 and np.all(t_lab[top[has]] == s_lab[has]),
              f"ackd match reads the file: {int(has.sum())} students matched, each within its class")


def learning(args):
    data = os.path.join(args.out, "s.h5")
    synth(args, data)
    d = os.path.join(args.out, "learn")
    shutil.rmtree(d, ignore_errors=True)
    run(args, 2, ssm_cmd(data, d, "smallcnn", 0.5, ["-ssm_max_steps", "300", "-ssm_batch", "64"]))
    with h5py.File(os.path.join(d, "metrics.h5"), "r") as f:
        loss = f["train_loss"][()]
    check(loss[-1] < 0.5 * loss[0], f"train loss {loss[0]:.3f} (epoch 1) -> {loss[-1]:.3f} (epoch {len(loss)}), "
          "below half")
    with h5py.File(data, "r") as f:
        x, split = standardized(f, "ms", f["ms/images"][()]), f["ms/split"][()]
    x = x[split == 0]
    ms_net, rgb_net, heads, bands = encoders(os.path.join(d, "best.h5"), "smallcnn", x.shape, 0.5)
    e_ms = embed(ms_net, heads, "ms_head", x)
    e_rgb = embed(rgb_net, heads, "rgb_head", np.ascontiguousarray(x[:, bands]))
    hits = float(np.mean(np.argmax(e_rgb @ e_ms.T, axis=1) == np.arange(len(x))))
    check(hits >= 0.3, f"pseudo-RGB -> MS retrieval of the same image: top-1 {hits:.3f} >= 0.3 "
          f"(chance {1 / len(x):.4f}, {len(x)} images)")


def ranks(args):
    data = os.path.join(args.out, "s.h5")
    synth(args, data)
    with h5py.File(data, "r") as f:
        ntrain = int((f["ms/split"][()] == 0).sum())
    batch = next(b for b in range(ntrain // 3, ntrain) if ntrain % b == 1)  # last batch of 1: ranks without samples
    check(ntrain % batch == 1, f"{ntrain} training samples in batches of {batch}: a last batch of 1")
    result = {}
    for np_ in (1, 2, 4):
        d = os.path.join(args.out, f"np{np_}")
        shutil.rmtree(d, ignore_errors=True)
        run(args, np_, ssm_cmd(data, d, "mlp", 0.25, ["-ssm_epochs", "1", "-ssm_batch", str(batch)]))
        with h5py.File(os.path.join(d, "embeddings.h5"), "r") as f, h5py.File(os.path.join(d, "metrics.h5")) as m:
            result[np_] = (f["teacher/features"][()], f["student/features"][()], m["train_loss"][()])
    for np_ in (2, 4):
        err = max(float(np.abs(a - b).max()) for a, b in zip(result[1], result[np_]))
        check(err <= TOL, f"{np_} ranks = 1 rank: embeddings and losses within {err:.2e} <= {TOL}")


def own_ground_rank(path):
    """Median over students of where their own ground's teacher ranks by cosine among their class's
    teachers (0 nearest, 0.5 chance), from an embeddings file of a paired world."""
    with h5py.File(path, "r") as f:
        s, t = f["student/features"][()].astype(np.float64), f["teacher/features"][()].astype(np.float64)
        s_index, t_index = f["student/index"][()], f["teacher/index"][()]
        s_lab, t_lab = f["student/labels"][()], f["teacher/labels"][()]
    row = {int(r): j for j, r in enumerate(t_index)}
    ranks = []
    for i, r in enumerate(s_index):
        j = row.get(int(r), -1)
        if j < 0:
            continue
        same = np.flatnonzero(t_lab == s_lab[i])
        sim = t[same] @ s[i]
        ranks.append(np.mean(sim > t[j] @ s[i]))
    return float(np.median(ranks))


def standardize(args):
    data = os.path.join(args.out, "s.h5")
    synth(args, data)
    pre = os.path.join(args.out, "pre.h5")
    shutil.copyfile(data, pre)
    with h5py.File(pre, "r+") as f:
        for side in ("ms", "rgb"):
            f[f"{side}/images"][...] = standardized(f, side, f[f"{side}/images"][()])
    short = ["-ssm_max_steps", "6", "-ssm_batch", "32", "-ssm_dim", "32"]
    runs = {"standardised by ackd": (data, []), "by NumPy, then -ssm_standardize false": (pre, ["-ssm_standardize",
                                                                                              "false"]),
            "streaming": (data, ["-h5_streaming", "true"])}
    got = {}
    for name, (path, extra) in runs.items():
        d = os.path.join(args.out, name.split()[0].strip(","))
        shutil.rmtree(d, ignore_errors=True)
        run(args, 2, ssm_cmd(path, d, "smallcnn", 0.25, short + extra))
        with h5py.File(os.path.join(d, "embeddings.h5"), "r") as f:
            got[name] = (f["teacher/features"][()], f["student/features"][()], int(f.attrs["standardized"]))
    first = got["standardised by ackd"]
    check(first[2] == 1, "embeddings.h5 records standardized = 1")
    for name in list(runs)[1:]:
        same = all(np.array_equal(a, b) for a, b in zip(first[:2], got[name][:2]))
        check(same, f"embeddings standardised by ackd = {name}, bitwise")

    again = run(args, 1, ssm_cmd(data, os.path.join(args.out, "standardised"), "smallcnn", 0.25,
                                 short + ["-ssm_standardize", "false"]), expect=2)
    lines = [l for l in again.stderr.splitlines() if l.startswith("ackd")]
    check(len(lines) == 1 and "is a matcher trained with -ssm_standardize true" in lines[0],
          "the finished run's directory with the other -ssm_standardize: one line, exit 2 (not taken as done)")

    bare = os.path.join(args.out, "no_stats.h5")
    shutil.copyfile(data, bare)
    with h5py.File(bare, "r+") as f:
        del f["rgb/band_std"]
    proc = run(args, 1, ssm_cmd(bare, os.path.join(args.out, "bare"), "smallcnn", 0.25, short), expect=1)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ackd")]
    check(len(lines) == 1 and "/rgb has no band_mean and band_std" in lines[0],
          "a file without band statistics: one line naming it, exit 1")

    paired = os.path.join(args.out, "paired.h5")
    run(args, 2, ["synth", "-synth_output", paired, "-synth_ms_count", "600", "-synth_rgb_count", "600",
                  "-synth_classes", "4", "-synth_overlap", "1", "-synth_seed", "3", "-synth_paired", "-synth_force",
                  "-quiet"])
    rank = {}
    for flag in ("true", "false"):
        d = os.path.join(args.out, f"paired_{flag}")
        shutil.rmtree(d, ignore_errors=True)
        run(args, 2, ssm_cmd(paired, d, "smallcnn", 0.5, ["-ssm_epochs", "6", "-ssm_batch", "32",
                                                          "-ssm_standardize", flag]))
        rank[flag] = own_ground_rank(os.path.join(d, "embeddings.h5"))
    check(rank["true"] < 1 / 3, f"standardised, the own ground ranks at {rank['true']:.3f} (median) of its class's "
          "teachers, nearer than a third")
    check(rank["false"] > 0.4, f"unstandardised, at {rank['false']:.3f}: chance (0.5) or near it")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["reference", "learning", "ranks", "standardize"])
    p.add_argument("--mpirun", required=True, help="launcher with the flag that precedes the rank count")
    p.add_argument("--ackd", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    args.mpirun = args.mpirun.split()
    os.makedirs(args.out, exist_ok=True)
    {"reference": reference, "learning": learning, "ranks": ranks, "standardize": standardize}[args.mode](args)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
