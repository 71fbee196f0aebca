"""Scoring one variant's models on the test set's true labels from the predictions the train stage saved
beside each model (heads or fine-tuned ResNet50s alike, with no network run and no TensorFlow loaded: the
test losses use the losses' NumPy backend), and the plot data of one model: the confusion table, the
reliability diagram's non-empty bins and, for the binary task, the ROC curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from stages.lib.core.errors import UserError
from stages.lib.core.io import load_array, read_json
from stages.lib.core.params import TrainParams
from stages.lib.core.variants import SCORES_FILE, SELECTION_FILE, model_dir, targets
from stages.lib.evaluate.metrics import (
    DECISION_THRESHOLD,
    binary_metrics,
    multiclass_metrics,
    predict_labels,
    reliability_bins,
)
from stages.lib.noise.transition import no_noise


def score(y_true: np.ndarray, scores: np.ndarray, task: str, names: list[str], threshold: float) -> dict:
    if task == "binary":
        return binary_metrics(y_true, scores, threshold)
    return multiclass_metrics(y_true, scores, names)


def test_scores(variant: str, repeat: int, rows: int, task: str, num_classes: int) -> np.ndarray:
    """The test-set predictions the train stage wrote for one seed's model, checked against the test set."""
    path = model_dir(variant) / SCORES_FILE.format(seed=repeat)
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro` (train stage {variant})")
    scores = load_array(path).astype(np.float64)
    expected = (rows,) if task == "binary" else (rows, num_classes)
    if scores.shape != expected:
        raise UserError(f"{path} holds {scores.shape} scores, the test set needs {expected}: rerun `dvc repro`")
    return scores


def selection(variant: str, repeat: int) -> dict:
    """What the train stage chose for one seed's model: the epoch kept (from 1), its accuracy on the validation
    labels, and whatever else it selected on them (the decision threshold, hyper-parameters), as saved."""
    saved = read_json(model_dir(variant) / SELECTION_FILE.format(seed=repeat))
    chosen = {key: value for key, value in saved.items() if key != "select_epoch"}
    # None without a validation set: NaN, so that metrics.json says null.
    chosen["val_accuracy"] = float("nan") if saved.get("val_accuracy") is None else saved["val_accuracy"]
    chosen.setdefault("threshold", DECISION_THRESHOLD)
    return chosen


def evaluate_variant(
    variant: str,
    loss: str,
    settings: TrainParams,
    y_true: np.ndarray,
    task: str,
    names: list[str],
) -> tuple[dict[str, dict], list[np.ndarray]]:
    """Metrics of each seed's model, and each seed's test scores (in seed order)."""
    from stages.lib.losses import mean_loss

    per_seed, all_scores = {}, []
    for repeat in settings.seeds:
        scores = test_scores(variant, repeat, len(y_true), task, len(names))
        chosen = selection(variant, repeat)
        result = score(y_true, scores, task, names, chosen["threshold"])
        y_onehot = targets(y_true, task, len(names))
        prob_matrix = scores.reshape(-1, 1) if task == "binary" else scores
        # The test labels are true: for the forward loss their noise model is the identity (plain CE).
        transition = no_noise(len(names)) if loss == "forward" else None
        result["loss"] = mean_loss(loss, task, settings.loss_params[loss], y_onehot, prob_matrix, transition)
        result["log_loss"] = mean_loss("bce", task, {}, y_onehot, prob_matrix)
        per_seed[str(repeat)] = {**result, **chosen}
        all_scores.append(scores)
    return per_seed, all_scores


def plot_tables(
    y_true: np.ndarray, scores: np.ndarray, task: str, names: list[str], threshold: float
) -> dict[str, pd.DataFrame]:
    """Data for DVC's confusion template (actual, predicted; at the model's own threshold), the reliability
    diagram (its non-empty bins: stages.lib.evaluate.metrics.reliability_bins) and, for binary, the ROC curve."""
    bins = reliability_bins(y_true, scores, task)
    used = bins["count"] > 0
    predicted = predict_labels(scores, task, threshold)
    tables = {
        "confusion": pd.DataFrame({"actual": np.array(names)[y_true], "predicted": np.array(names)[predicted]}),
        "reliability": pd.DataFrame(
            {
                "bin": np.flatnonzero(used) + 1,
                "low": np.round(bins["low"][used], 6),
                "high": np.round(bins["high"][used], 6),
                "predicted": bins["predicted"][used],
                "observed": bins["observed"][used],
                "count": bins["count"][used],
            }
        ),
    }
    if task == "binary":
        fpr, tpr, thresholds = roc_curve(y_true, scores)
        tables["roc"] = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.clip(thresholds, 0, 1)})
    return tables
