"""Same params and seed, two separate clones in different folders: byte-identical split, label, image and
feature files and identical metrics. A third clone embeds with TensorFlow on one thread, as a machine with
fewer cores would: the same split and images, and features equal up to float32 rounding (TensorFlow's CPU
kernels split their sums by thread count, so the last bits differ on some CPUs: docs/reliability.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.project import make_project, status_is_clean, tool_env

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
PREPARED_FILES = tuple(path for path in IDENTICAL_FILES if path.startswith("data/prepared/"))
FEATURE_FILES = tuple(path for path in IDENTICAL_FILES if path.startswith("data/features/"))
SMALL = {"train": {"losses": ["bce"], "seeds": [0, 1]}}  # two train stages: enough to compare
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
def clones(tmp_path_factory: pytest.TempPathFactory, flower_folder: Path) -> tuple[Path, Path, Path]:
    """Two full runs in different folders, and a third, on one TensorFlow thread, up to embed."""
    first = make_project(tmp_path_factory.mktemp("clone_a") / "project", flower_folder, SMALL)
    second = make_project(tmp_path_factory.mktemp("clone_b") / "elsewhere" / "project", flower_folder, SMALL)
    single = make_project(tmp_path_factory.mktemp("clone_c") / "project", flower_folder, SMALL)
    # Side by side, to cut the wait; each is an independent workspace.
    runs = [start_repro(first), start_repro(second), start_repro(single, "embed", **ONE_THREAD)]
    for repo, process in zip((first, second, single), runs, strict=True):
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"dvc repro failed in {repo}:\n{output}"
    return first, second, single


@pytest.mark.parametrize("path", IDENTICAL_FILES)
def test_same_params_give_byte_identical_files(clones: tuple[Path, Path, Path], path: str) -> None:
    first, second, _ = clones
    same = (first / path).read_bytes() == (second / path).read_bytes()  # a bool: pytest's diff of MBs takes minutes
    assert same, f"{path} differs between the two runs"


@pytest.mark.parametrize("path", PREPARED_FILES)
def test_one_thread_gives_the_same_split_and_images(clones: tuple[Path, Path, Path], path: str) -> None:
    first, _, single = clones
    same = (first / path).read_bytes() == (single / path).read_bytes()
    assert same, f"{path} differs on one thread"


@pytest.mark.parametrize("path", FEATURE_FILES)
def test_one_thread_gives_features_equal_up_to_rounding(clones: tuple[Path, Path, Path], path: str) -> None:
    first, _, single = clones
    expected, actual = np.load(first / path), np.load(single / path)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = float(np.abs(expected).max()) if expected.size else 1.0
    # float32 carries ~7 digits; a different order of the same sums moves the last one or two.
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def test_complete_run_leaves_nothing_to_do(clones: tuple[Path, Path, Path]) -> None:
    for repo in clones[:2]:
        assert status_is_clean(repo)
