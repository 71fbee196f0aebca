"""Confident learning pieces (stages.lib.noise.detection): metrics on hand-built flags, cleanlab's matrix in our
convention, flags from known probabilities, and the K-fold probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from stages.lib.noise.detection import (
    detection_metrics,
    find_issues,
    noise_rate_metrics,
    out_of_sample_probabilities,
    pruned_rows,
    small_loss_metrics,
    small_loss_scores,
    top_flags,
)
from stages.lib.noise.models import corrupt_labels
from stages.lib.noise.transition import estimated_transition, transition_matrix


def test_detection_metrics_on_a_hand_built_case() -> None:
    # 10 labels, 4 flipped (0-3); flags on 0, 1, 2 (hits) and 5 (a false flag): 3/4 precision, 3/4 recall.
    flipped = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    flagged = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
    # Scores rank flips 0, 1, 2 first, then false 5, then flip 3 above the other 5 clean ones.
    score = np.array([0.9, 0.8, 0.7, 0.5, 0.1, 0.6, 0.2, 0.3, 0.05, 0.0])
    result = detection_metrics(flipped, flagged, score)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 4)
    assert result["f1"] == pytest.approx(3 / 4)
    # AUC: pairs (flip, clean) ranked right: flips 0,1,2 beat all 6; flip 3 (0.5) beats 5 of 6 (not 0.6).
    assert result["auc"] == pytest.approx(23 / 24)
    # AP: precision at each flip's rank (1, 2, 3, 5), averaged: (1 + 1 + 1 + 4/5) / 4.
    assert result["average_precision"] == pytest.approx(0.95)
    assert result["flagged"] == 4 and result["flipped"] == 4
    assert result["false_flag_rate"] == pytest.approx(1 / 6)


def test_detection_metrics_with_nothing_flipped_reports_false_flags_only() -> None:
    result = detection_metrics(np.zeros(8, bool), np.array([1, 0, 0, 0, 1, 0, 0, 0], bool), np.linspace(0, 1, 8))
    assert result["auc"] is None and result["average_precision"] is None
    assert result["precision"] == 0.0 and result["recall"] == 0.0
    assert result["false_flag_rate"] == pytest.approx(2 / 8)


def known_noise(num_classes: int = 3, per_class: int = 30) -> tuple[np.ndarray, np.ndarray]:
    true = np.repeat(np.arange(num_classes), per_class)
    given = true.copy()
    given[:6] = 1  # class 0 -> 1: six of 30
    given[per_class : per_class + 3] = 2  # class 1 -> 2: three of 30
    return true, given


def test_estimated_transition_is_ours_row_stochastic_not_cleanlabs_column_stochastic() -> None:
    # Probabilities that know the true class: the confident joint counts (given, true) exactly, so our
    # estimate must equal the realised T[i, j] = P(given = j | true = i), an asymmetric matrix here.
    true, given = known_noise()
    probs = np.full((len(true), 3), 0.05)
    probs[np.arange(len(true)), true] = 0.9
    estimated, rate = estimated_transition(given, probs)
    np.testing.assert_allclose(estimated, transition_matrix(true, given, 3), atol=1e-12)
    np.testing.assert_allclose(estimated.sum(axis=1), 1.0)
    assert estimated[0, 1] == pytest.approx(6 / 30) and estimated[1, 0] == 0.0
    assert rate == pytest.approx(9 / 90)


def test_find_issues_flags_exactly_the_flips_when_the_probabilities_know_the_truth() -> None:
    true, given = known_noise()
    probs = np.full((len(true), 3), 0.05)
    probs[np.arange(len(true)), true] = 0.9
    issues = find_issues(given, probs)
    np.testing.assert_array_equal(issues.flagged, given != true)
    np.testing.assert_array_equal(issues.predicted, true)
    # Score = 1 - P(given label): 0.95 for the flips, 0.1 for the others.
    np.testing.assert_allclose(issues.score, np.where(given != true, 0.95, 0.1))


def minority_with_exact_flips(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The digits setting's training labels: 61 positives of 600, exactly 30 % of each class flipped."""
    true = np.r_[np.ones(61, dtype=np.int64), np.zeros(539, dtype=np.int64)]
    return true, corrupt_labels(true, 2, 0.3, "symmetric", np.random.default_rng(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_minority_noise_estimate_needs_a_ranking_more_than_a_calibration(seed: int) -> None:
    """Why detect overshoots on the digits setting (docs/detection.md). Probabilities that put every true
    positive above every true negative give the realised T exactly — even shrunk toward the noisy prior as
    the digits' out-of-fold ones are (mean P(positive) 0.331 for the negatives, 0.423 for the positives).
    Probabilities exactly calibrated but from a score that ranks the classes at AUC about 0.9 overshoot: the
    negatives' upper tail crosses the positive class's threshold (the mean P(positive) of the labels given
    positive, 79 % of them flipped negatives), and 539 negatives outnumber 61 positives."""
    from scipy.stats import norm

    true, given = minority_with_exact_flips(seed)
    realised = transition_matrix(true, given, 2)
    flips_negative, flips_positive = realised[0, 1], realised[1, 0]
    realised_rate = float(np.mean(given != true))
    for positive in (flips_negative + (1 - flips_positive - flips_negative) * true, np.where(true == 1, 0.423, 0.331)):
        estimated, rate = estimated_transition(given, np.c_[1 - positive, positive])
        np.testing.assert_allclose(estimated, realised, atol=1e-12)
        assert rate == pytest.approx(realised_rate)
    # A score N(1.8 * true, 1), AUC 0.88-0.92 over seeds 0-4; P(noisy = 1 | score) by Bayes' rule: calibrated by
    # construction.
    score = np.random.default_rng(seed).normal(1.8 * true, 1.0)
    share = true.mean()
    clean_posterior = share * norm.pdf(score, 1.8) / (share * norm.pdf(score, 1.8) + (1 - share) * norm.pdf(score))
    positive = flips_negative + (1 - flips_positive - flips_negative) * clean_posterior
    estimated, rate = estimated_transition(given, np.c_[1 - positive, positive])
    assert rate - realised_rate > 0.04  # measured +0.048 to +0.090 over seeds 0-4
    assert estimated[1, 0] - flips_positive > 0.15  # the positive row: measured +0.22 to +0.31
    assert abs(estimated[0, 1] - flips_negative) < 0.03  # the negative row stays right


STRENGTHS = (0.01, 0.1, 1.0, 10.0)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_out_of_sample_probabilities_are_distributions_that_find_a_planted_flip(task: str) -> None:
    rng = np.random.default_rng(0)
    num_classes = 2 if task == "binary" else 3
    true = np.repeat(np.arange(num_classes), 40)
    features = rng.normal(size=(len(true), 5)) + 4.0 * np.eye(num_classes, 5)[true]
    given = true.copy()
    given[[0, 45]] = (true[[0, 45]] + 1) % num_classes
    found = out_of_sample_probabilities(features, given, num_classes=num_classes, folds=4, l2=STRENGTHS, seed=1)
    probs = found.probabilities
    assert probs.shape == (len(true), num_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # Out of sample: the model that scores a flipped sample never saw its wrong label, so it disagrees.
    assert (probs.argmax(axis=1)[[0, 45]] == true[[0, 45]]).all()
    again = out_of_sample_probabilities(features, given, num_classes=num_classes, folds=4, l2=STRENGTHS, seed=1)
    np.testing.assert_array_equal(probs, again.probabilities)
    assert found.l2 in STRENGTHS


def oof_log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def test_the_strength_kept_has_the_lowest_out_of_fold_log_loss_on_the_given_labels() -> None:
    """The rule that chooses λ sees only the given (noisy) labels: each strength alone gives its own
    out-of-fold probabilities; the grid keeps the one whose log-loss on the given labels is lowest."""
    rng = np.random.default_rng(4)
    true = np.repeat([0, 1], 60)
    features = rng.normal(size=(120, 30)) + 1.5 * np.eye(2, 30)[true]
    given = true.copy()
    given[rng.choice(120, 30, replace=False)] ^= 1
    alone = {
        strength: out_of_sample_probabilities(features, given, num_classes=2, folds=5, l2=[strength], seed=0)
        for strength in STRENGTHS
    }
    losses = {strength: oof_log_loss(found.probabilities, given) for strength, found in alone.items()}
    chosen = out_of_sample_probabilities(features, given, num_classes=2, folds=5, l2=STRENGTHS, seed=0)
    assert chosen.l2 == min(losses, key=losses.get)
    assert chosen.log_loss == pytest.approx(losses[chosen.l2], rel=1e-9)
    np.testing.assert_allclose(chosen.probabilities, alone[chosen.l2].probabilities, atol=1e-4)  # warm start vs cold
    assert len(set(np.round(list(losses.values()), 4))) > 1  # the strengths do differ here


def test_fitting_in_the_row_space_is_fitting_on_the_features() -> None:
    """More features than rows: the L2 fit on the rows' coordinates in their span predicts as the fit on the
    features themselves (representer theorem)."""
    from sklearn.linear_model import LogisticRegression

    from stages.lib.noise.detection import row_space_coordinates

    rng = np.random.default_rng(2)
    x, other = rng.normal(size=(40, 120)), rng.normal(size=(15, 120))
    y = (x[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    full = LogisticRegression(C=0.05, tol=1e-10, max_iter=5000).fit(x, y)
    coordinates, other_coordinates = row_space_coordinates(x, other)
    assert coordinates.shape == (40, 40)
    small = LogisticRegression(C=0.05, tol=1e-10, max_iter=5000).fit(coordinates, y)
    np.testing.assert_allclose(small.predict_proba(other_coordinates), full.predict_proba(other), atol=1e-5)


def test_pruned_rows_drop_exactly_the_flagged_ids_of_their_seed() -> None:
    noisy = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "id": [5, 6, 7, 5, 6, 7], "label": [1, 0, 1, 0, 0, 1]})
    pruned = pruned_rows(noisy, seed=1, flagged_ids=np.array([5, 7]))
    assert pruned.to_dict("list") == {"seed": [1], "id": [6], "label": [0]}


def test_small_loss_is_the_cross_entropy_on_the_given_label() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    labels = np.array([1, 1, 0, 1])
    loss = small_loss_scores(labels, probs)
    np.testing.assert_allclose(loss[:3], -np.log([0.1, 0.8, 0.5]))
    assert np.isfinite(loss[3]) and loss[3] > 700  # p = 0: the most suspect, still a number
    np.testing.assert_array_equal(top_flags(loss, 2), [True, False, False, True])
    np.testing.assert_array_equal(top_flags(np.array([0.5, 0.7, 0.5, 0.5]), 2), [True, True, False, False])
    assert not top_flags(loss, 0).any()


def test_small_loss_flags_as_many_as_asked_and_ranks_as_self_confidence_does() -> None:
    rng = np.random.default_rng(4)
    true = rng.integers(0, 3, size=300)
    given = true.copy()
    flip = rng.random(300) < 0.3
    given[flip] = (true[flip] + rng.integers(1, 3, size=int(flip.sum()))) % 3
    logits = rng.normal(size=(300, 3)) + 2.0 * np.eye(3)[true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    flipped = given != true
    issues = find_issues(given, probs)
    count = int(issues.flagged.sum())
    baseline = small_loss_metrics(flipped, given, probs, count)
    # By hand: the `count` largest -log p(given) flagged.
    loss = -np.log(probs[np.arange(300), given])
    flags = np.zeros(300, bool)
    flags[np.argsort(-loss)[:count]] = True
    assert baseline["small_loss_precision"] == pytest.approx(flipped[flags].mean())
    assert baseline["small_loss_recall"] == pytest.approx(flags[flipped].mean())
    assert baseline["small_loss_average_precision"] == pytest.approx(average_precision_score(flipped, loss))
    # The same order as cleanlab's 1 - self-confidence: the same AUC and AP.
    cleanlab = detection_metrics(flipped, issues.flagged, issues.score)
    assert baseline["small_loss_auc"] == pytest.approx(cleanlab["auc"])
    assert baseline["small_loss_average_precision"] == pytest.approx(cleanlab["average_precision"])


def test_noise_rate_error_is_estimated_minus_realised() -> None:
    flipped = np.array([True, False, False, False])
    result = noise_rate_metrics(0.1, flipped)
    assert result["realised_noise_rate"] == 0.25 and result["estimated_noise_rate"] == 0.1
    assert result["noise_rate_error"] == pytest.approx(-0.15) and result["abs_noise_rate_error"] == pytest.approx(0.15)
