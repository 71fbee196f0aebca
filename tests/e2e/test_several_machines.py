"""End to end: a noise sweep fanned out over several machines through a Git remote and a DVC remote
(docs/several-machines.md), with the commands of the CI example .github/workflows/noise-sweep.yml.

Machine A (the project's own repo) has reproduced the baseline and pushed its outputs and run-cache to the DVC
remote and its commit to `origin`, a bare Git repository (tests/e2e/conftest.py: `shared_baseline`, copied
here). Machine B, a fresh clone in another folder with the same images at another path and an empty cache,
runs the workflow's level job at one noise level: it restores download, subsample, embed and the clean
variants from the remote and runs only what depends on the level. Machine C, a third clone, runs the
workflow's collect job: its report holds the level and the baseline in one sweep. (A level run on A itself is
`dvc exp run -S noise=...` on a reproduced workspace: tests/e2e/test_pipeline.py.)
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from toolkit.project import (
    ALL_STAGES,
    PER_LEVEL_STAGES,
    PROJECT_ROOT,
    SHARED_STAGES,
    VARIANTS,
    Reproduced,
    Shared,
    copy_shared,
    dvc,
    ran_stages,
    restored_stages,
    run,
    status_is_clean,
    tool_env,
    write_params,
)

pytestmark = pytest.mark.e2e

WORKFLOW = PROJECT_ROOT / ".github/workflows/noise-sweep.yml"
LEVEL_JOB, COLLECT_JOB = "level", "collect"
# The project commands of each job, in order, after the runner's set-up: the test below runs exactly these.
LEVEL_COMMANDS = ('dvc exp run --pull -n "noise-$NOISE" -S "noise=$NOISE"', 'dvc exp push origin "noise-$NOISE"')
COLLECT_COMMANDS = ("dvc exp pull --no-cache origin", "python -m report")
# What a CI runner needs first and the test's machines already have: the requirements, a Git identity for
# experiment commits, credentials in origin's URL.
RUNNER_SETUP = re.compile(r"pip install -r requirements\.txt .*|git config user\.(name|email) .*|git remote set-url .*")
SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN")

BASELINE_NOISE = 0.3  # params.yaml's noise: what A's `dvc repro` measures and commits
LEVEL_ON_B = "0.5"


def load_workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def run_commands(job: dict) -> list[str]:
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def project_commands(job: dict) -> list[str]:
    """The job's commands after the runner's set-up steps."""
    commands = run_commands(job)
    setup = 0
    while setup < len(commands) and all(RUNNER_SETUP.fullmatch(line) for line in commands[setup].splitlines()):
        setup += 1
    return commands[setup:]


def run_job(repo: Path, commands: tuple[str, ...], noise: str | None = None) -> str:
    """Run a workflow job's commands in repo with bash, as a runner would; what they printed."""
    env = tool_env()
    if noise is not None:
        env["NOISE"] = noise
    results = [run(repo, "bash", "-c", command, env=env) for command in commands]
    return "".join(result.stdout + result.stderr for result in results)


def clone(origin: Path, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    run(destination.parent, "git", "clone", "-q", str(origin), destination.name)
    return destination


def test_workflow_runs_the_tested_commands() -> None:
    workflow = load_workflow()
    assert workflow.get("on", workflow.get(True)) == {"workflow_dispatch": None}  # PyYAML reads `on` as True
    level, collect = workflow["jobs"][LEVEL_JOB], workflow["jobs"][COLLECT_JOB]
    assert sorted(workflow["jobs"]) == sorted([LEVEL_JOB, COLLECT_JOB])
    assert project_commands(level) == list(LEVEL_COMMANDS)
    assert project_commands(collect) == list(COLLECT_COMMANDS)
    # The level job: one runner per noise level, each level once and a fraction.
    levels = level["strategy"]["matrix"]["noise"]
    assert len(set(levels)) == len(levels) >= 2 and all(0 <= float(noise) <= 1 for noise in levels)
    assert level["env"]["NOISE"] == "${{ matrix.noise }}"
    # The collect job waits for every level, and uploads the report.
    assert collect["needs"] == LEVEL_JOB
    (upload,) = [step for step in collect["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "reports/"
    assert workflow["permissions"] == {"contents": "write"}
    for secret in SECRETS:
        assert workflow["env"][secret] == f"${{{{ secrets.{secret} }}}}"


@dataclass(frozen=True)
class Machines:
    """The three machines' clones, each run's data.source, and what each step printed."""

    a: Path
    b: Path
    c: Path
    sources: dict[str, str]  # the baseline's noise level and the level's -> the data.source of the machine that ran it
    baseline: str  # A: dvc repro
    on_b: str  # B: the level job
    collected: str  # C: the collect job


@pytest.fixture(scope="module")
def machines(
    tmp_path_factory: pytest.TempPathFactory, shared_baseline: Shared, reproduced_project: Reproduced
) -> Machines:
    """Three machines' clones of one project, a Git remote and a DVC remote, after the sweep."""
    root = tmp_path_factory.mktemp("machines")
    # Machine A: the baseline, reproduced once and shared (a copy: this module pushes experiments to it).
    shared = copy_shared(shared_baseline, root / "machine-a")
    a, origin = shared.project, shared.origin
    a_source = yaml.safe_load((a / "params.yaml").read_text())["data"]["source"]

    # Machine B: a fresh clone, empty cache, the same images in another folder.
    b = clone(origin, root / "machine-b" / "work" / "project")
    b_source = shutil.copytree(a_source, root / "machine-b" / "data" / "photos")
    assert not (b / ".dvc" / "cache").exists()
    write_params(b, {"data": {"source": str(b_source)}})  # B's own path: part of B's experiment
    on_b = run_job(b, LEVEL_COMMANDS, noise=LEVEL_ON_B)

    # Machine C collects.
    c = clone(origin, root / "machine-c" / "project")
    collected = run_job(c, COLLECT_COMMANDS)
    sources = {str(BASELINE_NOISE): a_source, LEVEL_ON_B: str(b_source)}
    return Machines(a, b, c, sources, reproduced_project.output, on_b, collected)


def test_baseline_runs_every_stage_once(machines: Machines) -> None:
    assert ran_stages(machines.baseline) == ALL_STAGES


def test_another_machine_restores_the_shared_stages_and_runs_only_its_level(machines: Machines) -> None:
    on_b = machines.on_b
    assert ran_stages(on_b) == PER_LEVEL_STAGES
    assert restored_stages(on_b) == SHARED_STAGES
    b = machines.b
    # The features are there, from the remote: embed's outputs as dvc.lock recorded them on machine A.
    assert (b / "data/features/train.npy").is_file()
    assert status_is_clean(b)


def test_a_third_clone_collects_every_level_in_one_report(machines: Machines) -> None:
    c = machines.c
    shown = json.loads(dvc(c, "exp", "show", "--json").stdout)
    (head,) = [row for row in shown if row["rev"] != "workspace"]
    experiments = {exp["name"]: exp["revs"][0]["data"] for exp in head["experiments"]}
    assert sorted(experiments) == [f"noise-{LEVEL_ON_B}"]
    data = experiments[f"noise-{LEVEL_ON_B}"]
    assert data["params"]["params.yaml"]["data"]["noise"] == float(LEVEL_ON_B)
    twins = {f"{variant}:oracle" for variant in VARIANTS if variant.endswith("-noisy")}
    assert set(data["metrics"]["metrics/metrics.json"]["data"]) == {*VARIANTS, *twins, "baseline"}
    # Each machine's own path to the images: the report still makes one sweep of them (their fingerprints agree).
    assert machines.sources[str(BASELINE_NOISE)] != machines.sources[LEVEL_ON_B]
    assert data["params"]["params.yaml"]["data"]["data"]["source"] == machines.sources[LEVEL_ON_B]
    assert head["data"]["params"]["params.yaml"]["data"]["data"]["source"] == machines.sources[str(BASELINE_NOISE)]
    assert f"report: sweep of 2 runs at noise {BASELINE_NOISE:g}, {LEVEL_ON_B}" in machines.collected

    text = (c / "reports/results.md").read_text()
    assert "## Noise sweep" in text and "## Sweep " not in text
    tables = re.findall(r"^### (.+)\n\n((?:\|.*\n)+)", text, flags=re.MULTILINE)
    calibration = ["Expected calibration error (lower is better)", "Brier score (lower is better)"]
    assert [title for title, _ in tables] == ["Balanced accuracy", "AUC", "Accuracy", *calibration]
    expected = [(BASELINE_NOISE, "main"), (0.5, f"noise-{LEVEL_ON_B}")]
    for _, table in tables:
        rows = [line.split(" | ") for line in table.strip().splitlines()[2:]]
        assert [(float(row[0].strip("| ")), row[-1].strip("| `")) for row in rows] == expected
    # Every run's detail files (cached outputs, not in git) were read through DVC from the remote.
    assert "Headline numbers only" not in text
    assert (c / "reports/noise_curve.png").stat().st_size > 0
