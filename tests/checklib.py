"""The harness the Python test drivers share: recorded checks with a closing verdict, and running a
command whose outputs the checks after it read.

A driver imports it through its own location, so that it works from any working directory:

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/
    import checklib

    check = checklib.Checks("my_driver")
    check(value == expected, f"value {value} = {expected}")
    sys.exit(check.summary())
"""
import subprocess


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
