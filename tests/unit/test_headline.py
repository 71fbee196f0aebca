"""The headline metrics (stages.lib.core.headline): a few numbers per variant, the verdict comparisons signed as
"<loss> vs BCE", and few enough numbers in all for `dvc metrics show` / `dvc exp show` to be read."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.core.headline import (
    detection_headline,
    noise_headline,
    reference_loss,
    variant_means,
    verdict_comparisons,
)
from stages.lib.core.variants import BASELINE
from stages.lib.evaluate.comparisons import compare_variants, comparison_pairs

FULL_SUMMARY = {
    "accuracy": 0.9,
    "accuracy_std": 0.01,
    "accuracy_ci95": [0.88, 0.92],
    "balanced_accuracy": 0.8,
    "balanced_accuracy_std": 0.02,
    "auc": 0.85,
    "ece": 0.1,
    "brier": 0.08,
    "epoch": 40.5,
    "seeds": 10,
}


def test_a_variant_keeps_its_means_of_the_four_headline_metrics_and_the_verdict_metric() -> None:
    summary = {"bce-noisy": FULL_SUMMARY, BASELINE: {**FULL_SUMMARY, "predicts": "not_8"}}
    headline = variant_means(summary, "balanced_accuracy")
    assert headline["bce-noisy"] == {"balanced_accuracy": 0.8, "auc": 0.85, "accuracy": 0.9, "ece": 0.1}
    assert headline[BASELINE] == {"balanced_accuracy": 0.8, "accuracy": 0.9}  # no strings: each leaf is a column
    multiclass = variant_means({"bce-noisy": {**FULL_SUMMARY, "macro_f1": 0.7}}, "macro_f1")
    assert multiclass["bce-noisy"]["macro_f1"] == 0.7


def entry(a: str, b: str, difference: float, p_holm: float | None = 0.01) -> dict:
    low, high = (None, None) if p_holm is None else (difference - 0.05, difference + 0.02)
    test = {"difference": difference, "ci95_low": low, "ci95_high": high, "p_value": p_holm}
    return {"a": a, "b": b, "metric": "auc", "auc": test, "accuracy": test, "p_holm": p_holm}


def test_verdict_comparisons_are_each_loss_vs_bce_and_each_noisy_variant_vs_its_control() -> None:
    full = {
        "l1-noisy vs bce-noisy": entry("bce-noisy", "l1-noisy", 0.04),
        "gce-noisy vs l1-noisy": entry("l1-noisy", "gce-noisy", 0.01),  # neither is BCE: detail file only
        "bce-noisy vs bce-clean": entry("bce-clean", "bce-noisy", -0.2),
        "bce-pruned vs bce-noisy": entry("bce-noisy", "bce-pruned", 0.1, p_holm=None),
    }
    headline = verdict_comparisons(full, "bce")
    assert list(headline) == ["l1-noisy vs bce-noisy", "bce-noisy vs bce-clean", "bce-pruned vs bce-noisy"]
    assert headline["l1-noisy vs bce-noisy"] == pytest.approx(
        {"delta_auc": 0.04, "ci95_low": -0.01, "ci95_high": 0.06, "p_holm": 0.01}
    )
    assert headline["bce-pruned vs bce-noisy"]["ci95_low"] is None  # one repeat: no interval


def test_a_comparison_with_bce_second_is_turned_round() -> None:
    # train.losses [l1, bce] pairs them as "bce-noisy vs l1-noisy": the headline reads "l1-noisy vs bce-noisy".
    headline = verdict_comparisons({"bce-noisy vs l1-noisy": entry("l1-noisy", "bce-noisy", 0.04)}, "bce")
    assert headline == {
        "l1-noisy vs bce-noisy": pytest.approx(
            {"delta_auc": -0.04, "ci95_low": -0.06, "ci95_high": 0.01, "p_holm": 0.01}
        )
    }
    assert reference_loss(["l1", "bce"]) == "bce" and reference_loss(["gce", "l1"]) == "gce"


def test_detection_and_noise_headlines() -> None:
    noisy = {"precision": 0.9, "recall": 0.6, "f1": 0.7, "estimated_noise_rate": 0.35, "realised_noise_rate": 0.3}
    assert detection_headline(noisy) == {
        "precision": 0.9,
        "recall": 0.6,
        "estimated_noise_rate": 0.35,
        "realised_noise_rate": 0.3,
    }
    assert noise_headline({"noise": 0.3, "flip_rate": 0.3, "val_flip_rate": 0.3, "seeds": {}}) == {
        "flip_rate": 0.3,
        "val_flip_rate": 0.3,
    }


def count_numbers(value: object) -> int:
    if isinstance(value, dict):
        return sum(count_numbers(v) for v in value.values())
    return int(isinstance(value, int | float) and not isinstance(value, bool))


@pytest.mark.parametrize(("losses", "at_most"), [(("bce", "l1"), 50), (("bce", "l1", "gce", "sce", "forward"), 100)])
def test_the_headline_files_hold_few_numbers(losses: tuple[str, ...], at_most: int) -> None:
    """What `dvc metrics show` lists: the defaults' study and the README's five-loss one, on real comparisons."""
    labels = ("clean", "noisy")
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=60)
    names = [f"{loss}-{label}" for loss in losses for label in labels]
    scores = {name: [np.clip(y_true * 0.6 + rng.random(60) * 0.5, 0, 1) for _ in range(3)] for name in names}
    pairs, _ = comparison_pairs(losses, labels)
    full = compare_variants(y_true, scores, pairs, "binary", n_resamples=50)
    summary = {name: FULL_SUMMARY for name in [*names, BASELINE]}
    numbers = count_numbers(variant_means(summary, "balanced_accuracy"))
    numbers += count_numbers(verdict_comparisons(full, reference_loss(losses)))
    numbers += len(detection_headline({})) + len(noise_headline({}))
    # bce-l1: 4 variants x 4 + 2 (baseline) + 3 comparisons x 4 + 4 + 2 = 36; five losses: 42 + 9 x 4 + 6 = 84.
    assert numbers <= at_most
    assert numbers == 4 * len(names) + 2 + 4 * (2 * len(losses) - 1) + 6
