#!/usr/bin/python3
"""Reference checks of `ackd match` against POT (Python Optimal Transport).

  pot_reference.py make PROBLEM.h5 --students N --teachers M [--dim D] [--classes K] [--zero-mass] [--nan] ...
      writes a random problem in ackd match's input layout (non-uniform masses).
  pot_reference.py check PROBLEM.h5 MATCH.h5 --reference sinkhorn_log|sinkhorn|unbalanced|emd|argmin ...
      solves the same problem with POT and asserts that ackd's plan (rebuilt
      from its potentials), costs and top-k teachers agree.

The cost matrix is recomputed here independently (numpy / ot.dist), so a
wrong cost assembly in ackd shows up as a wrong plan.
"""
import argparse
import sys
import warnings

import h5py
import numpy as np

# POT 0.8 imports PyTorch whenever it is installed, to offer it as a backend: 1.3 s of the 1.6 s
# that `import ot` takes, paid by each of the suite's ~100 runs of this script. The checks pass
# NumPy arrays only; a None entry makes `import torch` fail, and POT keeps its NumPy backend.
sys.modules.setdefault("torch", None)
import ot  # noqa: E402


def make(args):
    rng = np.random.default_rng(args.seed)
    ns, nt, d = args.students, args.teachers, args.dim
    centres = rng.normal(size=(args.clusters, d))  # --clusters: both sides scattered round shared centres
    with h5py.File(args.problem, "w") as f:
        for side, n in (("student", ns), ("teacher", nt)):
            x = rng.normal(size=(n, d)) * args.scale
            if args.clusters:
                x = centres[rng.integers(0, args.clusters, size=n)] + 0.3 * x
            if args.classes:
                labels = rng.integers(0, args.classes, size=n).astype(np.int32)
                labels[: args.classes] = np.arange(args.classes)  # every class on both sides
                x += labels[:, None] * 0.5  # classes apart, so in-class matching matters
                f[side + "/labels"] = labels
            mass = np.ones(n) if args.uniform else rng.uniform(0.2, 1.0, size=n)
            if args.zero_mass:
                mass[rng.choice(n, size=max(1, n // 10), replace=False)] = 0.0
            if args.nan and side == "student":
                x[7, 1] = np.nan
            if args.zero_row and side == "student":
                x[n - 3] = 0.0  # on the last rank: its error must still reach the user
            if args.one_sided_labels and side == "teacher" and "teacher/labels" in f:
                del f["teacher/labels"]
            f[side + "/features"] = x.astype(np.float32 if args.float32 else np.float64)
            f[side + "/mass"] = mass


def read_problem(path):
    with h5py.File(path, "r") as f:
        p = {side: {k: f[side][k][()] for k in f[side]} for side in ("student", "teacher")}
    return p


def cost_matrix(p, kind, temperature):
    x = p["student"]["features"].astype(np.float64)
    y = p["teacher"]["features"].astype(np.float64)
    if kind == "sqeuclidean":
        return ot.dist(x, y, metric="sqeuclidean")
    if kind == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        yn = y / np.linalg.norm(y, axis=1, keepdims=True)
        return 1.0 - xn @ yn.T
    if kind == "kl":
        def log_softmax(z):
            z = z / temperature
            z = z - z.max(axis=1, keepdims=True)
            return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        lps, lpt = log_softmax(x), log_softmax(y)
        pt = np.exp(lpt)
        return (pt * lpt).sum(axis=1)[None, :] - lps @ pt.T
    raise SystemExit("unknown cost " + kind)


def marginals(p, blocked, balanced):
    a = p["student"]["mass"].astype(np.float64).copy()
    b = p["teacher"]["mass"].astype(np.float64).copy()
    if blocked and balanced:  # the stage's documented per-class rebalancing
        ls, lt = p["student"]["labels"], p["teacher"]["labels"]
        for c in np.union1d(ls, lt):
            sa, sb = a[ls == c].sum(), b[lt == c].sum()
            if sa == 0 or sb == 0:
                a[ls == c] = 0
                b[lt == c] = 0
            else:
                b[lt == c] *= sa / sb
    return a / a.sum(), b / b.sum()


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def close(name, got, want, tol):
    err = abs(got - want) / max(abs(want), 1e-300)
    print(f"{name}: ackd {got:.15g} reference {want:.15g} relative error {err:.2e} (tolerance {tol:g})")
    if not err <= tol:
        fail(name)


def check_exact(C, a, b, at, f, g, idx, wts, p, blocked):
    """The LP solution against POT's network simplex (ot.emd / ot.emd2)."""
    finite = np.isfinite(C)
    M = np.where(finite, C, 1e3 * C[finite].max())  # never used: every class is balanced
    P = ot.emd(a, b, M, numItermax=10000000)
    close("exact transport cost vs ot.emd2", at["transport_cost"], float(ot.emd2(a, b, M, numItermax=10000000)), 1e-9)
    # the potentials are optimal duals: feasible, and their value is the cost (strong duality)
    slack = (C - f[:, None] - g[None, :])[finite]
    print(f"dual feasibility: min slack {slack.min():.3e}")
    if slack.min() < -1e-9:
        fail("f_i + g_j exceeds C_ij: the potentials are not dual feasible")
    close("dual value a.f + b.g", float(a @ f + b @ g), at["transport_cost"], 1e-9)
    k = idx.shape[1]
    for i in range(C.shape[0]):
        order = [j for j in np.argsort(-P[i], kind="stable")[:k] if P[i, j] > 1e-15]
        got = [j for j in idx[i] if j >= 0]
        if sorted(got) != sorted(order) or not np.allclose(wts[i, : len(got)], P[i, got] / P[i, got].sum(),
                                                           rtol=0, atol=1e-9):  # entries agree to ~1e-12 absolute
            fail(f"row {i}: ackd {idx[i]} {wts[i]}, ot.emd plan {order} {P[i, order]}")
        if blocked and not np.all(p["teacher"]["labels"][got] == p["student"]["labels"][i]):
            fail(f"row {i} matched across classes")
    print(f"top-{k} of the exact plan: all rows agree with ot.emd")


def check_truncated(at, P, C, a, b, colerr, rowerr, min_certificates):
    """A truncated solve (-ot_truncate): its plan lives on a part S of the entries, and its reported
    errors are certified bounds for the dense plan of its potentials. Rebuilt here densely in double:
    the dense marginal errors must lie below the bounds, and what the truncation left out (the dense
    plan's mass and cost beyond S's, whose rows carry exactly a) below the reported bounds, which
    must also be tight (the bounds are the left-out sums scaled by exp(delta / eps), delta the float
    tiles' rounding)."""
    ns, nt = C.shape
    if not (at["truncate"] > 0 and 0 < at["kept_entries"] < 0.8 * ns * nt):
        fail(f"not a truncated solve: truncate {at['truncate']}, kept {at['kept_entries']} of {ns * nt}")
    if at["certificates"] < min_certificates:
        fail(f"{at['certificates']} certificates, expected at least {min_certificates}")
    left_mass = P.sum() - a.sum()
    left_cost = float(np.sum(P[P > 0] * C[P > 0])) - at["transport_cost"]
    print(f"truncated: S {at['kept_entries']:.0f} of {ns * nt} entries, {at['certificates']} certificates; "
          f"left-out mass {left_mass:.3e} (bound {at['discarded_mass']:.3e}), cost {left_cost:.3e} "
          f"(bound {at['discarded_cost']:.3e})")
    slack = 1e-12  # the rounding of sums of ~1
    if not (colerr <= at["column_error"] + slack and rowerr <= at["row_error"] + slack):
        fail("the dense plan's marginal errors exceed the certified bounds")
    if not (-slack <= left_mass <= at["discarded_mass"] + slack and -slack <= left_cost <= at["discarded_cost"] + slack):
        fail("what the truncation left out exceeds its reported bound")
    if not (at["discarded_mass"] <= 1.01 * max(left_mass, 0) + 1e-11):
        fail("the left-out mass bound is not tight")


def check(args):
    p = read_problem(args.problem)
    with h5py.File(args.match, "r") as m:
        if m.attrs["ackd_format"] != "match":
            fail("ackd_format is not 'match'")
        o = m["ot"]
        at = dict(o.attrs)
        idx = m["match/teacher_index"][()]
        wts = m["match/weight"][()]
        fpot = o["f"][()] if "f" in o else None
        gpot = o["g"][()] if "g" in o else None
        hist = o["history_error"][()]
        a_file, b_file = o["student_mass"][()], o["teacher_mass"][()]
    blocked = "labels" in p["student"] and bool(at["class_blocks"])
    C = cost_matrix(p, at["cost"], at.get("kl_temperature", 3.0))
    if blocked:
        C = np.where(p["student"]["labels"][:, None] == p["teacher"]["labels"][None, :], C, np.inf)
    a, b = marginals(p, blocked, args.reference not in ("unbalanced", "argmin"))
    if not (np.allclose(a, a_file, rtol=1e-12, atol=0) and np.allclose(b, b_file, rtol=1e-12, atol=0)):
        fail("marginals in the match file differ from the documented construction")
    maxc = C[np.isfinite(C)].max()
    close("max_cost", at["max_cost"], maxc, 1e-10)
    if at.get("precision") == "single":  # assembled in double, then stored (and solved) rounded to float
        C = C.astype(np.float32).astype(np.float64)
    eps = at["eps"]
    if at["eps_relative"] and args.reference not in ("argmin", "exact"):
        close("eps", eps, at["eps_option"] * maxc, 1e-12)
    k = idx.shape[1]
    print(f"ackd: {at['iterations']} iterations, converged {at['converged']}, grid {at['grid']}, eps {eps:.6g}")

    if args.reference == "argmin":
        for i in range(C.shape[0]):
            order = np.lexsort((np.arange(C.shape[1]), C[i]))
            want = [j for j in order[:k] if np.isfinite(C[i, j])]
            if list(idx[i, : len(want)]) != want:
                fail(f"argmin row {i}: ackd {idx[i]} reference {want}")
            if blocked and len(want) and not np.all(p["teacher"]["labels"][want] == p["student"]["labels"][i]):
                fail(f"argmin row {i} matched across classes")
        print(f"argmin: all {C.shape[0]} rows agree")
        return

    if args.expect_unconverged:
        # the budget ran out: the file must say so, and its error must be the plan's real error
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            P = np.exp(np.nan_to_num((fpot[:, None] + gpot[None, :] - C) / eps, nan=-np.inf))
        real = np.linalg.norm(P.sum(0) - b)
        print(f"unconverged: converged={at['converged']} iterations={at['iterations']} "
              f"reported column error {at['column_error']:.6e}, plan's {real:.6e}")
        if at["converged"] or at["iterations"] != args.expect_unconverged:
            fail("an unconverged solve is reported as converged or with the wrong iteration count")
        if not (abs(real - at["column_error"]) <= 1e-10 * real and real > at["tol"]):
            fail("the reported column error is not the plan's")
        return
    if not at["converged"]:
        fail("ackd reports an unconverged solve")
    if args.reference == "exact":
        check_exact(C, a, b, at, fpot, gpot, idx, wts, p, blocked)
        return
    if not (np.all(np.isfinite(hist)) and np.all(~np.isnan(fpot)) and np.all(~np.isnan(gpot))):
        fail("NaN in potentials or history")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        logP = (fpot[:, None] + gpot[None, :] - C) / eps
    logP[~np.isfinite(logP)] = -np.inf
    P = np.exp(logP)

    M = np.where(np.isfinite(C), C, 1e300)  # POT's kernel methods need finite entries; exp(-1e300/eps) = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            if args.reference == "sinkhorn_log":
                Pref, log = ot.sinkhorn(a, b, np.where(np.isfinite(C), C, np.inf), eps, method="sinkhorn_log",
                                        stopThr=args.stop, numItermax=args.max_iter, log=True)
                print(f"POT sinkhorn_log: {log['niter']} iterations")
                if args.same_iterations and at["iterations"] != log["niter"] + 1:
                    fail(f"iteration count: ackd {at['iterations']}, POT {log['niter'] + 1}")
            elif args.reference == "sinkhorn":
                Pref = ot.sinkhorn(a, b, M, eps, method="sinkhorn", stopThr=args.stop, numItermax=args.max_iter)
            elif args.reference == "unbalanced":
                Pref = ot.sinkhorn_unbalanced(a, b, M, eps, at["tau"], stopThr=args.stop, numItermax=args.max_iter)
            elif args.reference == "emd":
                Pref = None
            else:
                raise SystemExit("unknown reference")

    colerr = np.linalg.norm(P.sum(0) - b)
    rowerr = np.linalg.norm(P.sum(1) - a)
    if args.truncated:
        check_truncated(at, P, C, a, b, colerr, rowerr, args.min_certificates)
    print(f"plan marginals: column error {colerr:.2e} (ackd says {at['column_error']:.2e}), "
          f"row error {rowerr:.2e} (ackd says {at['row_error']:.2e})")
    if args.reference != "unbalanced" and not (colerr <= max(10 * at["column_error"], 1e-14) + 1e-15):
        fail("the plan rebuilt from the potentials does not have the reported column error")
    cost = float(np.sum(P[P > 0] * C[P > 0]))
    if not args.truncated:  # a truncated solve's are S's: check_truncated bounds the difference
        close("transport_cost (vs plan from potentials)", at["transport_cost"], cost, 1e-9)
        ent = cost + eps * float(np.sum(P[P > 0] * logP[P > 0]))
        close("entropic_value (vs plan from potentials)", at["entropic_value"], ent, 1e-9)

    if Pref is None:  # small eps: compare with exact OT
        emd = ot.emd2(a, b, M, numItermax=1000000)
        gap = cost - emd
        bound = eps * np.log(C.shape[0] * C.shape[1])
        print(f"exact OT {emd:.12g}, entropic cost {cost:.12g}, gap {gap:.3e}, bound eps*log(nm) {bound:.3e}")
        if not (-1e-9 <= gap <= bound):
            fail("entropic cost not within eps*log(nm) above the exact cost")
    else:
        l1 = np.abs(P - Pref).sum()
        print(f"plan: L1 distance to POT {l1:.3e} (tolerance {args.plan_tol:g}), mass {Pref.sum():.6f}")
        if not l1 <= args.plan_tol:
            fail("plan differs from POT's")
        close("transport cost vs POT", cost, float(np.sum(Pref[Pref > 0] * C[Pref > 0])), args.plan_tol * 10)
        P = Pref

    # top-k: the k largest entries of each row of the (reference) plan, weights normalised over them
    nbad = 0
    for i in range(C.shape[0]):
        if P[i].sum() == 0:
            if np.any(idx[i] != -1):
                fail(f"row {i} has no mass but ackd lists teachers {idx[i]}")
            continue
        order = np.argsort(-P[i], kind="stable")[:k]
        order = [j for j in order if P[i, j] > 0]
        got = list(idx[i, : len(order)])
        if got != order:
            # ties or near-ties within the plan tolerance are not errors
            if not np.allclose(P[i, got], P[i, order], rtol=1e-6, atol=1e-14):
                fail(f"top-k of row {i}: ackd {got} reference {order}")
            nbad += 1
        w = P[i, got] / P[i, got].sum()
        if not np.allclose(wts[i, : len(got)], w, rtol=1e-7, atol=1e-12):
            fail(f"top-k weights of row {i}: ackd {wts[i]} reference {w}")
        if blocked and not np.all(p["teacher"]["labels"][got] == p["student"]["labels"][i]):
            fail(f"row {i} matched across classes")
    print(f"top-{k}: all rows agree ({nbad} near-ties)")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("problem")
    mk.add_argument("--students", type=int, required=True)
    mk.add_argument("--teachers", type=int, required=True)
    mk.add_argument("--dim", type=int, default=8)
    mk.add_argument("--classes", type=int, default=0)
    mk.add_argument("--clusters", type=int, default=0)
    mk.add_argument("--seed", type=int, default=1)
    mk.add_argument("--scale", type=float, default=1.0)
    mk.add_argument("--zero-mass", action="store_true")
    mk.add_argument("--nan", action="store_true")
    mk.add_argument("--float32", action="store_true")
    mk.add_argument("--zero-row", action="store_true")
    mk.add_argument("--uniform", action="store_true")
    mk.add_argument("--one-sided-labels", action="store_true")
    ck = sub.add_parser("check")
    ck.add_argument("problem")
    ck.add_argument("match")
    ck.add_argument("--reference", required=True)
    ck.add_argument("--stop", type=float, default=1e-12)
    ck.add_argument("--max-iter", type=int, default=100000)
    ck.add_argument("--plan-tol", type=float, default=1e-8)
    ck.add_argument("--same-iterations", action="store_true")
    ck.add_argument("--truncated", action="store_true", help="check a truncated solve's certificate")
    ck.add_argument("--min-certificates", type=int, default=1)
    ck.add_argument("--expect-unconverged", type=int, default=0, metavar="ITERATIONS")
    args = ap.parse_args()
    make(args) if args.cmd == "make" else check(args)


if __name__ == "__main__":
    main()
