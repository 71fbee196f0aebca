"""The headline metrics: what the `metrics:` files of dvc.yaml hold, picked from a stage's full results.

`dvc metrics show`, `dvc metrics diff` and `dvc exp show` list every leaf of every `metrics:` file as a
column or a row, so these files hold only what a person compares across runs: per variant a few means over
seeds, the verdict comparisons, detection's headline and the realised noise. The full results (standard
deviations, per-seed values, every comparison of every metric, the noise and detection tables) go to the
detail files (stages.lib.core.io.details_of), ordinary cached outputs the report and the plots read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stages.lib.core.variants import BASELINE, parse_variant

# Per variant, the means over seeds (and the verdict metric, evaluate.metric, where it is another one).
VARIANT_KEYS = ("balanced_accuracy", "auc", "accuracy", "ece")
BASELINE_KEYS = ("balanced_accuracy", "accuracy")  # always the majority class: AUC 0.5, no calibration
REFERENCE_LOSS = "bce"  # what every other loss is compared with on the same labels: the tuned cross-entropy
DETECTION_KEYS = ("precision", "recall", "estimated_noise_rate", "realised_noise_rate")
NOISE_KEYS = ("flip_rate", "val_flip_rate")


def _with_verdict(keys: Sequence[str], verdict_metric: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*keys, verdict_metric)))


def variant_means(summary: Mapping[str, Mapping[str, Any]], verdict_metric: str) -> dict[str, dict[str, Any]]:
    """Per variant (and the baseline), its headline means from the full summary over seeds."""
    headline = {}
    for variant, values in summary.items():
        keys = _with_verdict(BASELINE_KEYS if variant == BASELINE else VARIANT_KEYS, verdict_metric)
        headline[variant] = {key: values[key] for key in keys if key in values}
    return headline


def reference_loss(losses: Sequence[str]) -> str:
    """The loss the others are compared with: the tuned BCE, or the first loss of a study without it."""
    return REFERENCE_LOSS if REFERENCE_LOSS in losses else losses[0]


def verdict_comparisons(comparisons: Mapping[str, Mapping[str, Any]], reference: str) -> dict[str, dict[str, Any]]:
    """The comparisons a reader decides by, from stages.lib.evaluate.comparisons.compare_variants' full entries:
    each loss against `reference` on the same labels (named and signed `<loss>-<labels> vs <reference>-<labels>`), and
    each variant against the same loss on its control labels (noisy vs clean, pruned vs noisy). Per comparison
    the verdict metric's Δ (`delta_<metric>`, B − A), its 95 % interval and the Holm-adjusted p over all the
    experiment's comparisons. Comparisons of two other losses stay in the detail file."""
    headline = {}
    for name, entry in comparisons.items():
        a, b, metric = entry["a"], entry["b"], entry["metric"]
        (loss_a, labels_a), (loss_b, labels_b) = parse_variant(a), parse_variant(b)
        test = entry[metric]
        delta, low, high = test["difference"], test["ci95_low"], test["ci95_high"]
        if labels_a == labels_b:
            if reference not in (loss_a, loss_b) or loss_a == loss_b:
                continue
            if loss_b == reference:  # the same paired difference, the other way round
                name = f"{a} vs {b}"
                delta = -delta
                low, high = (None, None) if low is None else (-high, -low)
        headline[name] = {f"delta_{metric}": delta, "ci95_low": low, "ci95_high": high, "p_holm": entry["p_holm"]}
    return headline


def detection_headline(noisy_means: Mapping[str, Any]) -> dict[str, Any]:
    """Confident learning on the noisy labels, means over seeds: its flags' precision and recall against the
    truly flipped labels, and the noise rate it estimates beside the realised one."""
    return {key: noisy_means.get(key) for key in DETECTION_KEYS}


def noise_headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The realised flip rates of the training pool and the validation set, means over seeds."""
    return {key: summary.get(key) for key in NOISE_KEYS}
