"""Same params and seed, two separate clones in different folders: byte-identical split, label, image and
feature files and identical metrics. A third clone embeds with TensorFlow on one thread, as a machine with
fewer cores would: features equal up to float32 rounding (TensorFlow's CPU kernels split their sums by thread
count, so the last bits differ on some CPUs: docs/reliability.md). The split and the images are made without
TensorFlow (stages/subsample.py), so the thread count cannot reach them.

The first clone is the run's reproduced project (tests/e2e/conftest.py), itself built in two `dvc repro` in two
folders (the prepared project, then a copy of it reproduced to the end); the second reproduces from scratch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.project import Reproduced, copy_project, make_project, status_is_clean, tool_env

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
    "metrics/metrics.json",
    "metrics/comparisons.json",
    "metrics/details/noise.json",
    "metrics/details/per_seed.json",
    "metrics/details/metrics.json",
    "metrics/details/comparisons.json",
)
FEATURE_FILES = tuple(path for path in IDENTICAL_FILES if path.startswith("data/features/"))
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def start_repro(repo: Path, *targets: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", *targets],
        cwd=repo,
        env={**tool_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def clones(
    tmp_path_factory: pytest.TempPathFactory,
    flower_folder: Path,
    reproduced_project: Reproduced,
    prepared_project: Path,
) -> tuple[Path, Path, Path]:
    """The reproduced project; a full run in another folder; a copy of the prepared project, embedded again on one
    TensorFlow thread."""
    first = reproduced_project.repo
    second = make_project(tmp_path_factory.mktemp("clone_b") / "elsewhere" / "project", flower_folder)
    single = copy_project(prepared_project, tmp_path_factory.mktemp("clone_c") / "project")
    # Side by side, to cut the wait; each is an independent workspace.
    runs = [start_repro(second), start_repro(single, "--force", "--single-item", "embed", **ONE_THREAD)]
    for repo, process in zip((second, single), runs, strict=True):
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"dvc repro failed in {repo}:\n{output}"
    return first, second, single


@pytest.mark.parametrize("path", IDENTICAL_FILES)
def test_same_params_give_byte_identical_files(clones: tuple[Path, Path, Path], path: str) -> None:
    first, second, _ = clones
    same = (first / path).read_bytes() == (second / path).read_bytes()  # a bool: pytest's diff of MBs takes minutes
    assert same, f"{path} differs between the two runs"


@pytest.mark.parametrize("path", FEATURE_FILES)
def test_one_thread_gives_features_equal_up_to_rounding(clones: tuple[Path, Path, Path], path: str) -> None:
    first, _, single = clones
    expected, actual = np.load(first / path), np.load(single / path)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = float(np.abs(expected).max()) if expected.size else 1.0
    # float32 carries ~7 digits; a different order of the same sums moves the last one or two.
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def test_complete_run_leaves_nothing_to_do(clones: tuple[Path, Path, Path]) -> None:
    assert status_is_clean(clones[1])  # the reproduced project's own: tests/e2e/test_pipeline.py
