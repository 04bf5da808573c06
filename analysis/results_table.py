#!/usr/bin/python3
"""The results table, laid out as the paper's: one row per method, one column per teacher/student
architecture pair (R/R, M/M, S/S, R/M, R/S, M/S; R ResNet34, M MobileNetV2, S ShuffleNetV2), each
cell the student's overall accuracy (OA, %) on the split; the best of each column in bold, and
an average column. Reads every eval_<split>.h5 under DIR. A result names its method and pair by
the eval file's root attributes `method` and `pair` when present, else by its directory's name
METHOD_TS (what the sweep templates write: sweep/dkd+sembridge_RM/eval_test.h5).

  results_table.py out/eu/sweep                     Markdown on stdout
  results_table.py out/eu/sweep --latex -o table.tex
  results_table.py out/eu/sweep --split val --digits 1"""
import os

import numpy as np

import ackd_files as af

# Row order: baselines first in the paper's order, each followed by its +sembridge variant.
METHOD_ORDER = ["none", "kd", "logits", "fitnet", "at", "rkd", "crd", "dkd", "ctkd", "lskd", "c2kd", "clip", "mnf",
                "distilvpr"]


def method_key(method):
    base, _, variant = method.partition("+")
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), base, variant)


def collect(root, split):
    cells, sources = {}, {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name != f"eval_{split}.h5":
                continue
            path = os.path.join(dirpath, name)
            ev = af.read_eval(path)
            if af.eval_role(path) == "teacher":
                continue  # the teacher's own accuracy is not a cell of the student table
            method, pair = af.method_and_pair(path, ev)
            if method is None:
                af.die(f"'{path}': no method/pair attributes and its directory is not named METHOD_TS")
            if pair not in af.PAIRS:
                af.die(f"'{path}': pair '{pair}' is not one of {', '.join(af.PAIRS)}")
            if (method, pair) in cells:
                af.die(f"two results for {method} {pair}: '{sources[(method, pair)]}' and '{path}'")
            if "oa" not in ev:
                af.die(f"'{path}' has no oa attribute (a multi-label eval?)")
            cells[(method, pair)] = 100.0 * float(ev["oa"])
            sources[(method, pair)] = path
    return cells


def table(cells, digits, latex):
    methods = sorted({m for m, _ in cells}, key=method_key)
    best = {p: max((v for (m, q), v in cells.items() if q == p), default=None) for p in af.PAIRS}
    fmt = f"{{:.{digits}f}}"

    def cell(m, p):
        v = cells.get((m, p))
        if v is None:
            return "–" if not latex else "--"
        s = fmt.format(v)
        if fmt.format(v) == fmt.format(best[p]):
            s = f"\\textbf{{{s}}}" if latex else f"**{s}**"
        return s

    def average(m):
        vals = [cells[(m, p)] for p in af.PAIRS if (m, p) in cells]
        return fmt.format(np.mean(vals)) if len(vals) == len(af.PAIRS) else ("--" if latex else "–")

    def name(m):
        base, _, variant = m.partition("+")
        label = {"none": "Student (CE)", "kd": "KD"}.get(base, base.upper() if len(base) <= 4 else base.capitalize())
        return label + (" + SemBridge" if variant == "sembridge" else f" + {variant}" if variant else "")

    lines = []
    if latex:
        lines += ["\\begin{tabular}{l" + "c" * (len(af.PAIRS) + 1) + "}", "\\toprule",
                  "Method & " + " & ".join(af.PAIRS) + " & Avg. \\\\", "\\midrule"]
        lines += [f"{name(m)} & " + " & ".join(cell(m, p) for p in af.PAIRS) + f" & {average(m)} \\\\"
                  for m in methods]
        lines += ["\\bottomrule", "\\end{tabular}"]
    else:
        lines += ["| Method | " + " | ".join(af.PAIRS) + " | Avg. |", "|---" * (len(af.PAIRS) + 2) + "|"]
        lines += [f"| {name(m)} | " + " | ".join(cell(m, p) for p in af.PAIRS) + f" | {average(m)} |"
                  for m in methods]
    return "\n".join(lines)


def main():
    ap = af.parser(__doc__)
    ap.add_argument("dir", help="directory searched (recursively) for eval_<split>.h5")
    ap.add_argument("--split", default="test", help="which eval files (default test)")
    ap.add_argument("--latex", action="store_true", help="LaTeX (booktabs) instead of Markdown")
    ap.add_argument("--digits", type=int, default=2, help="decimals of OA in %% (default 2)")
    ap.add_argument("-o", "--output", help="write to this file instead of stdout")
    args = ap.parse_args()
    cells = collect(args.dir, args.split)
    if not cells:
        af.die(f"no eval_{args.split}.h5 under '{args.dir}'")
    out = table(cells, args.digits, args.latex) + "\n"
    if args.output:
        open(args.output, "w").write(out)
        print(f"wrote {args.output}")
    else:
        print(out, end="")


if __name__ == "__main__":
    main()
