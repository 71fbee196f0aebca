"""Unit tests for stages.lib.comparisons: paired bootstrap, McNemar, the sign test over seeds, Holm."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from stages.lib.comparisons import (
    compare_variants,
    holm,
    mcnemar_exact,
    mcnemar_per_seed,
    paired_bootstrap,
    resampled_metrics,
    sign_test_over_seeds,
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
    got = resampled_metrics(y, scores, task, weights)
    predicted = scores.argmax(axis=1) if task == "multiclass" else (scores >= 0.5).astype(int)
    for row, w in enumerate(weights):
        assert got["accuracy"][row] == pytest.approx(skm.accuracy_score(y, predicted, sample_weight=w))
        assert got["balanced_accuracy"][row] == pytest.approx(
            skm.balanced_accuracy_score(y, predicted, sample_weight=w)
        )
        want_auc = skm.roc_auc_score(y, scores, sample_weight=w, multi_class="ovr", labels=[0, 1, 2])
        if task == "binary":
            want_auc = skm.roc_auc_score(y, scores, sample_weight=w)
        assert got["auc"][row] == pytest.approx(want_auc)


def test_resampled_auc_is_nan_without_both_classes() -> None:
    y = np.array([0, 0, 1, 1])
    weights = np.array([[1.0, 2.0, 0.0, 0.0]])
    assert np.isnan(resampled_metrics(y, np.array([0.1, 0.7, 0.8, 0.4]), "binary", weights)["auc"][0])


# --- paired bootstrap ------------------------------------------------------------------------------


def test_bootstrap_of_identical_variants_is_exactly_zero() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=100)
    runs = [rng.random(100) for _ in range(3)]
    result = paired_bootstrap(y, runs, [r.copy() for r in runs], "binary", n_resamples=300)
    for metric in ("accuracy", "balanced_accuracy", "auc"):
        assert result[metric]["difference"] == 0.0
        assert result[metric]["ci95"] == [0.0, 0.0]
        assert result[metric]["resamples"] == 300


def test_bootstrap_difference_is_the_mean_over_seeds_on_the_full_test_set() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=80)
    runs_a = [rng.random(80) for _ in range(2)]
    runs_b = [rng.random(80) for _ in range(2)]
    result = paired_bootstrap(y, runs_a, runs_b, "binary", n_resamples=50)
    accuracy = [np.mean((b >= 0.5) == y) - np.mean((a >= 0.5) == y) for a, b in zip(runs_a, runs_b, strict=True)]
    auc = [skm.roc_auc_score(y, b) - skm.roc_auc_score(y, a) for a, b in zip(runs_a, runs_b, strict=True)]
    assert result["accuracy"]["difference"] == pytest.approx(np.mean(accuracy))
    assert result["auc"]["difference"] == pytest.approx(np.mean(auc))


def test_bootstrap_interval_covers_the_true_difference() -> None:
    """Synthetic: B is right on each image with probability 0.85, A with 0.75, independently; the true accuracy
    difference is 0.10. Over 100 test sets, the 95 % interval covers it about 95 times, and excludes 0 when
    the test set is large."""
    truth, covered = 0.10, 0
    for draw in range(100):
        rng = np.random.default_rng(100 + draw)
        y = rng.integers(0, 2, size=150)
        a = [binary_scores(y, 0.75, rng) for _ in range(2)]
        b = [binary_scores(y, 0.85, rng) for _ in range(2)]
        low, high = paired_bootstrap(y, a, b, "binary", n_resamples=400, seed=draw)["accuracy"]["ci95"]
        covered += low <= truth <= high
    assert 85 <= covered <= 100  # binomial(100, 0.95): 85 is 4 standard deviations below
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, size=2000)
    result = paired_bootstrap(
        y, [binary_scores(y, 0.75, rng)], [binary_scores(y, 0.85, rng)], "binary", n_resamples=500
    )["accuracy"]
    assert 0 < result["ci95"][0] < truth < result["ci95"][1]


def test_bootstrap_is_deterministic_given_its_seed() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=90)
    a = [rng.dirichlet(np.ones(3), size=90) for _ in range(2)]
    b = [rng.dirichlet(np.ones(3), size=90) for _ in range(2)]
    first = paired_bootstrap(y, a, b, "multiclass", n_resamples=200, seed=5)
    assert paired_bootstrap(y, a, b, "multiclass", n_resamples=200, seed=5) == first
    other = paired_bootstrap(y, a, b, "multiclass", n_resamples=200, seed=6)
    assert other["accuracy"]["ci95"] != first["accuracy"]["ci95"]
    assert other["accuracy"]["difference"] == first["accuracy"]["difference"]


def test_bootstrap_rejects_unpaired_inputs() -> None:
    y = np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="must be paired"):
        paired_bootstrap(y, [np.zeros(10)], [np.zeros(10), np.zeros(10)], "binary")
    with pytest.raises(ValueError, match="scores for 9 images, the test set has 10"):
        paired_bootstrap(y, [np.zeros(9)], [np.zeros(10)], "binary")


# --- McNemar and the sign test over seeds ----------------------------------------------------------


def correctness(only_a: int, only_b: int, both: int = 3, neither: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([True] * only_a + [False] * only_b + [True] * both + [False] * neither)
    b = np.array([False] * only_a + [True] * only_b + [True] * both + [False] * neither)
    return a, b


def test_mcnemar_by_hand() -> None:
    # 1 vs 5 discordant: 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * 7/64.
    assert mcnemar_exact(*correctness(1, 5)) == pytest.approx(14 / 64)
    assert mcnemar_exact(*correctness(0, 6)) == pytest.approx(2 / 64)
    assert mcnemar_exact(*correctness(3, 3)) == 1.0
    assert mcnemar_exact(*correctness(0, 0)) == 1.0


@pytest.mark.parametrize(("only_a", "only_b"), [(0, 0), (0, 1), (1, 5), (4, 4), (7, 2), (0, 12), (20, 35), (51, 50)])
def test_mcnemar_matches_statsmodels(only_a: int, only_b: int) -> None:
    a, b = correctness(only_a, only_b, both=10, neither=4)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert mcnemar_exact(a, b) == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)


def test_mcnemar_per_seed_scores_each_seed() -> None:
    y = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    a = [np.array([0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.9, 0.1]), np.full(8, 0.4)]
    b = [np.full(8, 0.6), np.array([0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.9, 0.1])]
    # Seed 0: A right everywhere, B (all positive) wrong on the 4 negatives; seed 1 the mirror image.
    assert mcnemar_per_seed(y, a, b, "binary") == pytest.approx([2 / 16, 2 / 16])


def test_sign_test_with_one_seed_is_mcnemar() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=200)
    a, b = [binary_scores(y, 0.7, rng)], [binary_scores(y, 0.8, rng)]
    assert sign_test_over_seeds(y, a, b, "binary")["p_value"] == mcnemar_per_seed(y, a, b, "binary")[0]


def test_sign_test_over_seeds_by_hand() -> None:
    # Two seeds, six images; per image, seeds B right minus seeds A right:
    y = np.array([1, 1, 1, 1, 1, 1])
    a = [np.array([0.9, 0.1, 0.1, 0.9, 0.9, 0.1]), np.array([0.9, 0.1, 0.9, 0.1, 0.1, 0.1])]
    b = [np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.1]), np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.1])]
    # d = (0, 2, 1, 1, -1, 0): B better on 3 images, A on 1, 2 ties drop: 2 * P(X <= 1 | Bin(4, 1/2)) = 10/16.
    got = sign_test_over_seeds(y, a, b, "binary")
    assert got == {"p_value": pytest.approx(10 / 16), "b_better": 3, "a_better": 1}


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


def study_scores(y: np.ndarray, accuracies: dict[str, float], seeds: int = 3) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(5)
    return {name: [binary_scores(y, accuracy, rng) for _ in range(seeds)] for name, accuracy in accuracies.items()}


def test_compare_variants_gives_each_pair_the_module_s_tests_and_holm_over_them() -> None:
    from stages.evaluate import comparison_pairs

    y = (np.random.default_rng(4).random(300) < 0.2).astype(np.int64)
    scores = study_scores(y, {"bce-clean": 0.9, "bce-noisy": 0.7, "l1-clean": 0.88, "l1-noisy": 0.86, "gce-clean": 0.9})
    scores["gce-noisy"] = scores["l1-noisy"]  # identical predictions: nothing to tell apart
    pairs = comparison_pairs(("bce", "l1", "gce"))
    assert pairs == [
        ("bce-noisy", "l1-noisy"),
        ("bce-noisy", "gce-noisy"),
        ("l1-noisy", "gce-noisy"),
        ("bce-clean", "bce-noisy"),
        ("l1-clean", "l1-noisy"),
        ("gce-clean", "gce-noisy"),
    ]
    results = compare_variants(y, scores, pairs, "binary", n_resamples=300, seed=2, seed_names=(7, 8, 9))
    assert list(results) == [f"{b} vs {a}" for a, b in pairs]
    for (a, b), entry in zip(pairs, results.values(), strict=True):
        assert (entry["a"], entry["b"]) == (a, b)
        # The same numbers as the module's functions on that pair alone (one set of resamples for all pairs).
        alone = paired_bootstrap(y, scores[a], scores[b], "binary", n_resamples=300, seed=2)
        for metric in ("accuracy", "balanced_accuracy", "auc"):
            low, high = alone[metric]["ci95"]
            assert entry[metric] == {
                "difference": alone[metric]["difference"],
                "ci95_low": low,
                "ci95_high": high,
                "resamples": alone[metric]["resamples"],
            }
        per_seed = mcnemar_per_seed(y, scores[a], scores[b], "binary")
        assert entry["mcnemar_p"] == {str(seed): p for seed, p in zip((7, 8, 9), per_seed, strict=True)}
        sign = sign_test_over_seeds(y, scores[a], scores[b], "binary")
        assert (entry["p_value"], entry["b_better"], entry["a_better"]) == (
            sign["p_value"],
            sign["b_better"],
            sign["a_better"],
        )
    # Holm over the six sign-test p-values, as statsmodels computes it.
    p_values = [entry["p_value"] for entry in results.values()]
    reject, adjusted, _, _ = multipletests(p_values, alpha=0.05, method="holm")
    np.testing.assert_allclose([entry["p_holm"] for entry in results.values()], adjusted)
    assert [entry["significant"] for entry in results.values()] == list(reject)
    assert results["l1-noisy vs bce-noisy"]["significant"]  # 0.86 vs 0.7 on 300 images, 3 seeds
    assert results["gce-noisy vs l1-noisy"]["accuracy"]["difference"] == 0.0
    assert results["gce-noisy vs l1-noisy"]["p_holm"] == 1.0 and not results["gce-noisy vs l1-noisy"]["significant"]


def test_compare_variants_refuses_unpaired_seeds() -> None:
    y = np.array([0, 1, 0, 1])
    scores = {"a": [np.full(4, 0.4)] * 2, "b": [np.full(4, 0.6)]}
    with pytest.raises(ValueError, match="paired"):
        compare_variants(y, scores, [("a", "b")], "binary")
