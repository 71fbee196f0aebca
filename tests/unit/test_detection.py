"""Confident learning pieces (stages.lib.detection): metrics on hand-built flags, cleanlab's matrix in our
convention, flags from known probabilities, and the K-fold probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.detection import (
    detection_metrics,
    estimated_transition,
    find_issues,
    out_of_sample_probabilities,
    pruned_rows,
)
from stages.lib.noise import transition_matrix
from stages.lib.params import TrainParams


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
    assert result["flagged"] == 4 and result["flipped"] == 4
    assert result["false_flag_rate"] == pytest.approx(1 / 6)


def test_detection_metrics_with_nothing_flipped_reports_false_flags_only() -> None:
    result = detection_metrics(np.zeros(8, bool), np.array([1, 0, 0, 0, 1, 0, 0, 0], bool), np.linspace(0, 1, 8))
    assert result["auc"] is None
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


def settings(epochs: int = 20) -> TrainParams:
    return TrainParams(
        losses=("bce",), epochs=epochs, batch_size=16, learning_rate=0.05, seeds=(0,), loss_params={"bce": {}}
    )


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_out_of_sample_probabilities_are_distributions_that_find_a_planted_flip(task: str) -> None:
    rng = np.random.default_rng(0)
    num_classes = 2 if task == "binary" else 3
    true = np.repeat(np.arange(num_classes), 40)
    features = rng.normal(size=(len(true), 5)) + 4.0 * np.eye(num_classes, 5)[true]
    given = true.copy()
    given[[0, 45]] = (true[[0, 45]] + 1) % num_classes
    probs = out_of_sample_probabilities(
        features, given, task=task, num_classes=num_classes, folds=4, settings=settings(), seed=1
    )
    assert probs.shape == (len(true), num_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # Out of sample: the head that scores a flipped sample never saw its wrong label, so it disagrees.
    assert (probs.argmax(axis=1)[[0, 45]] == true[[0, 45]]).all()
    again = out_of_sample_probabilities(
        features, given, task=task, num_classes=num_classes, folds=4, settings=settings(), seed=1
    )
    np.testing.assert_array_equal(probs, again)


def test_pruned_rows_drop_exactly_the_flagged_ids_of_their_seed() -> None:
    noisy = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "id": [5, 6, 7, 5, 6, 7], "label": [1, 0, 1, 0, 0, 1]})
    pruned = pruned_rows(noisy, seed=1, flagged_ids=np.array([5, 7]))
    assert pruned.to_dict("list") == {"seed": [1], "id": [6], "label": [0]}
