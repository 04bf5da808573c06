#!/usr/bin/python3
"""Runs every analysis script on fixture files (make_fixtures.py), real match files (ackd match,
sinkhorn and argmin on one problem) and real checkpoints (tests/ckpt), and checks what they
write against values computed here independently: PNGs exist and are PNGs, printed numbers and
the results table's cells match the raw data.
    check_analysis.py ANALYSIS_DIR FIXTURES PROBLEM OT_MATCH ARGMIN_MATCH CKPT_A CKPT_B OUT"""
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for checklib
import checklib  # noqa: E402

analysis, fixtures, problem, ot_match, argmin_match, ckpt_a, ckpt_b, out = sys.argv[1:9]
os.makedirs(out, exist_ok=True)
expected = json.load(open(os.path.join(fixtures, "expected.json")))
check = checklib.Checks("analysis scripts", print_passes=False)


def run(script, *args, code=0):
    p = subprocess.run(["/usr/bin/python3", os.path.join(analysis, script), *args], capture_output=True, text=True)
    check(p.returncode == code, f"{script} {' '.join(args)}: exit {p.returncode}, expected {code}: {p.stderr}")
    return p.stdout + p.stderr


def png(path):
    ok = os.path.exists(path) and os.path.getsize(path) > 1000 and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    check(ok, f"{path} is not a PNG of some size")


# every script has -h
for s in ("curves.py", "confusion.py", "match_view.py", "ckpt_layers.py", "results_table.py", "soft_labels.py",
          "neighbours.py"):
    check("usage:" in run(s, "-h"), f"{s} -h prints no usage")

# ---- curves
text = run("curves.py", f"{fixtures}/teacher/metrics.h5", f"{fixtures}/student_kd/metrics.h5", "-o", f"{out}/curves.png")
png(f"{out}/curves.png")
with h5py.File(f"{fixtures}/teacher/metrics.h5") as f:
    v = f["val_oa"][...]
    best = f"best val_oa {v.max():.4f} at epoch {int(f['epoch'][np.argmax(v)])}"
check(f"12 epochs, {best}" in text, f"curves: '{best}' not in: {text}")
check("expected 'metrics'" in run("curves.py", f"{fixtures}/eval_single/eval_test.h5", "-o", f"{out}/x.png", code=1),
      "curves accepts an eval file")

# ---- confusion
text = run("confusion.py", f"{fixtures}/eval_single/eval_test.h5", "-o", f"{out}/confusion.png")
png(f"{out}/confusion.png")
check(f"OA {expected['single']['oa']:.4f}" in text, f"confusion: OA {expected['single']['oa']:.4f} not in: {text}")
shown = sum(int(n) for n in re.findall(r"^\s+(\d+)\s+\S+ -> ", text, re.M))
check(shown <= expected["single"]["confusion_pairs"] and shown > 0, f"confusion: top pairs count {shown}")

# ---- match views, on real ackd match files
with h5py.File(ot_match) as a, h5py.File(argmin_match) as b, h5py.File(problem) as p:
    ia, ib = a["match/teacher_index"][...], b["match/teacher_index"][...]
    nt = len(a["ot/g"])
    ys, yt = p["student/labels"][...], p["teacher/labels"][...]
text = run("match_view.py", ot_match, "--compare", argmin_match, "--embeddings", problem, "-o", f"{out}/match.png")
png(f"{out}/match.png")
for name, idx in (("sinkhorn", ia), ("argmin", ib)):
    top = idx[:, 0][idx[:, 0] >= 0]
    r1 = np.bincount(top, minlength=nt)
    want = f"top-1 uses {int((r1 > 0).sum())}, max students per teacher {int(r1.max())}"
    line = [l for l in text.splitlines() if f"({name})" in l]
    check(line and want in line[0], f"match_view {name}: '{want}' not in {line}")
    s, t = np.nonzero(idx >= 0)
    check(line and f"same class {np.mean(yt[idx[s, t]] == ys[s]):.4f}" in line[0], f"match_view {name}: same class")
both = (ia[:, 0] >= 0) & (ib[:, 0] >= 0)
want = f"top-1 agreement {np.mean(ia[both, 0] == ib[both, 0]):.4f} over {int(both.sum())} students"
check(want in text, f"match_view: '{want}' not in: {text}")

# ---- match views on a paired world: a constructed one, whose students are noisy copies of their own
# ground's teacher, and a match file that keeps it at top-1 for the first half of the students
rng = np.random.default_rng(8)
nt, ns, d = 90, 60, 16
t_index = rng.permutation(200)[:nt]
t_lab = np.arange(nt) % 3
t_feat = rng.standard_normal((nt, d))
own = rng.permutation(nt)[:ns]
s_feat = t_feat[own] + 0.8 * rng.standard_normal((ns, d))
s_lab = t_lab[own].copy()
s_lab[-1] = (s_lab[-1] + 1) % 3  # a student whose index holds a scene of another class: not its ground
with h5py.File(f"{out}/paired_embeddings.h5", "w") as f:
    f["student/features"], f["student/labels"], f["student/index"] = s_feat, s_lab, t_index[own]
    f["teacher/features"], f["teacher/labels"], f["teacher/index"] = t_feat, t_lab, t_index
top = np.where(np.arange(ns) < ns // 2, own, (own + 3) % nt)  # the second half: another teacher of the same class
with h5py.File(f"{out}/paired_match.h5", "w") as f:
    f.attrs["ackd_format"] = "match"
    f["match/teacher_index"] = np.stack([top, own], axis=1)
    f["match/weight"] = np.full((ns, 2), 0.5)
text = run("match_view.py", f"{out}/paired_match.h5", "--embeddings", f"{out}/paired_embeddings.h5", "--paired",
           "-o", f"{out}/paired.png")
sn = s_feat / np.linalg.norm(s_feat, axis=1, keepdims=True)
tn = t_feat / np.linalg.norm(t_feat, axis=1, keepdims=True)
ranks = []
for i, j in enumerate(own[:-1]):
    same = np.flatnonzero(t_lab == t_lab[j])
    sims = tn[same] @ sn[i]  # the own teacher's similarity from the same product as the others'
    ranks.append(np.mean(sims > sims[same == j][0]))
want = (f"ranks at {np.median(ranks):.3f} (median; 0 nearest, 0.5 chance) of its class's teachers, first for "
        f"{np.mean(np.array(ranks) == 0):.4f}")
check(want in text and f"paired: {ns - 1} students with their own ground" in text,
      f"match_view --paired: '{want}' not in: {text}")
top1 = np.mean(np.arange(ns - 1) < ns // 2)
check(f"own ground top-1 {top1:.4f}, among the kept 1.0000" in text, f"match_view --paired: top-1 and kept shares: {text}")
check("--paired needs the dataset rows" in run("match_view.py", ot_match, "--embeddings", problem, "--paired", "-o",
                                                  f"{out}/x.png", code=1), "match_view --paired without index arrays")

# ---- soft labels of a constructed gallery, against scipy's softmax and entropy
from scipy.special import softmax as sp_softmax  # noqa: E402
from scipy.stats import entropy  # noqa: E402
K, per = 4, 50
g_lab = np.repeat(np.arange(K), per)
g_logits = 3.0 * np.eye(K)[g_lab] + rng.standard_normal((K * per, K))
with h5py.File(f"{out}/gallery.h5", "w") as f:
    f.attrs["ackd_format"] = "gallery"
    f["gallery/logits"], f["gallery/labels"] = g_logits.astype(np.float32), g_lab.astype(np.int32)
    f["gallery/classes"] = np.array([b"A", b"B", b"C", b"D"])
text = run("soft_labels.py", f"{out}/gallery.h5", "-T", "3", "--csv", f"{out}/soft.csv")
z32 = g_logits.astype(np.float32).astype(np.float64)
pT = sp_softmax(z32 / 3, axis=1)
mean_k = np.array([pT[g_lab == k].mean(axis=0) for k in range(K)])
kl_in = np.mean([entropy(pT[i], mean_k[g_lab[i]]) for i in range(len(g_lab))])
kl_between = np.mean([entropy(mean_k[a], mean_k[b]) for a in range(K) for b in range(K) if a != b])
share = sum(((pT[g_lab == k] - mean_k[k]) ** 2).sum() for k in range(K)) / ((pT - pT.mean(axis=0)) ** 2).sum()
want = (f"within-class KL to the class mean {kl_in:.4f}, between class means {kl_between:.4f}; within-class share "
        f"of the variance {share:.4f}")
check(want in text, f"soft_labels: '{want}' not in: {text}")
acc = np.mean(z32.argmax(axis=1) == g_lab)
check(f"all: accuracy {acc:.4f}" in text and len(open(f"{out}/soft.csv").read().splitlines()) == K + 1,
      f"soft_labels: accuracy {acc:.4f} and a CSV row per class: {text}")
check("must be positive" in run("soft_labels.py", f"{out}/gallery.h5", "-T", "0", code=1), "soft_labels: -T 0")

# ---- neighbours of a constructed mixed world, against loops over its scenes
K, n_ms, n_rgb = 4, 240, 120
w_ms_lab, w_rgb_lab = np.arange(n_ms) % K, np.arange(n_rgb) % K
rgb_to_ms = np.array([0, 1, 2, -1])  # RGB class 3 has no MS counterpart


def records(labels):
    other = rng.integers(0, K - 1, len(labels))
    return np.where(other >= labels, other + 1, other), rng.uniform(0, 0.4, len(labels))


ms_nb, ms_sh = records(w_ms_lab)
rgb_nb, rgb_sh = records(w_rgb_lab)
ms_split, rgb_split = np.where(np.arange(n_ms) % 5 == 4, 2, 0), np.where(np.arange(n_rgb) % 3 == 2, 1, 0)
with h5py.File(f"{out}/mixed.h5", "w") as f:
    f.attrs["ackd_format"] = "dataset"
    for side, lab, nb, sh, sp in (("ms", w_ms_lab, ms_nb, ms_sh, ms_split), ("rgb", w_rgb_lab, rgb_nb, rgb_sh, rgb_split)):
        f[f"{side}/labels"], f[f"{side}/split"] = lab.astype(np.int32), sp.astype(np.uint8)
        f[f"{side}/neighbour_class"], f[f"{side}/neighbour_share"] = nb.astype(np.int32), sh.astype(np.float32)
    f["class_map/rgb_to_ms"] = rgb_to_ms.astype(np.int32)
t_rows = np.flatnonzero(ms_split == 0)
t_lab, t_nb, t_sh = w_ms_lab[t_rows], ms_nb[t_rows], ms_sh[t_rows].astype(np.float32).astype(np.float64)
t_logits = (4.0 * np.eye(K)[t_lab] + 6.0 * t_sh[:, None] * np.eye(K)[t_nb] + 0.3 * rng.standard_normal((len(t_rows), K)))
with h5py.File(f"{out}/mixed_gallery.h5", "w") as f:
    f.attrs["ackd_format"] = "gallery"
    f["gallery/logits"], f["gallery/labels"] = t_logits.astype(np.float32), t_lab.astype(np.int32)
    f["gallery/index"] = t_rows.astype(np.int64)
s_rows = np.flatnonzero(rgb_split == 0)
m_index = np.full((len(s_rows), 2), -1, np.int64)
m_weight = np.zeros((len(s_rows), 2))
for s_, row in enumerate(s_rows):
    c = rgb_to_ms[w_rgb_lab[row]]
    if c >= 0:
        m_index[s_] = rng.choice(np.flatnonzero(t_lab == c), 2, replace=False)
        m_weight[s_] = (0.7, 0.3)
with h5py.File(f"{out}/mixed_match.h5", "w") as f:
    f.attrs["ackd_format"] = "match"
    f["match/teacher_index"], f["match/weight"] = m_index, m_weight
text = run("neighbours.py", f"{out}/mixed.h5", f"{out}/mixed_gallery.h5", f"{out}/mixed_match.h5", "-T", "2")
pT = sp_softmax(t_logits.astype(np.float32).astype(np.float64) / 2, axis=1)
mean_k = np.array([pT[t_lab == k].mean(axis=0) for k in range(K)])
dev = np.array([pT[i] - mean_k[t_lab[i]] for i in range(len(t_lab))])
groups = {}
for i in range(len(t_lab)):
    groups.setdefault((t_lab[i], t_nb[i], min(int(t_sh[i] / t_sh.max() * 4), 3)), []).append(i)
resid = dev.copy()
for members in groups.values():
    resid[members] -= dev[members].mean(axis=0)
within, total = (dev ** 2).sum(), ((pT - pT.mean(axis=0)) ** 2).sum()
shuffle_rng, order = np.random.default_rng(0), np.arange(len(t_lab))  # the script's: classes in order
for k in range(K):
    members = np.flatnonzero(t_lab == k)
    order[members] = members[shuffle_rng.permutation(len(members))]
null_groups = {}
for i in range(len(t_lab)):
    j = order[i]
    null_groups.setdefault((t_lab[i], t_nb[j], min(int(t_sh[j] / t_sh.max() * 4), 3)), []).append(i)
null_resid = dev.copy()
for members in null_groups.values():
    null_resid[members] -= dev[members].mean(axis=0)
want = (f"within-class share of the soft labels' variance {within / total:.4f}; of it, the neighbour records "
        f"explain {1 - (resid ** 2).sum() / within:.4f} (records shuffled within each class: "
        f"{1 - (null_resid ** 2).sum() / within:.4f})")
check(want in text, f"neighbours: '{want}' not in: {text}")
p_nb = np.mean([pT[i, t_nb[i]] for i in range(len(t_lab))])
p_other = np.mean([np.mean([pT[i, j] for j in range(K) if j not in (t_lab[i], t_nb[i])]) for i in range(len(t_lab))])
want = f"p(neighbouring class) at T {p_nb:.4f} against {p_other:.4f}"
check(want in text, f"neighbours: '{want}' not in: {text}")
agree, chance, matched, by_class = [], [], [], []
for s_, row in enumerate(s_rows):
    c, n = rgb_to_ms[w_rgb_lab[row]], rgb_to_ms[rgb_nb[row]]
    if c < 0 or n < 0:
        continue
    agree.append(t_nb[m_index[s_, 0]] == n)
    chance.append(np.mean(t_nb[t_lab == c] == n))
    matched.append(0.7 * pT[m_index[s_, 0], n] + 0.3 * pT[m_index[s_, 1], n])
    by_class.append(mean_k[c, n])
want = (f"{len(agree)} of {len(s_rows)} students have a teacher and a neighbouring class the MS collection has; "
        f"top-1 teacher with the student's neighbouring class {np.mean(agree):.4f}, a random teacher of its class "
        f"{np.mean(chance):.4f}")
check(want in text, f"neighbours: '{want}' not in: {text}")
want = f"from its matched teachers {np.mean(matched):.4f}, from its class's mean soft label {np.mean(by_class):.4f}"
check(want in text, f"neighbours: '{want}' not in: {text}")
e_rows = np.flatnonzero(rgb_split != 0)
e_pred = np.where(rng.uniform(size=len(e_rows)) < 1 - rgb_sh[e_rows], w_rgb_lab[e_rows], (w_rgb_lab[e_rows] + 1) % K)
with h5py.File(f"{out}/mixed_eval.h5", "w") as f:
    f.attrs["ackd_format"], f.attrs["modality"] = "eval", "rgb"
    f["index"], f["prediction"] = e_rows.astype(np.int64), e_pred.astype(np.int32)
text = run("neighbours.py", f"{out}/mixed.h5", f"{out}/mixed_gallery.h5", "--bins", "2", "--accuracy",
           f"{out}/mixed_eval.h5")
top = rgb_sh.astype(np.float32).max()
cells = []
for b in range(2):
    members = [i for i, r in enumerate(e_rows) if min(int(np.float32(rgb_sh[r]) / top * 2), 1) == b]
    acc = 100 * np.mean([e_pred[i] == w_rgb_lab[e_rows[i]] for i in members])
    cells.append(f"{b * top / 2:.2f}-{(b + 1) * top / 2:.2f}: {acc:.2f} ({len(members)})")
want = ", ".join(cells) + f"; all {100 * np.mean(e_pred == w_rgb_lab[e_rows]):.2f}"
check(want in text, f"neighbours --accuracy: '{want}' not in: {text}")
with h5py.File(f"{out}/unmixed.h5", "w") as f:
    f.attrs["ackd_format"] = "dataset"
    f["ms/labels"] = w_ms_lab.astype(np.int32)
check("records no neighbours (/ms/neighbour_class): write it with ackd synth -synth_mixing"
      in run("neighbours.py", f"{out}/unmixed.h5", f"{out}/mixed_gallery.h5", code=1), "neighbours: a world without")
check("has no /gallery/index" in run("neighbours.py", f"{out}/mixed.h5", f"{out}/gallery.h5", code=1),
      "neighbours: a gallery without its rows")
with h5py.File(f"{out}/mixed_gallery.h5") as g, h5py.File(f"{out}/other_gallery.h5", "w") as f:
    f.attrs["ackd_format"] = "gallery"
    f["gallery/logits"], f["gallery/index"] = g["gallery/logits"][...], g["gallery/index"][...]
    f["gallery/labels"] = (g["gallery/labels"][...] + 1) % K
check("is not a gallery of" in run("neighbours.py", f"{out}/mixed.h5", f"{out}/other_gallery.h5", code=1),
      "neighbours: another world's gallery")

# --teacher-eval: the teacher's own probabilities on its test scenes, and its fit to cover fractions
fractions = np.zeros((n_ms, K), np.float32)
fractions[np.arange(n_ms), w_ms_lab] = 1 - ms_sh
fractions[np.arange(n_ms), ms_nb] = ms_sh
with h5py.File(f"{out}/mixed_fractions.h5", "w") as f, h5py.File(f"{out}/mixed.h5") as g:
    for name in ("ms", "rgb", "class_map"):
        g.copy(name, f)
    f.attrs["ackd_format"] = "dataset"
    f["ms/cover_fractions"] = fractions
e_ms = np.flatnonzero(ms_split == 2)
e_logits = (3.0 * np.eye(K)[w_ms_lab[e_ms]] + 5.0 * ms_sh[e_ms, None] * np.eye(K)[ms_nb[e_ms]]
            + 0.5 * rng.standard_normal((len(e_ms), K))).astype(np.float32)
with h5py.File(f"{out}/teacher_eval.h5", "w") as f:
    f.attrs["ackd_format"], f.attrs["modality"] = "eval", "ms"
    f["index"], f["logits"] = e_ms.astype(np.int64), e_logits
text = run("neighbours.py", f"{out}/mixed_fractions.h5", f"{out}/mixed_gallery.h5", "--teacher-eval",
           f"{out}/teacher_eval.h5")
q = sp_softmax(e_logits.astype(np.float64), axis=1)
lab, nb = w_ms_lab[e_ms], ms_nb[e_ms]
sh = ms_sh[e_ms].astype(np.float32).astype(np.float64)
q_other = np.mean([np.mean([q[i, j] for j in range(K) if j not in (lab[i], nb[i])]) for i in range(len(e_ms))])
want = (f"mean softmax of the label {np.mean([q[i, lab[i]] for i in range(len(e_ms))]):.4f}, of the neighbouring "
        f"class {np.mean([q[i, nb[i]] for i in range(len(e_ms))]):.4f}, of each other class {q_other:.4f}; the label "
        f"leads on {np.mean([np.argmax(q[i]) == lab[i] for i in range(len(e_ms))]):.4f}; the neighbouring class's "
        f"softmax correlates with its share {np.corrcoef(sh, [q[i, nb[i]] for i in range(len(e_ms))])[0, 1]:.4f}")
check(want in text, f"neighbours --teacher-eval: '{want}' not in: {text}")
f64 = fractions[e_ms].astype(np.float64)
kl = np.mean([sum(f64[i, j] * np.log(f64[i, j] / q[i, j]) for j in range(K) if f64[i, j] > 0) for i in range(len(e_ms))])
want = f"mean KL(cover fractions || softmax) {kl:.4f}"
check(want in text, f"neighbours --teacher-eval: '{want}' not in: {text}")
check("has no per-scene /logits and /index" in run("neighbours.py", f"{out}/mixed.h5", f"{out}/mixed_gallery.h5",
                                                   "--teacher-eval", f"{out}/mixed_eval.h5", code=1),
      "neighbours --teacher-eval: an eval file without logits")
with h5py.File(f"{out}/teacher_eval.h5", "r+") as f:
    f.attrs["modality"] = "rgb"
check("is not an eval of this world's MS collection" in run("neighbours.py", f"{out}/mixed.h5", f"{out}/mixed_gallery.h5",
                                                             "--teacher-eval", f"{out}/teacher_eval.h5", code=1),
      "neighbours --teacher-eval: an eval of the RGB collection")

# the same world with a multi-label MS collection (label and neighbour positive, the label dominant)
# and a multi-label teacher: classes by the dominant class, soft labels softmax(log sigmoid(z) / T)
table = np.zeros((n_ms, K), np.uint8)
table[np.arange(n_ms), w_ms_lab] = table[np.arange(n_ms), ms_nb] = 1
shutil.copy(f"{out}/mixed.h5", f"{out}/mixed_ml.h5")
with h5py.File(f"{out}/mixed_ml.h5", "r+") as f:
    del f["ms/labels"]
    f["ms/labels"], f["ms/dominant_class"] = table, w_ms_lab.astype(np.int32)
with h5py.File(f"{out}/mixed_ml_gallery.h5", "w") as f:
    f.attrs["ackd_format"] = "gallery"
    f["gallery/logits"], f["gallery/labels"] = t_logits.astype(np.float32), table[t_rows]
    f["gallery/index"] = t_rows.astype(np.int64)
text = run("neighbours.py", f"{out}/mixed_ml.h5", f"{out}/mixed_ml_gallery.h5", "-T", "2")
z32 = t_logits.astype(np.float32).astype(np.float64)
sig = 1 / (1 + np.exp(-z32))
want = (f"mean sigmoid of the label {np.mean([sig[i, t_lab[i]] for i in range(len(t_lab))]):.4f}, of the "
        f"neighbouring class {np.mean([sig[i, t_nb[i]] for i in range(len(t_lab))]):.4f}, of each other class "
        f"{np.mean([sig[i, j] for i in range(len(t_lab)) for j in range(K) if j not in (t_lab[i], t_nb[i])]):.4f}")
check(want in text, f"neighbours, multi-label: '{want}' not in: {text}")
pT_ml = sp_softmax(np.log(sig) / 2, axis=1)
want = f"p(neighbouring class) at T {np.mean([pT_ml[i, t_nb[i]] for i in range(len(t_lab))]):.4f}"
check(want in text, f"neighbours, multi-label: '{want}' not in: {text}")
with h5py.File(f"{out}/mixed_ml.h5", "r+") as f:
    del f["ms/dominant_class"]
check("records no dominant_class" in run("neighbours.py", f"{out}/mixed_ml.h5", f"{out}/mixed_ml_gallery.h5", code=1),
      "neighbours: a multi-label world without its dominant classes")

# ---- checkpoints: tests/ckpt's values are sin(0.1 i + step) over the model's flat index
ENTRIES = [("conv1", 27), ("conv1", 3), ("layer1.0.bn", 3), ("fc", 30), ("fc", 10), ("layer1.0.bn", 3),
           ("layer1.0.bn", 3)]


def closed_form(step):
    values, at = {}, 0
    for layer, size in ENTRIES:
        values.setdefault(layer, []).extend(np.sin(0.1 * np.arange(at, at + size) + step))
        at += size
    return {k: np.array(v) for k, v in values.items()}


steps = []
for c in (ckpt_a, ckpt_b):
    with h5py.File(c) as f:
        steps.append(int(f["state"].attrs["step"]))
run("ckpt_layers.py", ckpt_a, "-o", f"{out}/norms.png")
png(f"{out}/norms.png")
text = run("ckpt_layers.py", ckpt_a, ckpt_b, "-o", f"{out}/change.png", "--csv", f"{out}/change.csv")
png(f"{out}/change.png")
check(f"change from step {steps[0]} to step {steps[1]}" in text, f"ckpt_layers: steps {steps} not in: {text}")
va, vb = closed_form(steps[0]), closed_form(steps[1])
rows = [line.split(",") for line in open(f"{out}/change.csv").read().splitlines()[1:]]
check(sorted(r[0] for r in rows) == sorted(va), f"ckpt_layers: layers {[r[0] for r in rows]}")
for r in rows:
    n = r[0]
    na, d = np.linalg.norm(va[n]), np.linalg.norm(vb[n] - va[n])
    check(int(r[1]) == len(va[n]) and math.isclose(float(r[2]), na, rel_tol=1e-6) and
          math.isclose(float(r[3]), d, rel_tol=1e-6) and math.isclose(float(r[4]), d / na, rel_tol=1e-6),
          f"ckpt_layers {n}: {r[1:]} expected {len(va[n])} {na} {d} {d / na}")
text = run("ckpt_layers.py", ckpt_a, f"{fixtures}/teacher/metrics.h5", "-o", f"{out}/y.png", code=1)
check("expected 'checkpoint'" in text, f"ckpt_layers accepts a metrics file: {text}")

# ---- results table: every cell = 100 x OA of the raw predictions, best per column bold
PAIRS = ["R/R", "M/M", "S/S", "R/M", "R/S", "M/S"]
table = {tuple(k.split("|")): 100 * v for k, v in expected["table"].items()}
names = {"none": "Student (CE)", "kd": "KD", "dkd+sembridge": "DKD + SemBridge", "at": "AT"}
md = run("results_table.py", f"{fixtures}/sweep")
lines = md.strip().splitlines()
check(lines[0] == "| Method | R/R | M/M | S/S | R/M | R/S | M/S | Avg. |", f"table header: {lines[0]}")
body = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]] for l in lines[2:]}
check(list(body) == ["Student (CE)", "KD", "AT", "DKD + SemBridge"], f"table rows: {list(body)}")
for method, label in names.items():
    cells = body.get(label, [])
    for j, p in enumerate(PAIRS):
        want = table.get((method, p))
        got = cells[j] if j < len(cells) else None
        if want is None:
            check(got == "–", f"table {label} {p}: '{got}', expected a dash")
            continue
        best = max(v for (m, q), v in table.items() if q == p)
        text_want = f"{want:.2f}" if f"{want:.2f}" != f"{best:.2f}" else f"**{want:.2f}**"
        check(got == text_want, f"table {label} {p}: '{got}', expected '{text_want}'")
    full = [table[(method, p)] for p in PAIRS if (method, p) in table]
    want_avg = f"{np.mean(full):.2f}" if len(full) == 6 else "–"
    check(cells[-1:] == [want_avg], f"table {label} average: {cells[-1:]}, expected {want_avg}")
tex = run("results_table.py", f"{fixtures}/sweep", "--latex", "-o", f"{out}/table.tex")
tex = open(f"{out}/table.tex").read()
check(tex.count("\\\\") == 5 and "\\toprule" in tex and tex.count("\\textbf{") == 6, f"LaTeX table: {tex}")
best_rr = max(v for (m, q), v in table.items() if q == "R/R")
check(f"\\textbf{{{best_rr:.2f}}}" in tex, "LaTeX: the best R/R cell is not bold")

sys.exit(check.summary())
