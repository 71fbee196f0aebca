"""The GPU kit (benchmarks/gpu_kit): prepared here, then installed offline from its folder (no index) into a
temporary path and its check run — on this CPU, on JAX, with TensorFlow hidden, at small sizes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.project import PROJECT_ROOT, tool_env

pytest.importorskip("jax", reason="the JAX backend is not installed (requirements-dev.txt pins it)")

KIT_LIMIT_BYTES = 60 * 2**20
SMALL = [
    "--image-size=32",
    "--images=32",
    "--embed-batch-size=16",
    "--batch-sizes=8",
    "--epochs=2",
    "--run-size=32",
    "--run-images=40",
    "--run-epochs=2",
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
        TMPDIR=str(tmp_path),
    )
    env["PYTHON"] = sys.executable
    result = subprocess.run(["bash", str(kit / "run.sh"), "--all", *SMALL], env=env, capture_output=True, text=True)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert re.search(r"^gpu kit: installed 17 packages into ", output, re.M)
    figures = dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)
    assert figures["backend"] == "jax" and figures["keras"] == "3.15.1"
    assert "gpu-kit-site." in figures["keras from"]  # Keras came from the kit, not this venv
    assert figures["tensorflow importable"] == "False"
    for name in ("embed images/s float32 32px batch 16", "embed images/s mixed_bfloat16 32px batch 16"):
        assert float(figures[name]) > 0, name
    assert float(figures["fine-tune images/s mixed_bfloat16 xla 32px batch 8"].split()[0]) > 0
    assert re.match(
        r"test accuracy [01]\.\d{3}, epoch kept [12], ", figures["fine_tune trainer run 20 images 32px 2 epochs"]
    )
