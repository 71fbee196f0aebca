"""What git holds: only the project's own files at the root, every pipeline output ignored from the start
(whichever stage stopped, `git add -A` never picks one up), and exactly the headline metrics tracked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# Files a clone holds at its root; dvc.lock once a run is committed. Everything else lives in a folder.
ROOT_FILES = {
    ".dvcignore",
    ".gitignore",
    "README.md",
    "dvc.lock",
    "dvc.yaml",
    "params.yaml",
    "pytest.ini",
    "requirements-dev.txt",
    "requirements-gpu.txt",
    "requirements.txt",
    "ruff.toml",
}


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module", autouse=True)
def in_git() -> None:
    if git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("not a git checkout")


def stage_paths(section: str) -> list[str]:
    """Every path dvc.yaml lists under `section` (outs, metrics) of any stage, a matrix stage's placeholders
    filled with one loss and one label set."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        for entry in stage.get(section) or []:
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            paths.append(str(path).replace("${item.loss}", "bce").replace("${item.labels}", "noisy"))
    return paths


def ignored(paths: list[str]) -> set[str]:
    # --no-index: by the ignore rules alone, whether or not a path is tracked now.
    result = git("check-ignore", "--no-index", *paths)
    return set(result.stdout.split())


def test_only_the_projects_own_files_are_tracked_at_the_root() -> None:
    tracked = git("ls-files").stdout.splitlines()
    at_root = {path for path in tracked if "/" not in path}
    assert at_root - ROOT_FILES == set(), "a stray file at the root (an allow-list in this test)"


def test_every_output_is_ignored_by_git_and_every_headline_metric_is_not() -> None:
    outs = stage_paths("outs")
    headline = stage_paths("metrics")
    assert outs and headline
    assert ignored(outs) == set(outs), "a pipeline output git would pick up (.gitignore)"
    assert ignored(headline) == set(), "a `metrics:` file git ignores: DVC could not compare it across commits"
    # Whatever a stage writes besides (a failed run's leftovers, the report), git ignores too.
    extra = ["data/fingerprints/source.json", "data/.tfds/x", "metrics/details/new.json", "reports/results.md"]
    assert ignored(extra) == set(extra)
