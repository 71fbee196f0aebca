"""Unit tests for stages.lib.evaluate.metrics against scikit-learn, hand-worked cases and the Wilson formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from stages.lib.evaluate.metrics import (
    binary_metrics,
    brier_score,
    expected_calibration_error,
    majority_baseline,
    multiclass_metrics,
    reliability_bins,
    summarise,
    wilson_interval,
)

Z95 = 1.959964  # standard normal quantile at 0.975


def wilson_by_hand(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval written out: centre and half-width in terms of p̂ = correct / total."""
    p = correct / total
    denominator = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2))
    return centre - half, centre + half


@pytest.mark.parametrize(("correct", "total"), [(90, 100), (661, 734), (0, 20), (20, 20), (1, 3), (250, 500)])
def test_wilson_interval_matches_the_formula(correct: int, total: int) -> None:
    low, high = wilson_interval(correct, total)
    expected_low, expected_high = wilson_by_hand(correct, total)
    assert low == pytest.approx(expected_low, abs=1e-6)
    assert high == pytest.approx(expected_high, abs=1e-6)
    assert 0.0 <= low <= correct / total <= high <= 1.0


@pytest.mark.parametrize(("total", "half_width"), [(100, 0.06), (734, 0.02)])
def test_wilson_half_widths_at_ninety_percent(total: int, half_width: float) -> None:
    # At accuracy 0.9 the 95 % interval is about ±6 points with 100 test images (the notebook's), ±2 with 734.
    low, high = wilson_interval(round(0.9 * total), total)
    assert (high - low) / 2 == pytest.approx(half_width, abs=0.003)


def test_wilson_interval_other_confidence_and_empty() -> None:
    low99, high99 = wilson_interval(90, 100, confidence=0.99)
    expected = wilson_by_hand(90, 100, z=2.5758293)
    assert (low99, high99) == pytest.approx(expected, abs=1e-6)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_binary_metrics_hand_worked() -> None:
    y_true = np.array([0, 0, 1, 1, 1])
    p_positive = np.array([0.1, 0.6, 0.4, 0.8, 0.5])  # predicted 0 1 0 1 1 (0.5 counts as positive)
    result = binary_metrics(y_true, p_positive)
    # TP 2 (0.8, 0.5), FP 1 (0.6), FN 1 (0.4), TN 1 (0.1).
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # Positive-negative pairs ranked right: 0.4>0.1, 0.8>0.1, 0.8>0.6, 0.5>0.1 of 6.
    assert result["auc"] == pytest.approx(4 / 6)
    assert result["accuracy_ci95"] == pytest.approx(list(wilson_by_hand(3, 5)), abs=1e-6)


def test_binary_metrics_threshold() -> None:
    y_true = np.array([0, 1, 1])
    p_positive = np.array([0.2, 0.3, 0.9])
    assert binary_metrics(y_true, p_positive)["accuracy"] == pytest.approx(2 / 3)
    assert binary_metrics(y_true, p_positive, threshold=0.25)["accuracy"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_agree_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = (rng.random(300) < 0.2).astype(np.int64)
    p_positive = np.clip(0.3 * y_true + rng.random(300) * 0.7, 0, 1)
    y_pred = (p_positive >= 0.5).astype(np.int64)
    result = binary_metrics(y_true, p_positive)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert result["auc"] == pytest.approx(skm.roc_auc_score(y_true, p_positive))
    assert result["precision"] == pytest.approx(skm.precision_score(y_true, y_pred))
    assert result["recall"] == pytest.approx(skm.recall_score(y_true, y_pred))
    assert result["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
    assert all(isinstance(v, float) for k, v in result.items() if k != "accuracy_ci95")


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: classes absent from y_true
def test_binary_metrics_single_class_test_set() -> None:
    result = binary_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.7, 0.2, 0.3]))
    assert math.isnan(result["auc"])  # undefined without positives
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["precision"] == result["recall"] == result["f1"] == 0.0


def test_multiclass_metrics_hand_worked() -> None:
    names = ["daisy", "roses", "tulips"]
    y_true = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],  # daisy: right
            [0.2, 0.5, 0.3],  # daisy -> roses
            [0.1, 0.8, 0.1],  # roses: right
            [0.1, 0.6, 0.3],  # roses: right
            [0.3, 0.3, 0.4],  # tulips: right
            [0.5, 0.1, 0.4],  # tulips -> daisy
        ]
    )
    result = multiclass_metrics(y_true, probabilities, names)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["per_class_recall"] == pytest.approx({"daisy": 0.5, "roses": 1.0, "tulips": 0.5})
    assert list(result["per_class_recall"]) == names
    assert result["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # F1 per class: daisy P 1/2 R 1/2; roses P 2/3 R 1; tulips P 1 R 1/2.
    assert result["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert result["accuracy_ci95"] == pytest.approx(list(wilson_by_hand(4, 6)), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_metrics_agree_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    y_true = rng.integers(0, 5, size=400)
    logits = rng.normal(size=(400, 5)) + 1.5 * np.eye(5)[y_true]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = probabilities.argmax(axis=1)
    result = multiclass_metrics(y_true, probabilities, names)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert result["auc"] == pytest.approx(skm.roc_auc_score(y_true, probabilities, multi_class="ovr"))
    recalls = skm.recall_score(y_true, y_pred, average=None)
    assert [result["per_class_recall"][n] for n in names] == pytest.approx(list(recalls))


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: classes absent from y_true
def test_multiclass_metrics_with_a_class_missing_from_the_test_set() -> None:
    names = ["a", "b", "c"]
    y_true = np.array([0, 1, 0, 1])
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.2, 0.5], [0.4, 0.5, 0.1]])
    result = multiclass_metrics(y_true, probabilities, names)
    assert math.isnan(result["auc"])
    assert result["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert result["accuracy"] == pytest.approx(0.75)


def test_majority_baseline_binary() -> None:
    names = ["not_sunflowers", "sunflowers"]
    train = np.array([0] * 8 + [1] * 2)
    y_true = np.array([0, 0, 0, 1, 0])
    result = majority_baseline(train, y_true, "binary", names)
    assert result["predicts"] == "not_sunflowers"
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["balanced_accuracy"] == pytest.approx(0.5)
    assert result["auc"] == 0.5
    assert result["recall"] == 0.0


def test_majority_baseline_binary_when_positives_dominate() -> None:
    result = majority_baseline(np.array([1, 1, 0]), np.array([1, 0, 0, 0]), "binary", ["not_x", "x"])
    assert result["predicts"] == "x"
    assert result["accuracy"] == pytest.approx(0.25)
    assert result["recall"] == 1.0


def test_majority_baseline_multiclass() -> None:
    names = ["daisy", "dandelion", "roses"]
    train = np.array([0, 1, 1, 1, 2, 2])
    y_true = np.array([1, 1, 0, 2, 1])
    result = majority_baseline(train, y_true, "multiclass", names)
    assert result["predicts"] == "dandelion"
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["per_class_recall"] == {"daisy": 0.0, "dandelion": 1.0, "roses": 0.0}
    assert result["balanced_accuracy"] == pytest.approx(1 / 3)
    assert result["auc"] == 0.5


def test_summarise_means_sample_std_and_interval_at_the_mean() -> None:
    per_seed = {
        "0": {"accuracy": 0.80, "auc": 0.90, "accuracy_ci95": [0.7, 0.9], "per_class_recall": {"a": 0.5, "b": 1.0}},
        "1": {"accuracy": 0.85, "auc": 0.95, "accuracy_ci95": [0.7, 0.9], "per_class_recall": {"a": 0.7, "b": 0.9}},
        "2": {"accuracy": 0.90, "auc": 0.85, "accuracy_ci95": [0.7, 0.9], "per_class_recall": {"a": 0.6, "b": 0.8}},
    }
    summary = summarise(per_seed, test_size=200)
    assert summary["accuracy"] == pytest.approx(0.85)
    assert summary["accuracy_std"] == pytest.approx(0.05)  # sample std (n - 1): sqrt((0.05² + 0 + 0.05²) / 2)
    assert summary["auc"] == pytest.approx(0.90)
    assert summary["auc_std"] == pytest.approx(0.05)
    assert summary["per_class_recall"] == pytest.approx({"a": 0.6, "b": 0.9})
    assert "per_class_recall_std" not in summary
    assert summary["accuracy_ci95"] == pytest.approx(list(wilson_by_hand(170, 200)), abs=1e-6)
    assert summary["seeds"] == 3
    assert "accuracy_ci95_std" not in summary


def test_summarise_one_seed_has_zero_std_and_skips_non_numbers() -> None:
    per_seed = {"7": {"accuracy": 0.75, "f1": 0.5, "accuracy_ci95": [0.6, 0.85], "flag": True, "predicts": "x"}}
    summary = summarise(per_seed, test_size=40)
    assert summary["accuracy"] == 0.75
    assert summary["accuracy_std"] == 0.0
    assert summary["f1_std"] == 0.0
    assert "flag" not in summary and "predicts" not in summary
    assert summary["accuracy_ci95"] == pytest.approx(list(wilson_by_hand(30, 40)), abs=1e-6)
    assert summary["seeds"] == 1


def test_summarise_real_metric_dicts() -> None:
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, size=50)
    per_seed = {str(s): binary_metrics(y_true, rng.random(50)) for s in range(4)}
    summary = summarise(per_seed, test_size=50)
    for key in ("accuracy", "balanced_accuracy", "auc", "precision", "recall", "f1"):
        values = [run[key] for run in per_seed.values()]
        assert summary[key] == pytest.approx(np.mean(values))
        assert summary[f"{key}_std"] == pytest.approx(np.std(values, ddof=1))


# --- calibration: ECE and Brier score --------------------------------------------------------------------------


def ece_by_loop(y_true: np.ndarray, scores: np.ndarray, task: str, bins: int = 15) -> float:
    """ECE written out: bin m holds the predictions in (m/bins, (m+1)/bins] (the first also 0); binary on
    P(positive) against the positives' share, multiclass on the top probability against the accuracy."""
    if task == "binary":
        predicted, outcome = list(scores), [float(y == 1) for y in y_true]
    else:
        predicted = [float(max(row)) for row in scores]
        outcome = [float(int(np.argmax(row)) == y) for row, y in zip(scores, y_true, strict=True)]
    total = 0.0
    for m in range(bins):
        low, high = m / bins, (m + 1) / bins
        members = [i for i, p in enumerate(predicted) if (low < p <= high) or (m == 0 and p == 0.0)]
        if members:
            confidence = sum(predicted[i] for i in members) / len(members)
            frequency = sum(outcome[i] for i in members) / len(members)
            total += len(members) / len(predicted) * abs(frequency - confidence)
    return total


def test_ece_hand_worked() -> None:
    # Binary: 0.1, 0.1 (bin 2: 1/15 < p <= 2/15) with one positive: |0.5 - 0.1| x 2/4; 0.9, 0.95 (bins 14
    # and 15) both positive: |1 - 0.9| x 1/4 + |1 - 0.95| x 1/4.
    y_true = np.array([0, 1, 1, 1])
    scores = np.array([0.1, 0.1, 0.9, 0.95])
    assert expected_calibration_error(y_true, scores, "binary") == pytest.approx(0.4 / 2 + 0.1 / 4 + 0.05 / 4)
    # Multiclass: confidences 0.6 (right) and 0.6 (wrong) share a bin: accuracy 0.5, |0.5 - 0.6| = 0.1.
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])
    assert expected_calibration_error(np.array([0, 0]), probabilities, "multiclass") == pytest.approx(0.1)
    # Perfectly confident and right: 0.
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0]), "binary") == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_and_brier_agree_with_independent_computations(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_binary = (rng.random(500) < 0.2).astype(np.int64)
    # A miscalibrated model: the right direction, too confident; a few exact edges (0, 1/15, 1) on purpose.
    p_positive = 1 / (1 + np.exp(-(3.0 * (2 * y_binary - 1) + rng.normal(scale=2.5, size=500))))
    p_positive[:3] = [0.0, 1 / 15, 1.0]
    result = binary_metrics(y_binary, p_positive)
    assert result["brier"] == pytest.approx(skm.brier_score_loss(y_binary, p_positive))
    assert result["ece"] == pytest.approx(ece_by_loop(y_binary, p_positive, "binary"))
    names = ["a", "b", "c", "d", "e"]
    y_multi = rng.integers(0, 5, size=400)
    logits = 2.0 * rng.normal(size=(400, 5)) + 2.0 * np.eye(5)[y_multi]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = multiclass_metrics(y_multi, probabilities, names)
    # scikit-learn's multiclass Brier score is Brier's original: the squared error summed over classes.
    assert result["brier"] == pytest.approx(skm.brier_score_loss(y_multi, probabilities, labels=list(range(5))))
    assert result["ece"] == pytest.approx(ece_by_loop(y_multi, probabilities, "multiclass"))
    assert 0 < result["ece"] < 1 and 0 < result["brier"] < 2


def test_calibrated_predictions_have_a_small_ece() -> None:
    # Labels drawn from the predicted probabilities: calibrated by construction, so ECE is sampling noise only.
    rng = np.random.default_rng(5)
    p_positive = rng.random(20_000)
    y_true = (rng.random(20_000) < p_positive).astype(np.int64)
    assert expected_calibration_error(y_true, p_positive, "binary") < 0.02
    # The same predictions squeezed toward 0 and 1 (overconfident) are not.
    overconfident = np.clip(0.5 + 2 * (p_positive - 0.5), 0, 1)
    assert expected_calibration_error(y_true, overconfident, "binary") > 0.1


def test_reliability_bins_cover_every_prediction() -> None:
    rng = np.random.default_rng(6)
    scores = rng.random(300)
    table = reliability_bins(rng.integers(0, 2, 300), scores, "binary")
    assert len(table["count"]) == 15 and table["count"].sum() == 300
    np.testing.assert_allclose(table["low"], np.arange(15) / 15)
    np.testing.assert_allclose(table["high"], np.arange(1, 16) / 15)
    used = table["count"] > 0
    assert np.all((table["low"][used] <= table["predicted"][used]) & (table["predicted"][used] <= table["high"][used]))
    assert np.isnan(reliability_bins(np.array([1]), np.array([0.5]), "binary")["observed"][0])  # empty bin


def test_brier_score_hand_worked() -> None:
    assert brier_score(np.array([1, 0]), np.array([0.8, 0.4]), "binary") == pytest.approx((0.04 + 0.16) / 2)
    probabilities = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    assert brier_score(np.array([0, 2]), probabilities, "multiclass") == pytest.approx((0.25 + 0.25) / 2)


def test_summarise_has_calibration_with_std() -> None:
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 2, size=60)
    per_seed = {str(s): binary_metrics(y_true, rng.random(60)) for s in range(3)}
    summary = summarise(per_seed, test_size=60)
    for key in ("ece", "brier"):
        assert summary[key] == pytest.approx(np.mean([run[key] for run in per_seed.values()]))
        assert summary[f"{key}_std"] == pytest.approx(np.std([run[key] for run in per_seed.values()], ddof=1))
