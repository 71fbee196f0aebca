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


# Calibration (Guo, Pleiss, Sun & Weinberger, ICML 2017): 15 equal-width bins on [0, 1], each right-closed
# ((m - 1)/15, m/15], the first also holding 0.
CALIBRATION_BINS = 15


def reliability_bins(y_true: np.ndarray, scores: np.ndarray, task: str, bins: int = CALIBRATION_BINS) -> dict:
    """The reliability diagram's bins: per bin its edges (`low`, `high`), `count`, the mean predicted
    probability (`predicted`) and the observed frequency (`observed`; NaN for an empty bin).

    Binary: P(positive) against the share of positives in the bin, the binary reliability diagram
    (DeGroot & Fienberg 1983; Niculescu-Mizil & Caruana, ICML 2005; scikit-learn's calibration_curve) and the
    ECE of Naeini, Cooper & Hauskrecht (AAAI 2015) — informative at 19 % positives, where the top-label
    confidence max(p, 1 - p) would leave the bins below 0.5 empty. Multiclass: the confidence of the
    predicted class (its probability) against the accuracy in the bin (Guo et al. 2017).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if task == "binary":
        predicted, outcome = scores.reshape(-1), (y_true == 1).astype(np.float64)
    else:
        predicted = scores.max(axis=1)
        outcome = (predict_labels(scores, task) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, predicted, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=predicted, minlength=bins) / count
        observed = np.bincount(index, weights=outcome, minlength=bins) / count
    return {"low": edges[:-1], "high": edges[1:], "count": count, "predicted": mean_predicted, "observed": observed}


def expected_calibration_error(y_true: np.ndarray, scores: np.ndarray, task: str) -> float:
    """ECE: sum over the reliability bins of (count / n) x |observed - predicted| (reliability_bins)."""
    table = reliability_bins(y_true, scores, task)
    used = table["count"] > 0
    weights = table["count"][used] / table["count"].sum()
    return float(np.sum(weights * np.abs(table["observed"][used] - table["predicted"][used])))


def brier_score(y_true: np.ndarray, scores: np.ndarray, task: str) -> float:
    """Brier (1950): the mean squared distance of the predicted distribution from the one-hot label, summed
    over the K classes for multiclass (range [0, 2]); binary, mean (P(positive) - y)^2 (range [0, 1],
    scikit-learn's brier_score_loss)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if task == "binary":
        return float(np.mean((scores.reshape(-1) - y_true) ** 2))
    onehot = np.eye(scores.shape[1])[y_true]
    return float(np.mean(np.sum((scores - onehot) ** 2, axis=1)))


def binary_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5
) -> dict[str, float | list[float]]:
    """Accuracy and friends for P(positive) scores against 0/1 labels; predictions are p >= threshold. Also
    calibration: `ece` and `brier` (expected_calibration_error, brier_score)."""
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
        "ece": expected_calibration_error(y_true, p_positive, "binary"),
        "brier": brier_score(y_true, p_positive, "binary"),
    }


def multiclass_metrics(y_true: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, one-vs-rest AUC and per-class recall; predictions = argmax. Also
    calibration: `ece` and `brier` (expected_calibration_error, brier_score)."""
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
        "ece": expected_calibration_error(y_true, probabilities, "multiclass"),
        "brier": brier_score(y_true, probabilities, "multiclass"),
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
