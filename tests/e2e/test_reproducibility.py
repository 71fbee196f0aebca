"""Same params and seed, two separate clones: byte-identical split, label, image and feature files and
identical metrics. The second clone runs TensorFlow on one thread, as a machine with fewer cores would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.project import make_project, status_is_clean, tool_env

IDENTICAL_FILES = (
    "data/prepared/labels.csv",
    "data/prepared/train_images.npy",
    "data/prepared/val_images.npy",
    "data/prepared/test_images.npy",
    "data/labels/clean.csv",
    "data/labels/noisy.csv",
    "data/features/train.npy",
    "data/features/val.npy",
    "data/features/test.npy",
    "metrics/noise.json",
    "metrics/per_seed.json",
    "metrics/metrics.json",
    "metrics/comparisons.json",
)
SMALL = {"train": {"losses": ["bce"], "seeds": [0, 1]}}  # two train stages: enough to compare


def start_repro(repo: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        env={**tool_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def two_clones(tmp_path_factory: pytest.TempPathFactory, flower_folder: Path) -> tuple[Path, Path]:
    first = make_project(tmp_path_factory.mktemp("clone_a") / "project", flower_folder, SMALL)
    second = make_project(tmp_path_factory.mktemp("clone_b") / "elsewhere" / "project", flower_folder, SMALL)
    # Side by side, to halve the wait; each is an independent workspace.
    runs = [start_repro(first), start_repro(second, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")]
    for repo, process in zip((first, second), runs, strict=True):
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"dvc repro failed in {repo}:\n{output}"
    return first, second


@pytest.mark.parametrize("path", IDENTICAL_FILES)
def test_same_params_give_byte_identical_files(two_clones: tuple[Path, Path], path: str) -> None:
    first, second = two_clones
    assert (first / path).read_bytes() == (second / path).read_bytes(), f"{path} differs between the two runs"


def test_complete_run_leaves_nothing_to_do(two_clones: tuple[Path, Path]) -> None:
    for repo in two_clones:
        assert status_is_clean(repo)
