"""Submit a sweep to Slurm: a job array with one task per point of the -S grid, then a collect job.

    python scripts/slurm/submit.py -S 'noise=0,0.1,0.3,0.5' [-S 'seed=0,1'] [--gres gpu:1] [--partition P]

Run it in a clone of the project whose baseline commit is pushed to `origin` and whose shared outputs are in
the DVC remote (`dvc repro`, commit, `dvc push --run-cache`, `git push`: docs/several-machines.md, step 1).
Each task (scripts/slurm/level.sh) clones origin on its node, checks out that commit and runs
`dvc exp run --pull -n <name> -S …` then `dvc exp push origin <name>`: the features and the clean variants
come from the remote, only what depends on the task's params runs. The collect job (scripts/slurm/collect.sh,
`--dependency=afterok` on the array) clones again, runs `dvc exp pull --no-cache origin` and
`python -m report`, writing the report to `--out`/reports. Logs go to `--out`/logs.

Each -S KEY=V1,V2,… is a list of values (as `dvc exp run --queue -S` takes them; commas inside brackets
belong to one value); the grid is the product of all of them. A task's experiment is named after its
values, `noise-0.5` or `noise-0.5-seed-1`, with `--name` as a prefix if given.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LEVEL_SCRIPT, COLLECT_SCRIPT = HERE / "level.sh", HERE / "collect.sh"
# Per task: a level's head runs take seconds to minutes on a CPU; fine-tuning on a GPU takes longer.
DEFAULT_TIME, DEFAULT_COLLECT_TIME = "02:00:00", "00:30:00"
DEFAULT_CPUS = 2
DEFAULT_JOB_NAME = "noise-sweep"
# Characters kept out of experiment names (Git ref names forbid some, shells dislike others).
UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Task:
    name: str
    overrides: tuple[str, ...]  # KEY=VALUE, one value each

    def argument(self) -> str:
        """The task as level.sh reads it: the name and the overrides, tab-separated."""
        return "\t".join((self.name, *self.overrides))


def split_values(text: str) -> list[str]:
    """V1,V2,… split at the commas outside brackets and quotes."""
    values, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current))
            current = []
            continue
        current.append(char)
    values.append("".join(current))
    return values


def expand_grid(overrides: list[str], prefix: str = "") -> list[Task]:
    """One task per point of the product of the -S lists, each named after its values."""
    axes = []
    for override in overrides:
        key, sep, values = override.partition("=")
        if not sep or not key or not values:
            raise SystemExit(f"-S {override!r}: give KEY=VALUE or KEY=V1,V2,... (e.g. -S 'noise=0,0.5')")
        parsed = split_values(values)
        if any(not value.strip() for value in parsed):
            raise SystemExit(f"-S {override!r}: an empty value; separate the values by single commas")
        axes.append([(key.strip(), value.strip()) for value in parsed])
    if not axes:
        raise SystemExit("give at least one -S KEY=V1,V2,... (e.g. -S 'noise=0,0.1,0.3,0.5')")
    tasks = []
    for point in itertools.product(*axes):
        parts = [prefix] if prefix else []
        parts += [f"{key}-{UNSAFE_IN_NAME.sub('_', value).strip('._-')}" for key, value in point]
        name = UNSAFE_IN_NAME.sub("_", "-".join(parts))
        tasks.append(Task(name, tuple(f"{key}={value}" for key, value in point)))
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise SystemExit(
            f"two tasks of the grid get the same experiment name ({', '.join(names)}): give distinct values"
        )
    return tasks


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def baseline(origin: str | None, rev: str | None) -> tuple[str, str]:
    """origin's URL and the baseline commit (default: this clone's origin and HEAD, which origin must hold)."""
    url = origin or git("remote", "get-url", "origin")
    commit = git("rev-parse", "--verify", f"{rev or 'HEAD'}^{{commit}}")
    if origin is None and not git("branch", "-r", "--contains", commit):
        raise SystemExit(f"the baseline commit {commit[:12]} is not on origin yet: `git push` it first (or give --rev)")
    return url, commit


def sbatch_options(args: argparse.Namespace, job_name: str, time: str, log: Path) -> list[str]:
    options = [f"--job-name={job_name}", f"--time={time}", f"--cpus-per-task={args.cpus_per_task}", f"--output={log}"]
    if args.partition:
        options.append(f"--partition={args.partition}")
    if args.mem:
        options.append(f"--mem={args.mem}")
    if args.account:
        options.append(f"--account={args.account}")
    return options + list(args.sbatch_arg)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=V1,V2,...")
    parser.add_argument("--name", default="", help="prefix of the experiment names (default: none)")
    parser.add_argument("--origin", help="the Git remote every job clones (default: this clone's origin)")
    parser.add_argument("--rev", help="the baseline commit (default: HEAD, which must be on origin)")
    parser.add_argument("--partition", help="Slurm partition of every job (default: the cluster's default)")
    parser.add_argument("--time", default=DEFAULT_TIME, help=f"time limit per task (default: {DEFAULT_TIME})")
    parser.add_argument(
        "--collect-time", default=DEFAULT_COLLECT_TIME, help=f"the collect job's (default: {DEFAULT_COLLECT_TIME})"
    )
    parser.add_argument(
        "--gres", help="generic resources per task, e.g. gpu:1 for model.fine_tune (default: none; heads run on CPUs)"
    )
    parser.add_argument("--cpus-per-task", type=int, default=DEFAULT_CPUS, help=f"(default: {DEFAULT_CPUS})")
    parser.add_argument("--mem", help="memory per node, e.g. 16G (default: the cluster's default)")
    parser.add_argument("--account", help="Slurm account to charge (default: yours)")
    parser.add_argument("--max-parallel", type=int, help="run at most this many tasks at once (default: no limit)")
    parser.add_argument(
        "--sbatch-arg", action="append", default=[], help="any other sbatch option for every job, e.g. --qos=short"
    )
    parser.add_argument("--job-name", default=DEFAULT_JOB_NAME, help=f"(default: {DEFAULT_JOB_NAME})")
    parser.add_argument(
        "--workdir", default="", help="where on a node the jobs clone (default: $SLURM_TMPDIR, $TMPDIR or /tmp)"
    )
    parser.add_argument(
        "--setup", default="", help="shell command each job runs first, e.g. 'source ~/venv/bin/activate'"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("slurm-sweep"), help="logs/ and reports/ (default: ./slurm-sweep)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch commands, submit nothing")
    args = parser.parse_args(argv)
    if args.cpus_per_task < 1:
        parser.error("--cpus-per-task: at least 1")
    if args.max_parallel is not None and args.max_parallel < 1:
        parser.error("--max-parallel: at least 1")
    return args


def submit(command: list[str], dry_run: bool, placeholder: str) -> str:
    """Run sbatch --parsable; the job id it prints (placeholder on a dry run)."""
    print(shlex.join(command), flush=True)
    if dry_run:
        return placeholder
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tasks = expand_grid(args.overrides, args.name)
    origin, rev = baseline(args.origin, args.rev)
    out = args.out.resolve()
    logs, reports = out / "logs", out / "reports"
    if not args.dry_run:
        logs.mkdir(parents=True, exist_ok=True)
    common = [origin, rev, args.workdir, args.setup]

    array = f"0-{len(tasks) - 1}" + (f"%{args.max_parallel}" if args.max_parallel else "")
    level = sbatch_options(args, args.job_name, args.time, logs / f"{args.job_name}-%A_%a.out")
    level += [f"--array={array}"] + ([f"--gres={args.gres}"] if args.gres else [])
    array_id = submit(
        ["sbatch", "--parsable", *level, str(LEVEL_SCRIPT), *common, *(task.argument() for task in tasks)],
        args.dry_run,
        "ARRAY_JOB_ID",
    )
    collect_name = f"{args.job_name}-collect"
    collect = sbatch_options(args, collect_name, args.collect_time, logs / f"{collect_name}-%j.out")
    # afterok: the report waits for every task; if one fails, the collect job is cancelled, not left pending.
    collect += [f"--dependency=afterok:{array_id}", "--kill-on-invalid-dep=yes"]
    collect_id = submit(
        ["sbatch", "--parsable", *collect, str(COLLECT_SCRIPT), *common, str(reports)], args.dry_run, "COLLECT_JOB_ID"
    )
    names = ", ".join(task.name for task in tasks)
    print(f"submitted: array job {array_id} ({len(tasks)} tasks: {names}), collect job {collect_id}")
    print(f"logs in {logs}; the report will be in {reports}")


if __name__ == "__main__":
    sys.exit(main())
