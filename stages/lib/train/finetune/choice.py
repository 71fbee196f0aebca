"""Fine-tuning's choice of its model, by the heads' rule (stages.lib.train.selection.select_on_validation): each epoch
of each grid point scored on the variant's own validation labels as it ends, and the (grid point, epoch)
with the best score kept, with its binary threshold.

Every quantity the rule computes for one model — its selection score (train.select_by), its threshold
(train.threshold) and the verdict metric's estimate there — depends on that model's validation logits alone,
so scoring each epoch as it ends and choosing among the recorded scores chooses what `select` would choose
from every epoch's logits at once (tests/unit/test_finetune_choice.py), with nothing but a few numbers per
epoch kept: the weights of the best epoch so far are the only model held back. The binary threshold uses the
validation labels alone: pooling them with out-of-fold logits of the training pool (the heads'
train.threshold_folds) would take K more fine-tunings per model.

No Keras here: the callbacks of stages.lib.train.finetune.model call `score_epoch` with the logits they predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stages.lib.core.params import TrainParams
from stages.lib.evaluate.metrics import DECISION_THRESHOLD, predict_labels
from stages.lib.losses import probabilities
from stages.lib.train.selection import choose, class_labels, select_on_validation

# What the selection file says about the threshold's data (the heads' say which too).
THRESHOLD_DATA = "validation"


@dataclass(frozen=True)
class EpochScore:
    """One epoch's model on the validation labels: its selection score (higher is better), its threshold on
    P(positive) and the verdict metric's estimate there, its accuracy at that threshold and at 0.5, and
    whether a transition matrix corrected the metric."""

    score: float
    threshold: float
    metric_value: float
    val_accuracy: float
    val_accuracy_at_half: float
    corrected: bool

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> EpochScore:
        """Read back from a checkpoint's JSON, where a NaN was written as null."""
        return cls(**{key: float("nan") if value is None else value for key, value in saved.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_epoch(
    logits: np.ndarray,
    val_y: np.ndarray,
    *,
    task: str,
    metric: str,
    settings: TrainParams,
    transition: np.ndarray | None,
) -> EpochScore:
    """One model's validation logits ((N, 1) binary, (N, K) multiclass) scored by the heads' rule."""
    logits = np.asarray(logits, dtype=np.float64)
    column = logits[:, 0] if task == "binary" else logits
    chosen = select_on_validation(
        column[:, None, None], val_y, task=task, metric=metric, settings=settings, transition=transition
    )
    labels = class_labels(val_y, task)
    scores = probabilities(logits, task).astype(np.float64)
    scores = scores[:, 0] if task == "binary" else scores
    return EpochScore(
        score=chosen.score,
        threshold=chosen.threshold,
        metric_value=chosen.metric_value,
        val_accuracy=float(np.mean(predict_labels(scores, task, chosen.threshold) == labels)),
        val_accuracy_at_half=float(np.mean(predict_labels(scores, task, DECISION_THRESHOLD) == labels)),
        corrected=chosen.corrected,
    )


def best_epoch(epochs: Sequence[EpochScore], select_epoch: str) -> int:
    """The 0-based epoch of one grid point's run that select_epoch keeps: `val`, the best score (ties: the
    earliest); `last`, the last."""
    return best_model([epochs], select_epoch)[1]


def best_model(points: Sequence[Sequence[EpochScore]], select_epoch: str) -> tuple[int, int]:
    """(grid point, epoch), 0-based, of the best model among the grid points' runs (each a list of its epochs,
    all as long), by stages.lib.train.selection.choose: ties go to the earliest epoch, then the first point."""
    scores = np.array([[epoch.score for epoch in point] for point in points], dtype=np.float64).T  # (E, G)
    epoch, point = choose(scores, select_epoch)
    return point, epoch


def selection_record(
    chosen: EpochScore,
    *,
    settings: TrainParams,
    metric: str,
    point: dict[str, float],
    grid_size: int,
    start: str,
    probe: dict[str, float] | None,
    scores_by_epoch: Sequence[float],
) -> dict[str, Any]:
    """What the selection file holds for the model kept, in the heads' words (stages.lib.train.head_trainer),
    with fine-tuning's own: where it started (and the head's grid point when it started from one) and the
    kept grid point's score at every epoch."""
    record: dict[str, Any] = {
        "hyper_parameters": dict(point),
        "grid_size": grid_size,
        "select_by": settings.select_by,
        "threshold_rule": settings.threshold,
        "threshold_data": THRESHOLD_DATA,
        "select_score": settings.select_score,
        "val_labels": "given",
        "metric": metric,
        "val_score": chosen.score,
        "val_metric": chosen.metric_value,
        "val_accuracy": chosen.val_accuracy,
        "corrected": chosen.corrected,
        "fine_tune_start": start,
        "val_score_by_epoch": [float(value) for value in scores_by_epoch],
    }
    if probe is not None:
        record["probe_hyper_parameters"] = dict(probe)
    return record
