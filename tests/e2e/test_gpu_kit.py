"""The GPU kit (benchmarks/gpu_kit): prepared here, then installed offline from its folder (no index) into a
temporary path and its check run — on this CPU, on JAX, at small sizes, with every package of this
environment hidden but JAX's own (tests/no_tensorflow: ONLY_SITE_PACKAGES), as on a GPU machine that has
JAX and nothing else: the kit must bring the rest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.project import PROJECT_ROOT, tool_env

pytest.importorskip("jax", reason="the JAX backend is not installed (requirements-dev.txt pins it)")

KIT_LIMIT_BYTES = 60 * 2**20
# What a JAX machine has: JAX, jaxlib and what they need, and pip (run.sh installs the wheels with it).
JAX_ONLY = "jax,jaxlib,numpy,scipy,ml_dtypes,opt_einsum,pip"
SMALL = [
    "--image-size=32",
    "--images=32",
    "--embed-batch-size=16",
    "--batch-sizes=8",
    "--epochs=2",
    "--study-size=32",
    "--study-seeds=2",
    "--study-epochs=1",
    "--study-learning-rates=1e-3",
    "--study-images=60",
]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kit") / "gpu-kit"
    prepare = subprocess.run(
        ["bash", str(PROJECT_ROOT / "benchmarks/gpu_kit/prepare.sh"), str(folder)],
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    if prepare.returncode and "pip download" in prepare.stderr + prepare.stdout and "Could not" in prepare.stderr:
        pytest.skip(f"the package index is unreachable: {prepare.stderr.strip().splitlines()[-1]}")
    assert prepare.returncode == 0, prepare.stderr
    return folder


def test_the_kit_is_small(kit: Path) -> None:
    size = sum(path.stat().st_size for path in kit.rglob("*") if path.is_file())
    assert size < KIT_LIMIT_BYTES, f"{size / 2**20:.1f} MiB"
    assert any(path.name.startswith("keras-3.15.1") for path in (kit / "wheels").iterdir())


def test_offline_install_and_check_on_jax_without_tensorflow(kit: Path, tmp_path: Path) -> None:
    env = tool_env()
    env.update(
        KERAS_BACKEND="jax",
        PIP_NO_INDEX="1",  # no index at all: the folder or nothing
        PYTHONPATH=str(PROJECT_ROOT / "tests/no_tensorflow"),
        ONLY_SITE_PACKAGES=JAX_ONLY,
        TMPDIR=str(tmp_path),
    )
    env["PYTHON"] = sys.executable
    result = subprocess.run(["bash", str(kit / "run.sh"), "--all", *SMALL], env=env, capture_output=True, text=True)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert re.search(r"^gpu kit: installed 18 packages into ", output, re.M)
    figures = dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)
    assert figures["backend"] == "jax" and figures["keras"] == "3.15.1"
    assert "gpu-kit-site." in figures["keras from"]  # Keras came from the kit, not this venv
    assert figures["tensorflow importable"] == "False"
    for policy in ("float32", "mixed_bfloat16"):
        assert float(figures[f"embed images/s {policy} digits 32px batch 16"]) > 0, policy
        assert float(figures[f"training images/s {policy} xla digits 32px batch 8"].split()[0]) > 0, policy
    # On this CPU both sides of the equality check run on the CPU: the same numbers.
    assert figures["equality embed features 32px"].endswith("(tolerance 0.0001): PASS")
    assert re.search(r"epoch kept ([12]) and \1: PASS$", figures["equality fine-tuning 32px 2 epochs"])
    # The train stage itself on the prepared digits (60 of each split), two seeds, then the estimate.
    for seed in (0, 1):
        study = figures[f"study bce-noisy seed {seed} 32px 1 grid points x 1 epochs"]
        assert re.match(r"\d+\.\d s( \(compiling\))?; kept learning_rate 0\.001, epoch 1, threshold \d\.\d{3}; ", study)
        assert re.search(r"test balanced accuracy [01]\.\d{3}$", study)
    assert re.match(r"\d+\.\d min for 4 variants x 10 seeds at these settings", figures["study estimate"])
