#!/usr/bin/python3
"""What a mixed world's neighbouring parcels (ackd synth -synth_mixing) put into the teacher's soft
labels, and whether a matching hands them on: read from the dataset's records of each scene's
neighbouring class and share (/<collection>/neighbour_class, neighbour_share), the teacher's gallery,
and optionally a match file or a distill checkpoint (the matching DynM last made).

  neighbours.py DATA.h5 GALLERY.h5 [MATCH_OR_CHECKPOINT.h5] [-T 3] [--bins 4] [--accuracy EVAL.h5 ...]
                [--teacher-eval EVAL.h5]

Teacher: the share of the soft labels' variance at T that lies within classes, and how much of
that within-class part the neighbour records explain (1 - the residual after subtracting the mean
of each group of scenes with one label, one neighbouring class and one share bin), beside what the
same grouping explains on records shuffled within each class (chance, for groups of a few scenes);
the teacher's
mean probability at T of a scene's neighbouring class against that of the other classes but the
label.

Matching: for the students whose neighbouring class the MS collection has, how often the top-1
teacher's neighbouring class is the student's, against a teacher of the student's class drawn at
random; and the probability at T the matched teachers (by their weights) give the student's
neighbouring class, against what its class's mean soft label gives it. The difference is what the
matching passes on beyond the class's soft label.

A multi-label MS collection (-synth_ms_multilabel): its scenes' classes are their dominant classes
(/ms/dominant_class), the soft labels are the targets ackd's KD takes from a multi-label teacher,
softmax(log sigmoid(z) / T), and the teacher's mean sigmoid is reported for the label, the
neighbouring class and the other classes.

--teacher-eval: the teacher's eval file (ackd eval on /ms, e.g. its test split): on those scenes,
its own probabilities (softmax of the logits, or a multi-label teacher's sigmoids) of the label,
the neighbouring class and the other classes, how often the label leads, and how closely the
neighbouring class's probability follows its share (correlation); where the world has
/ms/cover_fractions and the teacher is single-label, also the mean KL(fractions || softmax).

--accuracy: each RGB student's eval file (ackd eval) split by its scenes' recorded neighbour share
in --bins equal bins up to the largest share: where a student's errors are, and, between two
students of one world, where one gains on the other."""
import numpy as np

import ackd_files as af

TRAIN = 0


def softmax(z, T):
    e = np.exp((z - z.max(axis=1, keepdims=True)) / T)
    return e / e.sum(axis=1, keepdims=True)


def log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def read_world(path):
    with af.open_file(path, "dataset") as f:
        for side in ("ms", "rgb"):
            if f"{side}/neighbour_class" not in f:
                af.die(f"'{path}' records no neighbours (/{side}/neighbour_class): write it with ackd synth "
                       "-synth_mixing")
        world = {side: {k: f[f"{side}/{k}"][...] for k in ("labels", "split", "neighbour_class", "neighbour_share")}
                 for side in ("ms", "rgb")}
        ms = world["ms"]
        if "ms/cover_fractions" in f:
            ms["cover_fractions"] = np.asarray(f["ms/cover_fractions"][...], dtype=np.float64)
        if ms["labels"].ndim == 2:  # multi-label: a scene stands for its dominant class, as in ackd's matching
            if "ms/dominant_class" not in f:
                af.die(f"'{path}': the multi-label /ms records no dominant_class; write it with ackd synth "
                       "-synth_ms_multilabel")
            ms["table"], ms["labels"] = ms["labels"], f["ms/dominant_class"][...]
        world["rgb_to_ms"] = f["class_map/rgb_to_ms"][...]
    return world


def read_matching(path, students):
    """(students, k) teacher indices and weights from a match file or a distill checkpoint."""
    with af.open_file(path, ("match", "checkpoint")) as f:
        kind = af.text(f.attrs["ackd_format"])
    if kind == "checkpoint":
        index, weight, _ = af.read_checkpoint_matching(path, students)
        return index, weight
    index, weight, _, _ = af.read_match(path)
    if len(index) != students:
        af.die(f"'{path}' matches {len(index)} students, the dataset has {students} RGB training scenes; give the "
               "dataset the match was made for")
    return np.asarray(index, dtype=np.int64), np.asarray(weight, dtype=np.float64)


def explained(deviation, labels, neighbour, bin_of):
    """1 - the within-class variance left after removing each (label, neighbour, share bin) group's mean."""
    residual = deviation.copy()
    for key in set(zip(labels, neighbour, bin_of)):
        sel = (labels == key[0]) & (neighbour == key[1]) & (bin_of == key[2])
        residual[sel] -= deviation[sel].mean(axis=0)
    within = np.sum(deviation ** 2)
    return 1.0 - np.sum(residual ** 2) / within if within > 0 else float("nan")


def shuffled_within_classes(labels, seed=0):
    """A permutation of the scenes that keeps each one in its class (classes in increasing order)."""
    rng, order = np.random.default_rng(seed), np.arange(len(labels))
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        order[members] = members[rng.permutation(len(members))]
    return order


def teacher_report(p, labels, neighbour, share, bins, top):
    means = {k: p[labels == k].mean(axis=0) for k in np.unique(labels)}
    deviation = p - np.array([means[k] for k in labels])
    total = np.sum((p - p.mean(axis=0)) ** 2)
    within = np.sum(deviation ** 2)
    bin_of = np.minimum((share / top * bins).astype(int), bins - 1)
    # Groups of a few scenes fit some of the variance by chance: the same grouping on records
    # shuffled within each class says how much.
    order = shuffled_within_classes(labels)
    rows = np.arange(len(labels))
    others = (1.0 - p[rows, labels] - p[rows, neighbour]) / (p.shape[1] - 2)
    print(f"teacher: {len(labels)} scenes; within-class share of the soft labels' variance {within / total:.4f}; "
          f"of it, the neighbour records explain {explained(deviation, labels, neighbour, bin_of):.4f} (records "
          f"shuffled within each class: {explained(deviation, labels, neighbour[order], bin_of[order]):.4f})")
    print(f"teacher: p(neighbouring class) at T {p[rows, neighbour].mean():.4f} against {others.mean():.4f} for "
          f"each other class but the label")


def sigmoid_report(sig, labels, neighbour):
    rows = np.arange(len(labels))
    others = (sig.sum(axis=1) - sig[rows, labels] - sig[rows, neighbour]) / (sig.shape[1] - 2)
    print(f"teacher (multi-label): mean sigmoid of the label {sig[rows, labels].mean():.4f}, of the neighbouring "
          f"class {sig[rows, neighbour].mean():.4f}, of each other class {others.mean():.4f}")


def teacher_eval_report(path, ms, multilabel):
    e = af.read_eval(path)
    key = "score" if multilabel else "logits"
    if key not in e or "index" not in e:
        af.die(f"'{path}' has no per-scene /{key} and /index: is it an eval of this world's MS teacher?")
    rows = np.asarray(e["index"], dtype=np.int64)
    if e.get("modality", "ms") != "ms" or rows.max() >= len(ms["labels"]):
        af.die(f"'{path}' is not an eval of this world's MS collection")
    q = np.asarray(e[key], dtype=np.float64) if multilabel else softmax(np.asarray(e["logits"], np.float64), 1.0)
    labels, neighbour, share = ms["labels"][rows], ms["neighbour_class"][rows], ms["neighbour_share"][rows]
    r = np.arange(len(rows))
    others = (q.sum(axis=1) - q[r, labels] - q[r, neighbour]) / (q.shape[1] - 2)
    what = "sigmoid" if multilabel else "softmax"
    print(f"teacher on the {len(rows)} scenes of {path}: mean {what} of the label {q[r, labels].mean():.4f}, of the "
          f"neighbouring class {q[r, neighbour].mean():.4f}, of each other class {others.mean():.4f}; the label "
          f"leads on {np.mean(q.argmax(axis=1) == labels):.4f}; the neighbouring class's {what} correlates with its "
          f"share {np.corrcoef(share, q[r, neighbour])[0, 1]:.4f}")
    if "cover_fractions" in ms and not multilabel:
        f = ms["cover_fractions"][rows]
        kl = np.sum(np.where(f > 0, f * (np.log(np.maximum(f, 1e-300)) - np.log(np.maximum(q, 1e-300))), 0.0), axis=1)
        print(f"teacher on the {len(rows)} scenes of {path}: mean KL(cover fractions || softmax) {kl.mean():.4f}")


def matching_report(p, t_labels, t_neighbour, index, weight, s_labels, s_neighbour, rgb_to_ms):
    live = (index >= 0) & (weight > 0)
    has = live.any(axis=1)
    top1 = af.top_teacher(index, weight)
    s_class_ms, s_neighbour_ms = rgb_to_ms[s_labels], rgb_to_ms[s_neighbour]
    sel = has & (s_neighbour_ms >= 0) & (s_class_ms >= 0)
    if not sel.any():
        print("matching: no student with a teacher has a neighbouring class the MS collection has")
        return
    agree = np.mean(t_neighbour[top1[sel]] == s_neighbour_ms[sel])
    chance = np.mean([np.mean(t_neighbour[t_labels == c] == n) for c, n in zip(s_class_ms[sel], s_neighbour_ms[sel])])
    means = {k: p[t_labels == k].mean(axis=0) for k in np.unique(t_labels)}
    w = np.where(live, weight, 0.0)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    rows = np.flatnonzero(sel)
    matched = np.array([np.sum(w[s, live[s]] * p[index[s, live[s]], s_neighbour_ms[s]]) for s in rows])
    by_class = np.array([means[s_class_ms[s]][s_neighbour_ms[s]] for s in rows])
    print(f"matching: {sel.sum()} of {len(index)} students have a teacher and a neighbouring class the MS "
          f"collection has; top-1 teacher with the student's neighbouring class {agree:.4f}, a random teacher of "
          f"its class {chance:.4f}")
    print(f"matching: p(student's neighbouring class) at T from its matched teachers {matched.mean():.4f}, from "
          f"its class's mean soft label {by_class.mean():.4f}")


def accuracy_report(path, rgb, bins):
    e = af.read_eval(path)
    if "prediction" not in e or "index" not in e:
        af.die(f"'{path}' has no per-scene predictions (/prediction, /index): is it a single-label eval file?")
    rows = np.asarray(e["index"], dtype=np.int64)
    if rows.max() >= len(rgb["labels"]) or e.get("modality", "rgb") != "rgb":
        af.die(f"'{path}' is not an eval of this world's RGB collection")
    right = np.asarray(e["prediction"]) == rgb["labels"][rows]
    share = rgb["neighbour_share"][rows]
    top = max(float(rgb["neighbour_share"].max()), 1e-12)
    bin_of = np.minimum((share / top * bins).astype(int), bins - 1)
    cells = []
    for b in range(bins):
        sel = bin_of == b
        acc = f"{100 * right[sel].mean():.2f}" if sel.any() else "-"
        cells.append(f"{b * top / bins:.2f}-{(b + 1) * top / bins:.2f}: {acc} ({sel.sum()})")
    print(f"accuracy by the neighbour's share, {path}: " + ", ".join(cells) + f"; all {100 * right.mean():.2f}")


def main():
    ap = af.parser(__doc__)
    ap.add_argument("data", help="the dataset, written by ackd synth -synth_mixing")
    ap.add_argument("gallery", help="the teacher's gallery.h5")
    ap.add_argument("matching", nargs="?", help="a match file, or a checkpoint of ackd distill")
    ap.add_argument("-T", "--temperature", type=float, default=3.0, help="the KD temperature (default 3)")
    ap.add_argument("--bins", type=int, default=4, help="share bins (default 4)")
    ap.add_argument("--accuracy", nargs="+", metavar="EVAL", default=[],
                    help="RGB eval files of this world: their accuracy per share bin")
    ap.add_argument("--teacher-eval", metavar="EVAL",
                    help="the teacher's eval file of this world: its probabilities on those scenes")
    args = ap.parse_args()
    if not args.temperature > 0:
        af.die(f"-T {args.temperature}: the temperature must be positive")
    if args.bins < 1:
        af.die(f"--bins {args.bins}: give at least 1")
    world = read_world(args.data)
    with af.open_file(args.gallery, "gallery") as f:
        for name in ("logits", "labels", "index"):
            if f"gallery/{name}" not in f:
                af.die(f"'{args.gallery}' has no /gallery/{name}: write the gallery with ackd train")
        z = np.asarray(f["gallery/logits"][...], dtype=np.float64)
        rows = np.asarray(f["gallery/index"][...], dtype=np.int64)
        t_labels = np.asarray(f["gallery/labels"][...])
    ms = world["ms"]
    multilabel = "table" in ms
    truth = ms["table"] if multilabel else ms["labels"]
    if (t_labels.shape[1:] != truth.shape[1:] or rows.max() >= len(truth)
            or not np.array_equal(truth[rows], t_labels)):
        af.die(f"'{args.gallery}' is not a gallery of '{args.data}''s MS collection (its rows' labels differ)")
    if multilabel:
        t_labels = ms["labels"][rows]
        z = log_sigmoid(z)
        sigmoid_report(np.exp(z), t_labels, ms["neighbour_class"][rows])
    p = softmax(z, args.temperature)
    t_neighbour, t_share = ms["neighbour_class"][rows], ms["neighbour_share"][rows]
    top = max(float(ms["neighbour_share"].max()), 1e-12)
    teacher_report(p, t_labels, t_neighbour, t_share, args.bins, top)
    if args.matching:
        rgb = world["rgb"]
        students = np.flatnonzero(rgb["split"] == TRAIN)
        index, weight = read_matching(args.matching, len(students))
        if index.max() >= len(t_labels):
            af.die(f"'{args.matching}' names teacher {index.max()}, beyond the gallery's {len(t_labels)}")
        matching_report(p, t_labels, t_neighbour, index, weight, rgb["labels"][students],
                        rgb["neighbour_class"][students], world["rgb_to_ms"])
    if args.teacher_eval:
        teacher_eval_report(args.teacher_eval, ms, multilabel)
    for path in args.accuracy:
        accuracy_report(path, world["rgb"], args.bins)


if __name__ == "__main__":
    main()
