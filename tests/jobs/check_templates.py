#!/usr/bin/python3
"""Static checks of the job templates, stage tables and options files (no PBS server is
packaged, and Slurm directives are also checked where no cluster runs):

  PBS    #PBS directives: select chunks (N:ncpus=..:mpiprocs=..:ompthreads=..) with
         mpiprocs x ompthreads <= ncpus, walltime HH:MM:SS, -J ranges (X-Y[:step][%max]),
         depend=TYPE:ID syntax, -r/-j values; the same strings inside the submit scripts.
  Slurm  #SBATCH directives: known options with valid values (--time, --signal=[B:]SIG@secs,
         --array with % throttle, counts), and the environment the templates must set.
  stages every command of jobs/*.stages runs an existing `ackd` stage with options it knows;
         placeholders are the known ones.
  inputs inputs/*.opts: every option is read by some stage (`ackd STAGE -help`); options files
         the docs and templates name exist.

    check_templates.py --repo DIR --ackd ACKD            check the repository (exit 1 on errors)
    check_templates.py --repo DIR --ackd ACKD --broken W  copy jobs/ to W, break it on purpose in
                                                          known ways, and require each error"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys

RUNTIME_OPTIONS = {"options_file", "quiet", "log_view", "traceback", "help", "check_options"}
PLACEHOLDERS = {"ackd", "opts", "run", "method", "teacher", "student", "pair", "tag", "extra"}
SIGNALS = {"HUP", "INT", "QUIT", "USR1", "USR2", "TERM", "URG", "CONT", "STOP", "KILL", "ALRM"}


class Checker:
    _help = {}  # `ackd help` and `ackd STAGE -help`, shared by every checker of this process

    def __init__(self, repo, ackd):
        self.repo, self.ackd, self.errors = repo, ackd, []

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    # ---------------------------------------------------------------- ackd itself
    def run_ackd(self, *args):
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        p = subprocess.run([self.ackd, *args], capture_output=True, text=True, env=env, timeout=60)
        return p.stdout + p.stderr

    def stages(self):
        if "" not in self._help:
            text = self.run_ackd("help")
            body = text.split("stages:", 1)[1].split("\n\n", 1)[0] if "stages:" in text else ""
            self._help[""] = {line.split()[0] for line in body.splitlines() if line.strip()}
        return self._help[""]

    def stage_options(self, stage):
        if stage not in self._help:
            text = self.run_ackd(stage, "-help_all")  # with the solvers' PETSc options
            if stage == "distill":
                # A method lists its own options only when chosen: ask for every method, with SemBridge.
                line = next((l for l in text.splitlines() if l.strip().startswith("-kd_method")), "")
                m = re.search(r"<([a-z0-9|]+)>", line)
                for method in (m.group(1).split("|") if m else []):
                    text += self.run_ackd(stage, "-help_all", "-kd_method", method, "-sembridge")
            self._help[stage] = set(re.findall(r"^\s+-(\w+)[: ]", text, re.M)) | RUNTIME_OPTIONS
        return self._help[stage]

    def option_known(self, name):
        """True when a stage of this ackd reads -name."""
        return any(name in self.stage_options(s) for s in self.stages() if s != "inspect")

    # ---------------------------------------------------------------- PBS
    def check_select(self, where, spec):
        for chunk in spec.split("+"):
            parts = chunk.split(":")
            if re.fullmatch(r"\d+", parts[0]):
                count, parts = int(parts[0]), parts[1:]
                if count < 1:
                    self.error(where, f"select chunk count {count} < 1")
            res = {}
            for p in parts:
                m = re.fullmatch(r"([a-z_]+)=([\w.]+)", p)
                if not m:
                    self.error(where, f"select: '{p}' is not RESOURCE=VALUE")
                    continue
                res[m.group(1)] = m.group(2)
            for key in ("ncpus", "mpiprocs", "ompthreads", "ngpus"):
                if key in res and not re.fullmatch(r"\d+", res[key]):
                    self.error(where, f"select: {key}={res[key]} is not an integer")
                    return
            if "mem" in res and not re.fullmatch(r"\d+[kmgt]?b", res["mem"], re.I):
                self.error(where, f"select: mem={res['mem']} is not a size like 200gb")
            if "ncpus" not in res:
                self.error(where, f"select chunk '{chunk}' has no ncpus")
                continue
            ncpus, mpi, omp = int(res["ncpus"]), int(res.get("mpiprocs", 1)), int(res.get("ompthreads", 1))
            if mpi * omp > ncpus:
                self.error(where, f"select: mpiprocs x ompthreads = {mpi} x {omp} = {mpi * omp} > ncpus = {ncpus}")

    def check_walltime(self, where, value):
        if not re.fullmatch(r"(\d+:)?[0-5]?\d:[0-5]\d|\d+", value):
            self.error(where, f"walltime '{value}' is not [HH:]MM:SS or seconds")

    def check_array_range(self, where, value):
        m = re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?(?:%(\d+))?", value)
        if not m:
            self.error(where, f"-J '{value}' is not X-Y[:STEP][%MAX]")
        elif int(m.group(1)) >= int(m.group(2)):
            self.error(where, f"-J '{value}': the first index must be below the last")

    def check_depend(self, where, value):
        for dep in value.split(","):
            m = re.fullmatch(r"(after|afterok|afternotok|afterany|before|beforeok|beforenotok|beforeany|runone)"
                             r":(.+)", dep)
            if not m:
                self.error(where, f"depend '{dep}' is not TYPE:JOBID[:JOBID...]")
                continue
            for job in m.group(2).split(":"):
                if not re.fullmatch(r'"?\$\{?\w+\}?"?|\d+(\[\])?(\.[\w.-]+)?', job):
                    self.error(where, f"depend: '{job}' is not a job id")

    def check_pbs_script(self, path):
        where = os.path.relpath(path, self.repo)
        text = open(path).read()
        seen = set()
        for n, line in enumerate(text.splitlines(), 1):
            if n == 1 or not line.strip() or (line.startswith("#") and not line.startswith("#PBS")):
                continue
            if not line.startswith("#PBS"):
                break  # PBS reads directives only up to the first command
            words = shlex.split(line[4:])
            if not words or not words[0].startswith("-"):
                self.error(f"{where}:{n}", f"'{line}' is not '#PBS -FLAG VALUE'")
                continue
            flag, value = words[0], " ".join(words[1:])
            seen.add(flag)
            w = f"{where}:{n}"
            if flag == "-l":
                for item in value.split(","):
                    key, _, val = item.partition("=")
                    if key == "select":
                        self.check_select(w, val)
                    elif key == "walltime":
                        self.check_walltime(w, val)
                    elif key not in ("place", "mem", "ncpus", "software", "host", "cput"):
                        self.error(w, f"unknown resource '{key}'")
            elif flag == "-J":
                self.check_array_range(w, value)
            elif flag == "-W":
                key, _, val = value.partition("=")
                if key == "depend":
                    self.check_depend(w, val)
            elif flag == "-r" and value not in ("y", "n"):
                self.error(w, f"-r '{value}' must be y or n")
            elif flag == "-j" and value not in ("oe", "eo", "n"):
                self.error(w, f"-j '{value}' must be oe, eo or n")
            elif flag == "-N" and not re.fullmatch(r"[A-Za-z][\w.-]{0,235}", value):
                self.error(w, f"-N '{value}' is not a job name")
            elif flag not in ("-l", "-J", "-W", "-r", "-j", "-N", "-o", "-e", "-q", "-A", "-m", "-M", "-P",
                              "-S", "-k", "-V", "-v"):
                self.error(w, f"unknown directive flag {flag}")
        for flag, why in (("-l", "resources"), ("-r", "rerunnable (qrerun)")):
            if flag not in seen:
                self.error(where, f"no #PBS {flag} ({why})")
        self.require(where, text, ["HDF5_USE_FILE_LOCKING=FALSE", "qrerun", "ackd_run_stages", "stop-timer.sh",
                                   "OMP_NUM_THREADS"])

    def check_pbs_submit(self, path):
        where = os.path.relpath(path, self.repo)
        for n, line in enumerate(open(path), 1):
            if line.lstrip().startswith("#"):
                continue
            for m in re.finditer(r"select=([^\s\"']+)", line):
                self.check_select(f"{where}:{n}", m.group(1))
            for m in re.finditer(r"walltime=([^\s\"']+)", line):
                self.check_walltime(f"{where}:{n}", m.group(1))
            for m in re.finditer(r"depend=([^\s)]+)", line):
                self.check_depend(f"{where}:{n}", m.group(1))
            if "qsub" in line and "-J" in line and "${span" not in line:
                self.error(f"{where}:{n}", "qsub -J must come from array() (no one-element arrays)")

    # ---------------------------------------------------------------- Slurm
    def check_sbatch_value(self, where, key, value):
        counts = {"ntasks-per-node", "cpus-per-task", "ntasks", "gpus-per-node"}
        ok = True
        if key in counts:
            ok = value is not None and re.fullmatch(r"[1-9]\d*", value)
        elif key == "nodes":
            ok = value is not None and re.fullmatch(r"[1-9]\d*(-[1-9]\d*)?", value)
        elif key == "time":
            ok = value is not None and re.fullmatch(r"(\d+-)?\d+(:[0-5]\d){0,2}", value)
        elif key == "signal":
            m = re.fullmatch(r"(?:[BR]:)?(?:SIG)?([A-Z0-9]+)(?:@(\d+))?", value or "")
            ok = m and (m.group(1) in SIGNALS or m.group(1).isdigit())
        elif key == "array":
            ok = value is not None and re.fullmatch(r"\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?", value)
        elif key in ("requeue", "no-requeue", "exclusive"):
            ok = value is None
        elif key == "open-mode":
            ok = value in ("append", "truncate")
        elif key in ("job-name", "output", "error", "partition", "account", "mem", "qos", "constraint"):
            ok = bool(value)
        else:
            self.error(where, f"unknown #SBATCH option --{key}")
            return
        if not ok:
            self.error(where, f"--{key}={value}: invalid value")

    def check_sbatch_script(self, path):
        where = os.path.relpath(path, self.repo)
        text = open(path).read()
        keys = set()
        for n, line in enumerate(text.splitlines(), 1):
            if n == 1 or not line.strip() or (line.startswith("#") and not line.startswith("#SBATCH")):
                continue
            if not line.startswith("#SBATCH"):
                break  # sbatch stops reading directives at the first command
            m = re.fullmatch(r"#SBATCH\s+--([a-z-]+)(?:=(\S+))?\s*", line)
            if not m:
                self.error(f"{where}:{n}", f"'{line}' is not '#SBATCH --option[=value]'")
                continue
            keys.add(m.group(1))
            self.check_sbatch_value(f"{where}:{n}", m.group(1), m.group(2))
        for key in ("signal", "requeue", "ntasks-per-node", "cpus-per-task", "time"):
            if key not in keys:
                self.error(where, f"no #SBATCH --{key}")
        self.require(where, text, ["OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK", "HDF5_USE_FILE_LOCKING=FALSE",
                                   'scontrol requeue "$SLURM_JOB_ID"', "ackd_run_stages", "-eq 75"])

    def require(self, where, text, needles):
        for needle in needles:
            if needle not in text:
                self.error(where, f"does not contain '{needle}'")

    # ---------------------------------------------------------------- stage tables
    def check_stage_table(self, path):
        where = os.path.relpath(path, self.repo)
        names = set()
        for n, raw in enumerate(open(path), 1):
            line = raw.partition("#")[0]
            words = line.split()
            if not words:
                continue
            w = f"{where}:{n}"
            if len(words) < 3:
                self.error(w, "a stage line is NAME LAUNCH COMMAND...")
                continue
            name, launch, command = words[0], words[1], words[2:]
            if name in names:
                self.error(w, f"stage '{name}' twice")
            names.add(name)
            if launch not in ("mpi", "serial"):
                self.error(w, f"launch '{launch}' must be mpi or serial")
            for word in command:
                for key in re.findall(r"\{(\w*)\}", word):
                    if key not in PLACEHOLDERS:
                        self.error(w, f"unknown placeholder {{{key}}}")
            if command[0] != "{ackd}" or len(command) < 2:
                continue
            stage = command[1]
            if stage in self.stages():
                known = self.stage_options(stage)
                for word in command[2:]:
                    if word.startswith("-") and not re.fullmatch(r"-?\d.*", word) and word[1:] not in known:
                        self.error(w, f"ackd {stage} has no option {word}")
                if "{opts}" not in command:
                    self.error(w, f"ackd {stage} does not read the options file ({{opts}})")
            else:
                self.error(w, f"'ackd {stage}' is not a stage of this ackd ({', '.join(sorted(self.stages()))})")

    # ---------------------------------------------------------------- inputs
    def check_opts(self, path):
        where = os.path.relpath(path, self.repo)
        for n, raw in enumerate(open(path), 1):
            line = raw.split("#", 1)[0].split()
            if not line:
                continue
            if not line[0].startswith("-"):
                self.error(f"{where}:{n}", f"'{line[0]}' is not an option")
                continue
            name = line[0][1:]
            if not self.option_known(name):
                self.error(f"{where}:{n}", f"option -{name} is read by no stage (ackd STAGE -help)")

    def check_referenced_files(self):
        for rel in ("docs/CLUSTER.md", "jobs/README.md"):
            path = os.path.join(self.repo, rel)
            if not os.path.exists(path):
                continue
            for name in sorted(set(re.findall(r"inputs/[\w.-]+\.opts", open(path).read()))):
                if not os.path.exists(os.path.join(self.repo, name)):
                    self.error(rel, f"names {name}, which does not exist")

    def check_all(self, jobs_dir):
        for name in sorted(os.listdir(os.path.join(jobs_dir, "pbs"))):
            path = os.path.join(jobs_dir, "pbs", name)
            if name.endswith(".pbs"):
                self.check_pbs_script(path)
            elif name.startswith("submit"):
                self.check_pbs_submit(path)
        for name in sorted(os.listdir(os.path.join(jobs_dir, "slurm"))):
            if name.endswith(".sbatch"):
                self.check_sbatch_script(os.path.join(jobs_dir, "slurm", name))
        for name in sorted(os.listdir(jobs_dir)):
            if name.endswith(".stages"):
                self.check_stage_table(os.path.join(jobs_dir, name))
        inputs = os.path.join(self.repo, "inputs")
        for name in sorted(os.listdir(inputs)):
            if name.endswith(".opts"):
                self.check_opts(os.path.join(inputs, name))
        self.check_referenced_files()


# Deliberate breakages: (file under jobs/, text to replace, replacement, error that must appear)
BREAKAGES = [
    ("pbs/pipeline.pbs", "mpiprocs=8:ompthreads=8", "mpiprocs=8:ompthreads=16",
     "mpiprocs x ompthreads = 8 x 16 = 128 > ncpus = 64"),
    ("pbs/pipeline.pbs", "walltime=04:00:00", "walltime=4h", "walltime '4h' is not"),
    ("pbs/pipeline.pbs", "#PBS -r y", "#PBS -r maybe", "-r 'maybe' must be y or n"),
    ("pbs/sweep.pbs", "#PBS -J 0-161%4", "#PBS -J 35-0%4", "the first index must be below the last"),
    ("pbs/sweep.pbs", "select=1:ncpus=64", "select=1:ncpus=sixty", "ncpus=sixty is not an integer"),
    ("pbs/submit-pipeline", 'depend=afterok:"$previous"', 'depend=afterk:"$previous"', "depend 'afterk:"),
    ("slurm/pipeline.sbatch", "--signal=B:USR1@600", "--signal=B:USR1@ten", "--signal=B:USR1@ten: invalid value"),
    ("slurm/sweep.sbatch", "--array=0-161%4", "--array=0-35%", "--array=0-35%: invalid value"),
    ("slurm/pipeline.sbatch", "--cpus-per-task=8", "--cpus-per-tsk=8", "unknown #SBATCH option --cpus-per-tsk"),
    ("pipeline.stages", "{ackd} synth -options_file", "{ackd} synht -options_file", "'ackd synht' is not a stage"),
    ("pipeline.stages", "{ackd} match -options_file {opts}", "{ackd} match -options_file {opts} -match_ot_epss 1",
     "ackd match has no option -match_ot_epss"),
    ("sweep.stages", "{run}/sweep/{tag}/best.h5", "{run}/sweep/{tga}/best.h5", "unknown placeholder {tga}"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--ackd", required=True)
    ap.add_argument("--broken", metavar="WORKDIR", help="check deliberately broken copies instead")
    args = ap.parse_args()
    repo = os.path.abspath(args.repo)
    if not args.broken:
        c = Checker(repo, args.ackd)
        c.check_all(os.path.join(repo, "jobs"))
        for e in c.errors:
            print("FAIL:", e)
        print(f"templates: {'ok' if not c.errors else f'{len(c.errors)} error(s)'}")
        return 1 if c.errors else 0
    failures = 0
    for i, (rel, old, new, expect) in enumerate(BREAKAGES):
        work = os.path.join(args.broken, f"case{i}")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(os.path.join(repo, "jobs"), os.path.join(work, "jobs"))
        target = os.path.join(work, "jobs", rel)
        text = open(target).read()
        if old not in text:
            print(f"FAIL: case {i}: '{old}' is no longer in jobs/{rel}; update BREAKAGES")
            failures += 1
            continue
        open(target, "w").write(text.replace(old, new, 1))
        c = Checker(repo, args.ackd)
        c.check_all(os.path.join(work, "jobs"))
        hit = [e for e in c.errors if expect in e]
        if not hit:
            print(f"FAIL: case {i}: breaking jobs/{rel} ({new}) was not caught as '{expect}'; errors: {c.errors}")
            failures += 1
        else:
            print(f"caught: jobs/{rel}: {hit[0]}")
    print(f"broken copies: {'all caught' if not failures else f'{failures} missed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
