"""End to end on real images (scikit-learn's UCI digits, 40 per class): the detect stage finds the flipped
labels far better than chance, the pruned and forward-estimated variants train and are scored, and adding
`pruned` to train.labels trains the pruned variants only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from stages.lib.core import params as core_params
from toolkit.project import copy_project, dvc, make_project, ran_stages, write_params

NOISE = 0.3
# Measured with these settings (seeds 0 and 1): precision 0.90, recall 0.82, estimated noise rate 0.295 and
# 0.320 (docs/detection.md). Flagging at random has precision NOISE; the thresholds leave a wide margin below
# the measurement.
MIN_PRECISION, MIN_RECALL = 0.7, 0.7
# Ten balanced classes: the estimate is right here (on a binary 10 % minority it is not: docs/detection.md).
MAX_NOISE_RATE_ERROR = 0.05


def digits_folder(root: Path, per_class: int) -> Path:
    """The first `per_class` digits of each class as root/<digit>/<index>.png (as scripts/digits_folder.py)."""
    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    for digit in range(10):
        folder = root / str(digit)
        folder.mkdir(parents=True)
        for index in np.flatnonzero(digits.target == digit)[:per_class]:
            Image.fromarray(pixels[index]).save(folder / f"{index:04d}.png")
    return root


@pytest.fixture(scope="module")
def detected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("detect")
    params = {
        "task": "multiclass",
        "noise": NOISE,
        "data": {"positive_class": "8", "train_size": 200, "test_size": 100},
        "train": {"losses": ["bce", "forward"], "loss_params": {"forward": {"T": "estimated"}}},
    }
    repo = make_project(base / "project", digits_folder(base / "digits", per_class=40), params)
    first = dvc(repo, "repro")
    assert "train@bce-pruned" not in ran_stages(first.stdout)
    write_params(repo, {"train": {"labels": ["clean", "noisy", "pruned"]}})
    second = dvc(repo, "repro")
    return repo, second.stdout


def test_adding_pruned_trains_the_pruned_variants_only(detected: tuple[Path, str]) -> None:
    _, output = detected
    assert ran_stages(output) == {"train@bce-pruned", "train@forward-pruned", "evaluate"}


def test_detection_beats_random_flags(detected: tuple[Path, str]) -> None:
    repo, _ = detected
    detection = json.loads((repo / "metrics/details/detection.json").read_text())
    noisy = detection["noisy"]
    headline = json.loads((repo / "metrics/detection.json").read_text())
    assert headline == {
        key: noisy[key] for key in ("precision", "recall", "estimated_noise_rate", "realised_noise_rate")
    }
    shown = ("precision", "recall", "f1", "false_flag_rate", "auc", "average_precision", "estimated_noise_rate")
    shown += ("small_loss_precision", "small_loss_recall", "small_loss_auc", "small_loss_average_precision")
    print({key: round(noisy[key], 3) for key in shown})
    assert noisy["realised_noise_rate"] == pytest.approx(NOISE)  # 40 of each digit in 200: 0.3 x 20 = 6 per class
    assert noisy["noise_rate_error"] == pytest.approx(noisy["estimated_noise_rate"] - NOISE)
    # Ranking far better than chance (AP of a random ranking: the noise rate); the small-loss baseline flags
    # as many as confident learning does, and ranks in the same order as its score but for ties: labels with
    # p(given) < 1e-16 all score 1 - p = 1.0, while -log p still orders them (AUC 0.8869 against 0.8873 on
    # seed 1, measured).
    assert noisy["average_precision"] > NOISE + 0.2
    assert noisy["small_loss_auc"] == pytest.approx(noisy["auc"], abs=0.01)
    for seed in noisy["seeds"].values():
        assert 0 <= seed["small_loss_precision"] <= 1 and 0 <= seed["false_flag_rate"] < 0.5
    assert noisy["precision"] > MIN_PRECISION and noisy["recall"] > MIN_RECALL
    assert noisy["auc"] > 0.7
    assert 0 <= detection["clean"]["false_flag_rate"] < 0.5
    for seed in ("0", "1"):
        assert noisy["seeds"][seed]["model"]["l2"] in core_params.DEFAULT_DETECT_L2  # chosen by out-of-fold log-loss
        assert abs(noisy["seeds"][seed]["noise_rate_error"]) < MAX_NOISE_RATE_ERROR
        estimated = np.array(noisy["seeds"][seed]["estimated_transition_matrix"])
        assert estimated.shape == (10, 10)
        np.testing.assert_allclose(estimated.sum(axis=1), 1.0, atol=1e-5)


def test_pruned_labels_are_the_noisy_ones_without_the_flags(detected: tuple[Path, str]) -> None:
    repo, _ = detected
    noisy = pd.read_csv(repo / "data/labels/noisy.csv")
    issues = pd.read_csv(repo / "data/labels/issues.csv")
    pruned = pd.read_csv(repo / "data/labels/pruned.csv")
    for seed in (0, 1):
        kept = set(noisy.loc[noisy["seed"] == seed, "id"]) - set(
            issues.loc[(issues["seed"] == seed) & issues["flagged"], "id"]
        )
        assert set(pruned.loc[pruned["seed"] == seed, "id"]) == kept


def test_new_variants_are_scored(detected: tuple[Path, str]) -> None:
    repo, _ = detected
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    for variant in ("bce-pruned", "forward-noisy", "forward-pruned", "bce-noisy", "bce-clean"):
        assert 0 <= metrics[variant]["accuracy"] <= 1, variant
    transition = json.loads((repo / "data/detect/transitions/forward-noisy.json").read_text())
    assert transition["T"] == "estimated" and set(transition["seeds"]) == {"0", "1"}
    assert json.loads((repo / "data/detect/transitions/bce-noisy.json").read_text()) is None


def test_pruned_labels_alone_run_to_the_end(detected: tuple[Path, str], tmp_path: Path) -> None:
    """Issue 24: `train.labels: [pruned]` once crashed evaluate (KeyError 'bce-noisy') after every head had
    trained. Now the pruned variants are compared with each other, and the comparisons that need clean or
    noisy labels are skipped with a line saying why. (In a copy: the module's project stays as it was.)"""
    repo = copy_project(detected[0], tmp_path / "project")
    write_params(repo, {"train": {"labels": ["pruned"]}})
    done = dvc(repo, "repro")
    assert "Traceback" not in done.stdout + done.stderr
    assert "comparisons skipped: pruned vs clean: train.labels has no clean labels" in done.stdout + done.stderr
    comparisons = json.loads((repo / "metrics/details/comparisons.json").read_text())
    # The study's one comparison, and the protocol's: each pruned variant against its oracle twin.
    protocol = {f"{variant}:oracle vs {variant}" for variant in ("bce-pruned", "forward-pruned")}
    assert set(comparisons) == {"forward-pruned vs bce-pruned"} | protocol
    assert set(json.loads((repo / "metrics/comparisons.json").read_text())) == {"forward-pruned vs bce-pruned"}
    variants = {"bce-pruned", "forward-pruned"}
    twins = {f"{variant}:oracle" for variant in variants}
    assert set(json.loads((repo / "metrics/metrics.json").read_text())) == variants | twins | {"baseline"}
