"""Unit tests for stages.lib.evaluate.comparisons: weighted metrics, the repeat-level test (its false-positive rate
simulated under the null), the probability of improvement, Holm, and compare_variants."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from statsmodels.stats.multitest import multipletests

from stages.lib.evaluate.comparisons import (
    compare_variants,
    comparison_pairs,
    holm,
    probability_of_improvement,
    repeat_level_test,
    resample_weights,
    resampled_metrics,
)


def binary_scores(y: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """P(positive) scores that are right (on the 0.5 rule) on about `accuracy` of the images."""
    right = rng.random(len(y)) < accuracy
    predicted = np.where(right, y, 1 - y)
    margin = rng.uniform(0.01, 0.5, size=len(y))
    return np.where(predicted == 1, 0.5 + margin * 0.99, 0.5 - margin)


# --- the weighted metrics behind each bootstrap replicate ----------------------------------------


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_resampled_metrics_equal_sklearn_with_sample_weights(task: str) -> None:
    rng = np.random.default_rng(0)
    n = 60
    if task == "binary":
        y = rng.integers(0, 2, size=n)
        scores = np.round(rng.random(n), 1)  # many ties
    else:
        y = rng.integers(0, 3, size=n)
        scores = rng.dirichlet(np.ones(3), size=n)
    weights = np.vstack([np.ones(n), rng.multinomial(n, np.ones(n) / n, size=5)])
    threshold = 0.3
    got = resampled_metrics(y, scores, task, weights, threshold)
    predicted = scores.argmax(axis=1) if task == "multiclass" else (scores >= threshold).astype(int)
    for row, w in enumerate(weights):
        assert got["accuracy"][row] == pytest.approx(skm.accuracy_score(y, predicted, sample_weight=w))
        assert got["balanced_accuracy"][row] == pytest.approx(
            skm.balanced_accuracy_score(y, predicted, sample_weight=w)
        )
        if task == "binary":
            assert got["auc"][row] == pytest.approx(skm.roc_auc_score(y, scores, sample_weight=w))
            assert "macro_f1" not in got
        else:
            want_auc = skm.roc_auc_score(y, scores, sample_weight=w, multi_class="ovr", labels=[0, 1, 2])
            assert got["auc"][row] == pytest.approx(want_auc)
            want_f1 = skm.f1_score(y, predicted, sample_weight=w, average="macro", labels=[0, 1, 2], zero_division=0)
            assert got["macro_f1"][row] == pytest.approx(want_f1)


@pytest.mark.parametrize("seed", range(6))
def test_resampled_auc_equals_sklearn_with_ties_and_rare_positives(seed: int) -> None:
    # The AUC's running sum is over the negatives only: ties across classes, at the ends, one positive.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 120))
    y = (rng.random(n) < rng.uniform(0.02, 0.6)).astype(int)
    y[0], y[-1] = 1, 0
    scores = np.round(rng.random(n), int(rng.integers(1, 3)))
    scores[: n // 4] = scores[0]  # a large tie group
    weights = np.vstack([np.ones(n), rng.multinomial(n, np.ones(n) / n, size=8)])
    got = resampled_metrics(y, scores, "binary", weights)["auc"]
    for row, w in enumerate(weights):
        kept = w > 0
        if len(np.unique(y[kept])) < 2:
            assert np.isnan(got[row])
        else:
            assert got[row] == pytest.approx(skm.roc_auc_score(y, scores, sample_weight=w), abs=1e-12)


def test_resampled_auc_is_nan_without_both_classes() -> None:
    y = np.array([0, 0, 1, 1])
    weights = np.array([[1.0, 2.0, 0.0, 0.0]])
    assert np.isnan(resampled_metrics(y, np.array([0.1, 0.7, 0.8, 0.4]), "binary", weights)["auc"][0])


def test_resample_weights_row_zero_is_the_test_set_and_rows_draw_n_images() -> None:
    weights = resample_weights(50, 20, seed=3)
    assert weights.shape == (21, 50)
    np.testing.assert_array_equal(weights[0], np.ones(50))
    np.testing.assert_array_equal(weights.sum(axis=1), np.full(21, 50.0))
    np.testing.assert_array_equal(weights, resample_weights(50, 20, seed=3))


# --- the repeat-level test of one metric ------------------------------------------------------------


def test_probability_of_improvement_by_hand() -> None:
    # Paired by repeat: (b, a) = (2, 1) 1, (3, 2) 1 -> 1; unpaired it would count (2, 2) too (0.875).
    assert probability_of_improvement(np.array([1.0, 2.0]), np.array([2.0, 3.0])) == 1.0
    # (2, 1) 1, (2, 3) 0, (3, 3) 0.5 -> 1.5 / 3.
    assert probability_of_improvement(np.array([1.0, 3.0, 3.0]), np.array([2.0, 2.0, 3.0])) == 0.5
    assert probability_of_improvement(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5


def test_identical_variants_differ_by_exactly_zero_with_p_one() -> None:
    rng = np.random.default_rng(1)
    metric = rng.random((5, 101))
    result = repeat_level_test(metric, metric.copy())
    assert result["difference"] == 0.0 and result["p_value"] == 1.0
    assert result["ci95_low"] == result["ci95_high"] == 0.0
    assert result["probability_of_improvement"] == 0.5


def test_difference_is_the_mean_over_repeats_of_the_test_set_differences() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random((4, 51)), rng.random((4, 51))
    result = repeat_level_test(a, b)
    assert result["difference"] == pytest.approx(np.mean(b[:, 0] - a[:, 0]))
    assert result["ci95_low"] < result["difference"] < result["ci95_high"]
    assert result["se"] ** 2 == pytest.approx(result["se_repeats"] ** 2 + result["se_test"] ** 2)


def test_one_repeat_gives_no_p_value() -> None:
    result = repeat_level_test(np.full((1, 11), 0.5), np.full((1, 11), 0.7))
    assert result["p_value"] is None and result["ci95_low"] is None
    assert result["difference"] == pytest.approx(0.2)


def test_without_training_variance_the_error_is_the_test_sets_alone() -> None:
    # Every repeat the same models (no training randomness): σ²_repeat = 0, and the variance left is the
    # bootstrap's over test images, which the correction recovers exactly.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=300)
    weights = resample_weights(300, 400, seed=0)
    a, b = binary_scores(y, 0.8, rng), binary_scores(y, 0.85, rng)
    ra = np.array([resampled_metrics(y, a, "binary", weights)["accuracy"]] * 5)
    rb = np.array([resampled_metrics(y, b, "binary", weights)["accuracy"]] * 5)
    result = repeat_level_test(ra, rb)
    assert result["se_repeats"] == 0.0
    assert result["se_test"] == pytest.approx(result["se_models_fixed"])
    assert result["se_models_fixed"] == pytest.approx(np.std(rb[0, 1:] - ra[0, 1:], ddof=1))
    assert result["df"] == float("inf")
    # Below MIN_SATTERTHWAITE_REPEATS the df is R - 1 whatever the variances.
    assert repeat_level_test(ra[:4], rb[:4])["df"] == 3.0


def simulated_models(
    rng: np.random.Generator, y: np.ndarray, latent: np.ndarray, shift: float, repeats: int
) -> list[np.ndarray]:
    """Test scores of `repeats` models of one procedure: each model's errors are correlated across images (a
    model-level bias and a random direction in the images' `latent` space), as trained heads' are; `shift`
    moves the procedure's logits towards the true class."""
    n = len(y)
    runs = []
    for _ in range(repeats):
        bias = rng.normal(0.0, 0.6)
        direction = rng.normal(size=latent.shape[1]) * 0.5
        logit = 1.5 * (2 * y - 1) + shift * (2 * y - 1) + bias + latent @ direction + rng.normal(0, 0.5, n)
        runs.append(1 / (1 + np.exp(-logit)))
    return runs


@pytest.mark.parametrize("repeats", [3, 5])
def test_false_positive_rate_under_the_null_is_nominal_and_the_image_bootstrap_is_not(repeats: int) -> None:
    """Two identical procedures, only their training randomness differing, on 200 simulated test sets: the
    repeat-level test rejects at about 5 % (at 3 repeats too, with df R - 1: Satterthwaite's df rejected
    0.077 there); a test that holds the trained models fixed rejects far more."""
    rng = np.random.default_rng(2026)
    rejections, image_only, sets = 0, 0, 200
    for _ in range(sets):
        y = (rng.random(300) < 0.2).astype(np.int64)
        latent = rng.normal(size=(300, 8))
        scores = {
            "A": simulated_models(rng, y, latent, 0.0, repeats),
            "B": simulated_models(rng, y, latent, 0.0, repeats),
        }
        entry = compare_variants(y, scores, [("A", "B")], "binary", n_resamples=200, seed=int(rng.integers(1e6)))
        result = entry["B vs A"]
        rejections += result["p_value"] < 0.05
        verdict = result["balanced_accuracy"]
        image_only += abs(verdict["difference"]) > 1.96 * verdict["se_models_fixed"]
    assert 0.02 <= rejections / sets <= 0.08
    assert image_only / sets > 0.3


def test_a_real_difference_is_found() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(400) < 0.2).astype(np.int64)
    latent = rng.normal(size=(400, 8))
    scores = {"A": simulated_models(rng, y, latent, 0.0, 10), "B": simulated_models(rng, y, latent, 1.0, 10)}
    result = compare_variants(y, scores, [("A", "B")], "binary", n_resamples=200)["B vs A"]
    assert result["p_value"] < 0.01 and result["significant"]
    assert result["balanced_accuracy"]["ci95_low"] > 0
    assert result["probability_of_improvement"] >= 0.8  # B beat A in at least 8 of the 10 repeats


# --- Holm ------------------------------------------------------------------------------------------


def test_holm_by_hand() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03, 0.06, 0.06.
    reject, adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_array_equal(reject, [True, False, False, True])
    reject, adjusted = holm([0.5, 0.9])
    np.testing.assert_allclose(adjusted, [1.0, 1.0])
    assert not reject.any()


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.02, size=3), rng.uniform(0, 1, size=5), [0.01, 0.01]])
    for alpha in (0.05, 0.1):
        want_reject, want_adjusted, _, _ = multipletests(p, alpha=alpha, method="holm")
        reject, adjusted = holm(p, alpha)
        np.testing.assert_array_equal(reject, want_reject)
        np.testing.assert_allclose(adjusted, want_adjusted, rtol=1e-12)


def test_holm_rejects_bad_p_values() -> None:
    with pytest.raises(ValueError, match="p-values"):
        holm([0.1, float("nan")])
    with pytest.raises(ValueError, match="p-values"):
        holm([1.5])
    reject, adjusted = holm([])
    assert reject.shape == adjusted.shape == (0,)


# --- all comparisons of one experiment (what the evaluate stage writes to metrics/comparisons.json) --------


def test_compare_variants_holds_every_metric_and_holm_over_the_verdict_metric() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(200) < 0.3).astype(np.int64)
    latent = rng.normal(size=(200, 8))
    scores = {name: simulated_models(rng, y, latent, shift, 4) for name, shift in (("a", 0.0), ("b", 0.3), ("c", 1.5))}
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    results = compare_variants(y, scores, pairs, "binary", verdict_metric="auc", n_resamples=100)
    assert list(results) == ["b vs a", "c vs a", "c vs b"]
    for entry in results.values():
        assert entry["metric"] == "auc"
        assert set(entry) >= {"accuracy", "balanced_accuracy", "auc", "p_value", "p_holm", "significant"}
        assert entry["p_value"] == entry["auc"]["p_value"]
        assert entry["probability_of_improvement"] == entry["auc"]["probability_of_improvement"]
    p = [entry["p_value"] for entry in results.values()]
    want_reject, want_adjusted, _, _ = multipletests(p, alpha=0.05, method="holm")
    np.testing.assert_allclose([entry["p_holm"] for entry in results.values()], want_adjusted)
    assert [entry["significant"] for entry in results.values()] == list(want_reject)
    with pytest.raises(ValueError, match="macro_f1"):
        compare_variants(y, scores, pairs, "binary", verdict_metric="macro_f1")


def test_compare_variants_applies_each_repeats_threshold() -> None:
    rng = np.random.default_rng(6)
    y = (rng.random(100) < 0.3).astype(np.int64)
    runs = [rng.uniform(0.2, 0.45, size=100) for _ in range(3)]  # all below 0.5
    scores = {"a": runs, "b": [r.copy() for r in runs]}
    results = compare_variants(y, scores, [("a", "b")], "binary", thresholds={"b": [0.0] * 3}, n_resamples=50)
    # b's threshold 0 calls every image positive: its accuracy is the positives' share, a's the negatives'.
    assert results["b vs a"]["accuracy"]["difference"] == pytest.approx(2 * y.mean() - 1)
    assert results["b vs a"]["auc"]["difference"] == 0.0


def test_compare_variants_with_one_repeat_tests_nothing() -> None:
    y = np.array([0, 1] * 20)
    scores = {"a": [np.full(40, 0.4)], "b": [np.linspace(0, 1, 40)]}
    entry = compare_variants(y, scores, [("a", "b")], "binary", n_resamples=20)["b vs a"]
    assert entry["p_value"] is None and entry["p_holm"] is None and entry["significant"] is False


def test_compare_variants_refuses_unpaired_repeats() -> None:
    y = np.array([0, 1, 0, 1])
    scores = {"a": [np.full(4, 0.5)] * 2, "b": [np.full(4, 0.5)] * 3}
    with pytest.raises(ValueError, match="repeats"):
        compare_variants(y, scores, [("a", "b")], "binary")


def test_comparison_pairs_for_every_combination_of_label_sets() -> None:
    losses = ("bce", "l1")
    pairs, skipped = comparison_pairs(losses, ("clean", "noisy"))
    assert pairs == [("bce-noisy", "l1-noisy"), ("bce-clean", "bce-noisy"), ("l1-clean", "l1-noisy")]
    assert skipped == []
    pairs, skipped = comparison_pairs(losses, ("clean", "noisy", "pruned"))
    assert pairs[:2] == [("bce-noisy", "l1-noisy"), ("bce-pruned", "l1-pruned")]
    assert pairs[-2:] == [("bce-noisy", "bce-pruned"), ("l1-noisy", "l1-pruned")]
    # Pruned labels alone (issue 24): the losses compared on them; what needs another label set is skipped.
    pairs, skipped = comparison_pairs(losses, ("pruned",))
    assert pairs == [("bce-pruned", "l1-pruned")]
    assert skipped == ["pruned vs clean: train.labels has no clean labels"]
    assert comparison_pairs(losses, ("clean", "pruned"))[0][-1] == ("l1-clean", "l1-pruned")
    assert comparison_pairs(("bce",), ("clean",)) == ([], [])
    assert comparison_pairs(losses, ("noisy",)) == (
        [("bce-noisy", "l1-noisy")],
        ["noisy vs clean: train.labels has no clean labels"],
    )
