"""Paired comparisons of two variants A and B scored on the same test images over the same repeat seeds.

Pure functions on arrays (no file I/O): the evaluate stage passes, for each seed, the test set's true labels
and the two variants' test scores (P(positive) (N,) for binary, class probabilities (N, K) for multiclass),
and gets

* :func:`paired_bootstrap`: the mean over seeds of the difference B - A in accuracy, balanced accuracy and
  AUC, with a percentile interval from a paired bootstrap over test images;
* :func:`mcnemar_exact` per seed (Dietterich 1998) and :func:`sign_test_over_seeds`, one p-value for all
  seeds together;
* :func:`holm`, the Holm-Bonferroni correction over the comparisons made;
* :func:`compare_variants`, all of the above for every comparison of one experiment.

Predicted labels come from stages.lib.metrics.predict_labels, the rule the reported metrics use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import binomtest

from stages.lib.metrics import predict_labels

METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "auc")
N_RESAMPLES = 2000
CONFIDENCE = 0.95


# --------------------------------------------------------------------------
# Metrics of weighted test sets: one row of weights per bootstrap resample (each image's count in it).


def _weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of `scores` for the boolean `positive`, once per row of `weights` (B, N): the weighted
    Mann-Whitney statistic, ties counting one half (as scikit-learn's roc_auc_score with sample_weight).
    NaN for a row without both classes."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, pos = scores[order], positive[order]
    w = weights[:, order]
    # Per sorted position: where its group of tied scores starts and ends (exclusive).
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(start)), counts)
    first, after = start[group], (start + counts)[group]
    below = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(w * ~pos, axis=1, out=below[:, 1:])  # negatives' weight before each position
    negatives_under = below[:, first] + 0.5 * (below[:, after] - below[:, first])
    w_pos = (w * pos).sum(axis=1)
    w_neg = below[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * pos * negatives_under).sum(axis=1) / (w_pos * w_neg)


def resampled_metrics(y_true: np.ndarray, scores: np.ndarray, task: str, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and AUC (binary; multiclass: one-vs-rest macro AUC) of one variant's
    `scores`, for each row of `weights` (B, N): image i counted weights[b, i] times. Equal to scikit-learn's
    scores with `sample_weight`. Balanced accuracy averages the recall of the classes present in the row;
    AUC is NaN for a row lacking a class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    scores = np.asarray(scores, dtype=np.float64)
    correct = predict_labels(scores, task) == y_true
    classes = np.arange(2 if task == "binary" else scores.shape[1])
    members = y_true[None, :] == classes[:, None]  # (C, N)
    class_weight = weights @ members.T  # (B, C)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = (weights @ (members & correct).T) / class_weight
    if task == "binary":
        auc = _weighted_auc(y_true == 1, scores.reshape(-1), weights)
    else:
        auc = np.mean([_weighted_auc(y_true == c, scores[:, c], weights) for c in classes], axis=0)
    return {
        "accuracy": (weights @ correct) / weights.sum(axis=1),
        "balanced_accuracy": np.nanmean(np.where(class_weight > 0, recall, np.nan), axis=1),
        "auc": auc,
    }


def _per_seed(scores: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    runs = [np.asarray(s, dtype=np.float64) for s in scores]
    if not runs:
        raise ValueError("no seeds: need the scores of at least one seed per variant")
    return runs


def _check_pairs(y_true: np.ndarray, runs_a: list[np.ndarray], runs_b: list[np.ndarray]) -> None:
    if len(runs_a) != len(runs_b):
        raise ValueError(f"variant A has scores of {len(runs_a)} seeds, B of {len(runs_b)}: they must be paired")
    for run in runs_a + runs_b:
        if run.shape[0] != len(y_true):
            raise ValueError(f"scores for {run.shape[0]} images, the test set has {len(y_true)}")


# --------------------------------------------------------------------------
# Paired bootstrap


def paired_bootstrap(
    y_true: np.ndarray,
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    task: str,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, dict[str, float | list[float] | int]]:
    """Mean over seeds of metric(B) - metric(A), per metric, with a paired-bootstrap percentile interval.

    Args:
        y_true: the test images' true labels (N,), the same for every seed.
        scores_a, scores_b: one array of test scores per seed, in the same seed order.
        task: "binary" or "multiclass".
        n_resamples: bootstrap resamples; seed: their generator's seed (same seed, same interval).

    Each resample draws N test images with replacement, once, and scores both variants of every seed on it;
    its statistic is the mean over seeds of the metric difference. Images, not seeds, are resampled: with
    the 3-5 seeds a run has, a bootstrap over seeds has a handful of distinct values and no usable
    percentiles, while the N images are the independent units whose sampling the interval should reflect.
    The same resample for A and B (and for all seeds) keeps the pairing, which removes the variance the
    two variants share. So the interval covers test-set sampling given these trained seeds; the training
    randomness enters only through the mean over seeds (the per-seed std beside each metric shows it).
    Resamples in which a metric is undefined (AUC without both classes) are left out of its interval.

    Returns:
        {metric: {"difference": on the full test set, "ci95": [low, high], "resamples": used}} for
        accuracy, balanced_accuracy and auc ("ci95" is at `confidence`). A == B gives exactly 0, [0, 0].
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    runs_a, runs_b = _per_seed(scores_a), _per_seed(scores_b)
    _check_pairs(y_true, runs_a, runs_b)
    weights = resample_weights(len(y_true), n_resamples, seed)
    metrics_a = [resampled_metrics(y_true, run, task, weights) for run in runs_a]
    metrics_b = [resampled_metrics(y_true, run, task, weights) for run in runs_b]
    return _bootstrap_summary(metrics_a, metrics_b, confidence)


def resample_weights(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(n_resamples + 1, n) counts: row 0 the test set itself, then one row per bootstrap resample of the n
    images drawn with replacement (image i counted weights[b, i] times)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_resamples, n))
    weights = np.zeros((n_resamples + 1, n))
    weights[0] = 1.0
    np.add.at(weights, (np.arange(1, n_resamples + 1)[:, None], picks), 1.0)
    return weights


def _bootstrap_summary(
    metrics_a: list[dict[str, np.ndarray]], metrics_b: list[dict[str, np.ndarray]], confidence: float
) -> dict[str, dict[str, float | list[float] | int]]:
    """From each seed's resampled metrics of A and B: the mean difference B - A and its percentile interval."""
    differences = {metric: np.zeros(len(metrics_a[0][metric])) for metric in METRICS}
    for seed_a, seed_b in zip(metrics_a, metrics_b, strict=True):
        for metric in METRICS:
            differences[metric] += (seed_b[metric] - seed_a[metric]) / len(metrics_a)

    tail = (1.0 - confidence) / 2
    result: dict[str, dict[str, float | list[float] | int]] = {}
    for metric in METRICS:
        replicates = differences[metric][1:]
        replicates = replicates[np.isfinite(replicates)]
        interval = np.quantile(replicates, [tail, 1.0 - tail]) if len(replicates) else [np.nan, np.nan]
        result[metric] = {
            "difference": float(differences[metric][0]),
            "ci95": [float(interval[0]), float(interval[1])],
            "resamples": len(replicates),
        }
    return result


# --------------------------------------------------------------------------
# Tests on per-image correctness


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar p-value (two-sided binomial test, p = 1/2, on the discordant pairs: images exactly one
    variant gets right); 1.0 when there are none. As statsmodels' mcnemar(exact=True)."""
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def _correctness(y_true: np.ndarray, runs: list[np.ndarray], task: str) -> np.ndarray:
    """(seeds, N) booleans: each seed's model right on each image."""
    return np.array([predict_labels(run, task) == y_true for run in runs])


def mcnemar_per_seed(
    y_true: np.ndarray, scores_a: Sequence[np.ndarray], scores_b: Sequence[np.ndarray], task: str
) -> list[float]:
    """:func:`mcnemar_exact` of A against B for each seed, in seed order."""
    y_true = np.asarray(y_true, dtype=np.int64)
    runs_a, runs_b = _per_seed(scores_a), _per_seed(scores_b)
    _check_pairs(y_true, runs_a, runs_b)
    correct_a, correct_b = _correctness(y_true, runs_a, task), _correctness(y_true, runs_b, task)
    return [mcnemar_exact(a, b) for a, b in zip(correct_a, correct_b, strict=True)]


def sign_test_over_seeds(
    y_true: np.ndarray, scores_a: Sequence[np.ndarray], scores_b: Sequence[np.ndarray], task: str
) -> dict[str, float | int]:
    """One p-value for "A and B are equally accurate" from all seeds: an exact sign test over test images on
    d_i = (seeds in which B is right on image i) - (seeds in which A is); images with d_i = 0 drop out.

    With one seed this is exactly McNemar's test. With several it stays valid although the seeds are not
    independent (they share the test images, and the models share data and start): the unit is the image,
    and under the null the sign of d_i is a fair coin for each image, whatever the dependence between
    seeds. Combining per-seed p-values by Fisher's or Stouffer's method would assume independent tests
    and overstate the evidence.

    Returns:
        {"p_value", "b_better" (images with d_i > 0), "a_better" (d_i < 0)}.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    runs_a, runs_b = _per_seed(scores_a), _per_seed(scores_b)
    _check_pairs(y_true, runs_a, runs_b)
    d = _correctness(y_true, runs_b, task).sum(axis=0) - _correctness(y_true, runs_a, task).sum(axis=0)
    b_better, a_better = int(np.sum(d > 0)), int(np.sum(d < 0))
    p = 1.0 if b_better + a_better == 0 else float(binomtest(b_better, b_better + a_better, 0.5).pvalue)
    return {"p_value": p, "b_better": b_better, "a_better": a_better}


# --------------------------------------------------------------------------
# Multiple comparisons


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction (Holm 1979), as statsmodels' multipletests(method="holm").

    Returns (reject, adjusted), in the input order: adjusted p_(i) = max over j <= i of (m - j + 1) p_(j)
    (sorted ascending, capped at 1); the hypotheses up to the first sorted p_(i) > alpha / (m - i + 1) are
    rejected.
    """
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must be numbers in [0, 1], got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    factors = np.arange(m, 0, -1)
    failed = np.flatnonzero(sorted_p > alpha / factors)
    reject_sorted = np.arange(m) < (failed[0] if len(failed) else m)
    adjusted_sorted = np.minimum(np.maximum.accumulate(sorted_p * factors), 1.0)
    reject, adjusted = np.empty(m, dtype=bool), np.empty(m)
    reject[order], adjusted[order] = reject_sorted, adjusted_sorted
    return reject, adjusted


# --------------------------------------------------------------------------
# All comparisons of one experiment


ALPHA = 0.05


def compare_variants(
    y_true: np.ndarray,
    scores: Mapping[str, Sequence[np.ndarray]],
    pairs: Sequence[tuple[str, str]],
    task: str,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    seed_names: Sequence[int] | None = None,
) -> dict[str, dict]:
    """Every comparison (a, b) of `pairs`, keyed `"<b> vs <a>"`, differences being b - a.

    `scores[variant]`: one test-score array per seed, every variant in the same seed order. Each entry holds
    :func:`paired_bootstrap`'s accuracy, balanced_accuracy and auc as ``difference``, ``ci95_low``,
    ``ci95_high`` and ``resamples`` (one set of resamples shared by every comparison, each variant's resampled
    metrics computed once), ``mcnemar_p`` (per seed: keyed by `seed_names`, the repeat seeds, else 0, 1, ...),
    :func:`sign_test_over_seeds`'s ``p_value``, ``b_better`` and ``a_better``, ``p_holm`` (Holm over the
    sign-test p-values of all `pairs`) and ``significant`` (``p_holm`` <= alpha, Holm's rejection).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    runs = {name: _per_seed(scores[name]) for pair in pairs for name in pair}
    for a, b in pairs:
        _check_pairs(y_true, runs[a], runs[b])
    weights = resample_weights(len(y_true), n_resamples, seed)
    resampled = {name: [resampled_metrics(y_true, run, task, weights) for run in seeds] for name, seeds in runs.items()}
    results: dict[str, dict] = {}
    for a, b in pairs:
        entry: dict = {"a": a, "b": b}
        # Flat numbers and mappings only: `dvc exp show` drops lists from metrics files.
        for metric, values in _bootstrap_summary(resampled[a], resampled[b], confidence).items():
            low, high = values["ci95"]
            entry[metric] = {"difference": values["difference"], "ci95_low": low, "ci95_high": high}
            entry[metric]["resamples"] = values["resamples"]
        p_values = mcnemar_per_seed(y_true, runs[a], runs[b], task)
        entry["mcnemar_p"] = {
            str(seed): p for seed, p in zip(seed_names or range(len(p_values)), p_values, strict=True)
        }
        entry.update(sign_test_over_seeds(y_true, runs[a], runs[b], task))
        results[f"{b} vs {a}"] = entry
    if results:
        reject, adjusted = holm([entry["p_value"] for entry in results.values()], alpha)
        for entry, rejected, p in zip(results.values(), reject, adjusted, strict=True):
            entry["p_holm"], entry["significant"] = float(p), bool(rejected)
    return results
