"""Fine-tuning's choice (stages.lib.train.finetune.choice) is the heads' rule: scoring each epoch of each grid point
as it ends and choosing among the recorded scores gives what stages.lib.train.selection.select_on_validation gives on
every epoch's validation logits at once — the same grid point, epoch, threshold and metric estimate. No Keras."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from stages.lib.core.variants import targets
from stages.lib.losses import settings as loss_settings
from stages.lib.train.finetune.choice import best_epoch, best_model, score_epoch
from stages.lib.train.selection import select_on_validation
from toolkit.project import default_params

SETTINGS = loss_settings.train_params(default_params())


def validation_logits(epochs: int, points: int, task: str, k: int, seed: int = 0):
    """Logits of E epochs × G grid points of models that learn the labels better, then worse (memorising)."""
    rng = np.random.default_rng(seed)
    n = 80
    labels = rng.integers(0, k, size=n) if task == "multiclass" else (rng.random(n) < 0.25).astype(np.int64)
    signal = np.eye(k)[labels] * 2 - 1 if task == "multiclass" else (2.0 * labels - 1)[:, None]
    strength = rng.uniform(0.2, 2.0, size=(epochs, points))
    scale = rng.uniform(0.5, 4.0, size=(epochs, points))  # over-confident models have worse log-losses
    noise = rng.normal(size=(n, epochs, points, signal.shape[1]))
    logits = scale[None, :, :, None] * (strength[None, :, :, None] * signal[:, None, None, :] + noise)
    return labels, logits


@pytest.mark.parametrize(
    ("task", "k", "select_by", "threshold", "select_epoch"),
    [
        ("binary", 2, "log_loss", "smoothed", "val"),
        ("binary", 2, "metric", "empirical", "val"),
        ("binary", 2, "auc", "share", "last"),
        ("multiclass", 3, "log_loss", "smoothed", "val"),
    ],
)
def test_scoring_epoch_by_epoch_chooses_what_select_chooses_from_every_epoch(
    task: str, k: int, select_by: str, threshold: str, select_epoch: str
) -> None:
    settings = replace(SETTINGS, select_by=select_by, threshold=threshold)
    labels, logits = validation_logits(epochs=6, points=3, task=task, k=k)
    logits = logits[..., 0] if task == "binary" else logits
    val_y = targets(labels, task, k)
    per_point = [
        [
            score_epoch(
                logits[:, e, g, None] if task == "binary" else logits[:, e, g],
                val_y,
                task=task,
                metric="balanced_accuracy",
                settings=settings,
                transition=None,
            )
            for e in range(logits.shape[1])
        ]
        for g in range(logits.shape[2])
    ]
    point, epoch = best_model(per_point, select_epoch)
    whole = select_on_validation(
        logits,
        val_y,
        task=task,
        metric="balanced_accuracy",
        settings=settings,
        transition=None,
        select_epoch=select_epoch,
    )
    assert (point, epoch) == (whole.point, whole.epoch)
    kept = per_point[point][epoch]
    assert kept.threshold == pytest.approx(whole.threshold, abs=1e-12)
    assert kept.metric_value == pytest.approx(whole.metric_value, abs=1e-12)
    assert kept.score == pytest.approx(whole.score, abs=1e-12)
    # Within the point, the epoch kept is the one the callback held the weights of.
    assert best_epoch(per_point[point], select_epoch) == epoch
    if select_epoch == "last":
        assert epoch == logits.shape[1] - 1


def test_a_corrected_score_is_the_heads_corrected_score() -> None:
    settings = replace(SETTINGS, select_by="metric")
    labels, logits = validation_logits(epochs=3, points=2, task="binary", k=2, seed=1)
    val_y = targets(labels, "binary", 2)
    transition = np.array([[0.9, 0.1], [0.3, 0.7]])
    scored = score_epoch(
        logits[:, 1, 0, :1], val_y, task="binary", metric="accuracy", settings=settings, transition=transition
    )
    whole = select_on_validation(
        logits[:, 1:2, 0:1, 0], val_y, task="binary", metric="accuracy", settings=settings, transition=transition
    )
    assert scored.corrected and whole.corrected
    assert (scored.score, scored.threshold) == pytest.approx((whole.score, whole.threshold), abs=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy on the NaN logits
def test_a_diverged_epoch_is_never_kept_over_a_number() -> None:
    labels, logits = validation_logits(epochs=3, points=2, task="binary", k=2, seed=2)
    val_y = targets(labels, "binary", 2)
    logits = logits[..., :1].copy()
    logits[:, 2, 1] = np.nan  # the last epoch of the second point diverged
    per_point = [
        [
            score_epoch(
                logits[:, e, g], val_y, task="binary", metric="balanced_accuracy", settings=SETTINGS, transition=None
            )
            for e in range(3)
        ]
        for g in range(2)
    ]
    assert np.isnan(per_point[1][2].score)
    assert best_model(per_point, "last") == (0, 2)
