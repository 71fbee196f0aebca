"""End to end on the JAX backend with TensorFlow unimportable (tests/no_tensorflow), as on a GPU machine
built around JAX/PyTorch: `dvc repro` runs embed (heads), then fine-tunes ResNet50's top block."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from toolkit.project import PROJECT_ROOT, make_project, ran_stages, run, tool_env, write_params

pytest.importorskip("jax", reason="the JAX backend is not installed (requirements-dev.txt pins it)")

VARIANTS = ("bce-clean", "bce-noisy")
# One loss (evaluate compares clean with noisy labels). Batches of 20 split the 60 training, 20 validation and
# 40 test images evenly: JAX compiles a step once per batch shape; a ragged last batch would compile again.
SMALL = {
    "model": {"trainable_blocks": 1, "embed_batch_size": 20},
    "train": {
        "losses": ["bce"],
        "epochs": 2,
        "seeds": [0],
        "batch_size": 20,
        "fine_tune_grid": {"bce": {"learning_rate": [1e-3]}},
    },
}


def backend_env(backend: str, attempts: Path) -> dict[str, str]:
    env = tool_env()
    env["KERAS_BACKEND"] = backend
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT / "tests/no_tensorflow"), env.get("PYTHONPATH", "")])
    env["NO_TENSORFLOW_LOG"] = str(attempts)
    env["JAX_COMPILATION_CACHE_DIR"] = str(attempts.parent / "jax_cache")  # shared by the stages of one test
    return env


@pytest.fixture(scope="module")
def on_jax(tmp_path_factory: pytest.TempPathFactory, flower_folder: Path) -> tuple[Path, str, str, Path, np.ndarray]:
    work = tmp_path_factory.mktemp("jax")
    repo = make_project(work / "project", flower_folder, SMALL)
    env = backend_env("jax", work / "tensorflow_imports.txt")
    heads = run(repo, sys.executable, "-m", "dvc", "repro", env=env)
    features = np.load(repo / "data/features/train.npy")
    write_params(repo, {"model": {"fine_tune": True}})
    fine_tuned = run(repo, sys.executable, "-m", "dvc", "repro", env=env)
    return (
        repo,
        heads.stdout + heads.stderr,
        fine_tuned.stdout + fine_tuned.stderr,
        work / "tensorflow_imports.txt",
        features,
    )


def test_tensorflow_cannot_load_under_the_blocker(tmp_path: Path) -> None:
    env = backend_env("jax", tmp_path / "lookups.txt")
    probe = "import importlib.util; assert importlib.util.find_spec('tensorflow') is None; import tensorflow"
    result = run(tmp_path, sys.executable, "-c", probe, check=False, env=env)
    assert result.returncode == 1 and "ModuleNotFoundError: No module named 'tensorflow'" in result.stderr
    assert (tmp_path / "lookups.txt").read_text().split() == ["tensorflow", "tensorflow"]


def test_embed_runs_resnet50_on_jax_without_tensorflow(on_jax: tuple[Path, str, str, Path]) -> None:
    repo, heads, _, _, features = on_jax
    assert ran_stages(heads) == {"download", "subsample", "corrupt", "embed", "detect_clean", "detect", "evaluate"} | {
        f"train@{v}" for v in VARIANTS
    }
    assert "embed: backend jax; device: CPU (no GPU visible); float32" in heads
    assert json.loads((repo / "data/fingerprints/backend.json").read_text()) == {"kind": "jax"}
    assert features.shape == (60, 2048) and features.dtype == np.float32 and np.isfinite(features).all()


def test_fine_tuning_runs_on_jax_with_xla_and_logs_under_test_and_val_names(on_jax) -> None:
    repo, _, fine_tuned, attempts, _ = on_jax
    assert ran_stages(fine_tuned) == {"embed", "detect_clean", "detect", "evaluate", *(f"train@{v}" for v in VARIANTS)}
    # train.xla is false, yet JAX compiles every step: its eager mode is ~15x slower.
    line = "fine-tuning ResNet50 on the images; backend jax; devices: CPU (no GPU visible); one device; "
    assert fine_tuned.count(line + "precision float32; XLA on") == len(VARIANTS)
    # One line per seed (the epoch and grid point kept, what chose them, the threshold); the per-epoch numbers
    # are in DVCLive's files.
    for variant, labels in zip(VARIANTS, ("clean", "noisy"), strict=True):
        chosen = rf"epoch [12]/2; learning_rate 0\.001 \(best of 1 grid points\); by val log_loss on {labels} labels"
        summary = rf"^train {variant}: seed 0: {chosen}; val balanced_accuracy \d\.\d{{4}}; threshold \d\.\d{{3}}$"
        assert re.search(summary, fine_tuned, re.M)
    assert not re.search(r"^epoch \d+/\d+", fine_tuned, re.M)
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    for variant in VARIANTS:
        assert 0 <= metrics[variant]["accuracy"] <= 1
        log = repo / f"metrics/train/{variant}/seed_0"
        assert yaml.safe_load((log / "params.yaml").read_text()) == {"keras_backend": "jax"}
        for name in ("train/loss", "train/accuracy", "test/loss", "test/accuracy", "val/accuracy", "val/score"):
            rows = (log / f"plots/metrics/{name}.tsv").read_text().splitlines()
            assert len(rows) == 3, name  # a header and two epochs
        assert (repo / f"models/{variant}/seed_0.keras").stat().st_size > 1_000_000
    # Something may try TensorFlow and cope (Keras probes for it); nothing needed it: the stages ran.
    assert not attempts.exists() or set(attempts.read_text().split()) <= {"tensorflow"}


def test_switching_the_backend_reruns_embed_and_fine_tuning(on_jax) -> None:
    repo, _, _, attempts, _ = on_jax
    env = backend_env("jax", attempts)
    env["KERAS_BACKEND"] = "tensorflow"  # only the fingerprint runs: it reads the variable, imports nothing
    fingerprint = repo / "data/fingerprints/backend.json"
    written = fingerprint.read_bytes()
    try:
        run(repo, sys.executable, "-m", "stages.fingerprint", env=env)
        status = json.loads(run(repo, sys.executable, "-m", "dvc", "status", "--json", env=env).stdout)
    finally:
        fingerprint.write_bytes(written)  # the module's project stays on JAX for the other tests
    assert {"embed", *(f"train@{v}" for v in VARIANTS)} <= set(status)
    assert "subsample" not in status and "corrupt" not in status
