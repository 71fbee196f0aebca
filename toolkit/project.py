"""Throw-away copies of the project as git+DVC repos, and the helpers that run commands in them.

Used by the e2e tests (tests/e2e/conftest.py wraps them in fixtures) and by the benchmarks.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The project's defaults (params.yaml as shipped): a throw-away project's params.yaml starts from them, never
# from the working params.yaml, which a study edits (`dvc exp run -S`) and commits.
DEFAULT_PARAMS_FILE = PROJECT_ROOT / "toolkit" / "default_params.yaml"
# What a user's clone holds that the pipeline needs (no data, no models, no .venv); params.yaml: the defaults.
PROJECT_FILES = (
    "dvc.yaml",
    "stages",
    "report",  # `python -m report`: the sweep report
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
    "plots_html",  # the page template .dvc/config names for `dvc plots show`, with its Vega copies
)

# Small enough for a 2-core CPU: 32 px images, random-init backbone, few epochs and seeds. Of the 120
# synthetic images, 60 train, 20 validate (the defaults' train.select_epoch: val needs them), 40 test.
SMALL_PARAMS = {
    "data": {"image_size": 32, "train_size": 60, "val_size": 20, "test_size": None},
    "model": {"weights": "none", "embed_batch_size": 32},
    "train": {"epochs": 3, "seeds": [0, 1]},
}


VARIANTS = ("bce-clean", "bce-noisy", "l1-clean", "l1-noisy")
# Every stage a first `dvc repro` of the default two losses runs, besides the fingerprint stage.
ALL_STAGES = frozenset(
    {
        "download",
        "subsample",
        "corrupt",
        "embed",
        "detect_clean",
        "detect",
        *(f"train@{v}" for v in VARIANTS),
        "evaluate",
    }
)
# Runs on every `dvc repro` by design (always_changed): it hashes data.source and model.weights in well under a
# second and changes nothing downstream unless they changed.
FINGERPRINT = "fingerprint"
# What a change of `noise` reruns (a noise level's `dvc exp run`), and what it leaves to the cache or a remote.
PER_LEVEL_STAGES = frozenset({"corrupt", "detect", "train@bce-noisy", "train@l1-noisy", "evaluate"})
SHARED_STAGES = ALL_STAGES - PER_LEVEL_STAGES  # download, subsample, embed, detect_clean and the clean variants


def ran_stages(output: str) -> set[str]:
    """The stages that did work in `dvc repro` / `dvc exp run` output: those it says it ran (not those it
    skipped or restored), without the fingerprint stage, which runs every time."""
    ran = set(re.findall(r"Running stage '([^']+)'", output))
    assert FINGERPRINT in ran or not ran, f"stages ran without the fingerprint stage: {ran}"
    return ran - {FINGERPRINT}


def restored_stages(output: str) -> set[str]:
    """Stages whose outputs came from the cache or a DVC remote rather than from running them."""
    pulled = re.findall(r"Pulling data for stage: '([^']+)'", output)
    cached = re.findall(r"Stage '([^']+)' is cached - skipping run", output)
    return set(pulled) | set(cached)


def stages_to_rerun(repo: Path) -> set[str]:
    """The stages `dvc status` says have changed deps, params or outputs (without the fingerprint stage, which
    is always changed): what `dvc repro` would run first. Stages downstream of them are listed only once their
    inputs have changed, so a test that asks what a change reruns runs the fingerprint stage first (`dvc repro
    fingerprint`), and asks again after running the stages listed."""
    return set(json.loads(dvc(repo, "status", "--json").stdout)) - {FINGERPRINT}


def status_is_clean(repo: Path) -> bool:
    """`dvc status` reports nothing to do but the fingerprint stage, which is always changed by design."""
    lines = [line.strip() for line in dvc(repo, "status").stdout.splitlines() if line.strip()]
    return lines in (["Data and pipelines are up to date."], [f"{FINGERPRINT}:", "always changed"])


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's bin dir first, so `python` and `dvc` are ours."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.setdefault("GIT_AUTHOR_NAME", "test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@example.com")
    env.setdefault("GIT_COMMITTER_NAME", "test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@example.com")
    return env


def run(repo: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command in repo (with tool_env(), or env); on failure the assertion shows its output."""
    result = subprocess.run(args, cwd=repo, env=env or tool_env(), capture_output=True, text=True)
    if check:
        command = " ".join(args)
        assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(repo, sys.executable, "-m", "dvc", *args, check=check)


def deep_update(target: dict, updates: dict) -> dict:
    """Merge updates into target, nested dicts key by key; target holds copies, never updates' own objects
    (an alias of SMALL_PARAMS' sections let one test's update reach every later test's project)."""
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value  # sentinels stay
    return target


def default_params() -> dict:
    """The project's default params (DEFAULT_PARAMS_FILE), a fresh copy per call."""
    return yaml.safe_load(DEFAULT_PARAMS_FILE.read_text())


def write_params(repo: Path, updates: dict) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(deep_update(params, updates), sort_keys=False))


@contextmanager
def params_kept(repo: Path) -> Iterator[dict]:
    """repo's params.yaml as a dict; the file is put back byte for byte afterwards, whatever was written."""
    path = repo / "params.yaml"
    text = path.read_bytes()
    try:
        yield yaml.safe_load(text)
    finally:
        path.write_bytes(text)


def make_project(destination: Path, source: Path, params: dict | None = None) -> Path:
    """Copy the project into destination as a fresh git repo with one commit, set up for small runs."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = PROJECT_ROOT / name
        dst = destination / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    shutil.copy2(DEFAULT_PARAMS_FILE, destination / "params.yaml")
    write_params(destination, deep_update(deep_update({}, SMALL_PARAMS), {"data": {"source": str(source)}}))
    if params:
        write_params(destination, params)
    run(destination, "git", "init", "-q", "-b", "main")
    run(destination, "git", "add", "-A")
    run(destination, "git", "commit", "-qm", "project")
    return destination


def copy_project(source: Path, destination: Path) -> Path:
    """A private copy of a project made by make_project (its git history, DVC cache, dvc.lock and outputs), in
    milliseconds where a `dvc repro` takes a minute. DVC's own temporary folder (locks, its hash cache keyed by
    inode) is left behind: DVC rebuilds it, and nothing in it may be shared by two workspaces."""
    shutil.copytree(source, destination, symlinks=True, ignore=_dvc_tmp)
    return destination


def _dvc_tmp(folder: str, names: list[str]) -> set[str]:
    return {"tmp"} if Path(folder).name == ".dvc" else set()


def commit_all(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", message)


@dataclass(frozen=True)
class Reproduced:
    """A reproduced project: its repo, and what `dvc repro` printed building it."""

    repo: Path
    output: str  # stdout and stderr
    stderr: str


@dataclass(frozen=True)
class Shared:
    """A project shared as docs/several-machines.md says: `origin`, a bare Git repository, holds its commits,
    and `storage`, a DVC remote (a local folder), its outputs and run-cache; `project` is the machine that
    pushed them (its remote named REMOTE_NAME, the default)."""

    project: Path
    origin: Path
    storage: Path


REMOTE_NAME = "shared"


def share(project: Path, origin: Path, storage: Path) -> Shared:
    """Make a bare `origin` and a DVC remote `storage`, commit the remote (clones read it from .dvc/config) and
    push the project's commits, outputs and run-cache there."""
    run(origin.parent, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    run(project, "git", "remote", "add", "origin", str(origin))
    dvc(project, "remote", "add", "-d", REMOTE_NAME, str(storage))
    commit_all(project, "the shared DVC remote")
    dvc(project, "push", "--run-cache")
    run(project, "git", "push", "-q", "-u", "origin", "main")
    return Shared(project, origin, storage)


def copy_shared(shared: Shared, destination: Path) -> Shared:
    """A private copy of a shared project, its origin and its remote under destination, the copy's origin and
    remote pointing at each other (one more commit, pushed: clones must read the copy's remote, not the
    original's): a test may push experiments to it without another test seeing them."""
    destination.mkdir(parents=True, exist_ok=True)
    origin = Path(shutil.copytree(shared.origin, destination / shared.origin.name, symlinks=True))
    storage = Path(shutil.copytree(shared.storage, destination / shared.storage.name, symlinks=True))
    project = copy_project(shared.project, destination / shared.project.name)
    run(project, "git", "remote", "set-url", "origin", str(origin))
    dvc(project, "remote", "modify", REMOTE_NAME, "url", str(storage))
    commit_all(project, "the shared DVC remote, here")
    run(project, "git", "push", "-q", "origin", "main")
    return Shared(project, origin, storage)
