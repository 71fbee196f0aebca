"""Classification metrics of one set of predictions, and their summary over repeat seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# scikit-learn and scipy.stats are imported inside the functions that use them: the train stage needs only
# predict_labels, and importing them costs about 1 s per stage process (benchmarks/README.md).

# The decision rule, the same in training (accuracy) and evaluation: positive iff P(positive) >= 0.5, i.e.
# logit >= 0 (ties to the positive class).
DECISION_THRESHOLD = 0.5


def predict_labels(scores: np.ndarray, task: str, threshold: float = DECISION_THRESHOLD) -> np.ndarray:
    """Predicted classes (int64) from probability scores: binary ``P(positive) >= threshold`` (scores (N,) or
    (N, 1)), multiclass argmax (ties to the first class)."""
    scores = np.asarray(scores)
    if task == "binary":
        return (scores.reshape(-1) >= threshold).astype(np.int64)
    return scores.argmax(axis=-1).astype(np.int64)


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> list[float]:
    """Wilson score interval for a proportion (correct/total), as [low, high]."""
    from scipy.stats import binomtest

    if total == 0:
        return [float("nan"), float("nan")]
    interval = binomtest(int(correct), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(interval.low), float(interval.high)]


def binary_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5
) -> dict[str, float | list[float]]:
    """Accuracy and friends for P(positive) scores against 0/1 labels; predictions are p >= threshold."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = predict_labels(p_positive, "binary", threshold)
    both_classes = len(np.unique(y_true)) == 2
    correct = int((y_pred == y_true).sum())
    return {
        "accuracy": correct / len(y_true),
        "accuracy_ci95": wilson_interval(correct, len(y_true)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        # A constant score ranks nothing: its AUC is 0.5 by definition.
        "auc": float(skm.roc_auc_score(y_true, p_positive)) if both_classes else float("nan"),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
    }


def multiclass_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, one-vs-rest AUC and per-class recall; predictions = argmax."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = predict_labels(probabilities, "multiclass")
    labels = list(range(len(class_names)))
    correct = int((y_pred == y_true).sum())
    recalls = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    try:
        auc = float(skm.roc_auc_score(y_true, probabilities, multi_class="ovr", labels=labels))
    except ValueError:  # a class absent from y_true
        auc = float("nan")
    return {
        "accuracy": correct / len(y_true),
        "accuracy_ci95": wilson_interval(correct, len(y_true)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "auc": auc,
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class_recall": {name: float(r) for name, r in zip(class_names, recalls, strict=True)},
    }


def majority_baseline(train_labels: np.ndarray, y_true: np.ndarray, task: str, class_names: Sequence[str]) -> dict:
    """What always answering the training pool's most frequent (true) class scores on the test set."""
    num_classes = len(class_names)
    majority = int(np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_classes).argmax())
    if task == "binary":
        scores = np.full(len(y_true), float(majority))
        result = binary_metrics(y_true, scores)
        result["auc"] = 0.5
    else:
        scores = np.eye(num_classes)[np.full(len(y_true), majority)]
        result = multiclass_metrics(y_true, scores, class_names)
        result["auc"] = 0.5
    result["predicts"] = class_names[majority]
    return result


def summarise(per_seed: dict[str, dict], test_size: int) -> dict:
    """Mean over seeds of every scalar metric, `<metric>_std` beside it (sample std; 0 for one seed),
    nested per-class dicts averaged the same way, and the accuracy's Wilson interval at the mean."""
    runs = list(per_seed.values())
    summary: dict = {}
    for key, first in runs[0].items():
        if isinstance(first, bool) or key == "accuracy_ci95":
            continue
        if isinstance(first, int | float):
            values = np.array([run[key] for run in runs], dtype=np.float64)
            summary[key] = float(np.mean(values))
            summary[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        elif isinstance(first, dict):
            summary[key] = {name: float(np.mean([run[key][name] for run in runs])) for name in first}
    summary["accuracy_ci95"] = wilson_interval(round(summary["accuracy"] * test_size), test_size)
    summary["seeds"] = len(runs)
    return summary
