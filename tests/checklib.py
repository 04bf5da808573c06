"""The harness the Python test drivers share: recorded checks with a closing verdict, the relative
error of a tensor against its reference (PyTorch's, most often), and running a command whose outputs
the checks after it read.

A driver imports it through its own location, so that it works from any working directory:

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/
    import checklib

    check = checklib.Checks("my_driver")
    check(value == expected, f"value {value} = {expected}")
    sys.exit(check.summary())
"""
import os
import subprocess

import numpy as np


class Checks:
    """The failed checks of one driver run. A failed check is printed and recorded, and the run goes on,
    so that one run reports everything that is wrong; summary() then turns the record into the exit code.

    print_passes: print a line for every check that passes too, for drivers whose log should read as
    the list of what was verified."""

    def __init__(self, name, print_passes=True):
        self.name = name
        self.print_passes = print_passes
        self.failures = []

    def __call__(self, condition, description):
        # Flushed, so that the lines keep their place among the output of the commands a driver runs.
        if not condition:
            self.failures.append(description)
            # Beside the "ok   " lines, "FAIL " keeps every description in one column.
            print(("FAIL " if self.print_passes else "FAIL: ") + description, flush=True)
        elif self.print_passes:
            print("ok   " + description, flush=True)

    def summary(self, note=None):
        """Prints the verdict line and returns the driver's exit code: 1 if any check failed, else 0."""
        details = [f"{len(self.failures)} failure(s)"] + ([note] if note else [])
        print(f"{self.name}: {'FAILED' if self.failures else 'ok'} ({', '.join(details)})", flush=True)
        return 1 if self.failures else 0


def relative_error(mine, ref, floor=1e-30):
    """max |mine - ref| / max(max |ref|, floor), in float64: the largest deviation relative to the
    reference's largest magnitude, so one tolerance serves tensors of any scale. floor stands in for a
    reference that is all zeros. A NaN on either side gives NaN, which no `err <= tol` lets pass.
    The two sides broadcast against each other; compare() checks their shapes first."""
    mine, ref = np.asarray(mine, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return np.abs(mine - ref).max() / max(np.abs(ref).max(), floor)


def compare(check, what, mine, ref, tol, floor=1e-30, flatten=False):
    """Records through `check` (a Checks) whether relative_error(mine, ref, floor) <= tol, as the
    failure "WHAT: relative error E > TOL", and returns the error. ref: the reference, e.g. PyTorch's,
    a tensor (detached here) or anything numpy takes. The shapes must match first ("WHAT: shape S vs
    torch S'", and None is returned); flatten: compare the entries in order, whatever the shapes."""
    mine = np.asarray(mine, dtype=np.float64)
    ref = np.asarray(ref.detach() if hasattr(ref, "detach") else ref, dtype=np.float64)
    if flatten:
        mine, ref = mine.reshape(-1), ref.reshape(-1)
    if mine.shape != ref.shape:
        check(False, f"{what}: shape {mine.shape} vs torch {ref.shape}")
        return None
    err = relative_error(mine, ref, floor)
    check(err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}")
    return err


def refusal(command, regex, code):
    """Runs `command` and says whether it was refused as ackd refuses bad input: exit `code` (2 for a
    wrong option or argument, 1 for a file that does not hold what it should), exactly one
    "ackd ...: error" line on stderr, matching `regex`, and no PETSc traceback. Returns (ok, a short
    account of what happened) for a check's description."""
    import re
    proc = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if re.match(r"^ackd[a-z ]*: error", line)]
    ok = (proc.returncode == code and len(lines) == 1 and "PETSC ERROR" not in proc.stderr
          and re.search(regex, lines[0]) is not None)
    return ok, f"exit {proc.returncode}, {lines[:1]}"


def run_or_exit(command, expect=0, what=None, tail=3000):
    """Runs `command` (a list of strings) with its output captured and returns the CompletedProcess.

    Any exit code other than `expect` ends the driver with exit code 1: what follows a command checks
    its outputs, which are then missing or stale. Before that it prints the command and the last `tail`
    characters of its stdout and stderr (all of them if tail is None), and names the step by `what`
    (by default the whole command)."""
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != expect:
        print(" ".join(command))
        if tail is None:
            print(proc.stdout, proc.stderr)
        else:
            print(proc.stdout[-tail:], proc.stderr[-tail:])
        raise SystemExit(f"exit code {proc.returncode}, expected {expect}: {what or ' '.join(command)}")
    return proc


def run_ackd(launcher, ranks, ackd, stage_args, expect=0):
    """`ackd STAGE ...` on `ranks` ranks through run_or_exit. launcher: the MPI launcher as a list,
    ending with its rank-count flag, e.g. ["mpirun", "--oversubscribe", "-n"]."""
    return run_or_exit(launcher + [str(ranks), ackd, *stage_args], expect,
                       what=f"ackd {stage_args[0]} on {ranks} rank(s)")


def adam_step_bound(lr, beta1=0.9, beta2=0.999):
    """The most one Adam step moves a weight: lr (1 - b1) / sqrt(1 - b2) (Kingma and Ba, section
    2.1), with a relative margin of 1e-6 for float32 rounding."""
    return lr * (1 - beta1) / (1 - beta2) ** 0.5 * (1 + 1e-6)


def cpu_has_bf16():
    """Whether ackd's bf16 options run here: from /proc/cpuinfo, independently of oneDNN's own
    detection, unless ONEDNN_MAX_CPU_ISA caps oneDNN below bf16 (the way to try a CPU without it on
    one that has it)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap != "ALL" and "BF16" not in cap and "AMX" not in cap:
        return False
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = line.split()
                return "avx512_bf16" in flags or "amx_bf16" in flags
    return False
