"""Paired comparisons of two training procedures (variants) A and B over the same repeats and test images.

The question a comparison answers is "is loss B, trained this way, better than loss A" — a statement about
two *procedures*, whose outcome is random twice over: through the training randomness of a repeat (a
`train.seeds` entry: one noise draw, one initial weight vector, one batch order, shared by every variant,
so A and B are paired within it) and through which test images were drawn. The unit of replication is
therefore the repeat, not the test image; a bootstrap over test images, or McNemar's test on one pair of
models, conditions on the trained models and calls training randomness an effect (simulated in
benchmarks/calibration.py: 13 of 20 null data sets rejected). Pure functions on arrays, no file I/O.

For each metric (accuracy, balanced accuracy, AUC; macro F1 for multiclass), with d_r = metric_B - metric_A
of repeat r on the whole test set and R repeats:

* Δ = mean_r d_r;
* its variance, by the nested (two-stage) variance-components decomposition (Searle, Casella & McCulloch,
  *Variance Components*, 1992, ch. 3; the sources of variance as in Bouthillier et al., MLSys 2021):
  Var(Δ) = σ²_repeat / R + σ²_test, where σ²_repeat is estimated by the sample variance of the d_r (the
  training randomness, as seen on these test images), and σ²_test — how much the expected difference itself
  moves with the draw of the test set — by a paired bootstrap over test images (the same resample for A, B
  and every repeat): with V̄ the bootstrap variance of Δ and V_r that of each d_r, E[V̄] = σ²_test +
  E[V_r] / R, so σ²_test = (R·V̄ - mean_r V_r) / (R - 1), floored at 0. Adding the plain bootstrap variance
  V̄ instead would count the models' own test-sampling noise twice (they differ on images repeat by repeat).
* a t-interval and two-sided p-value, with Satterthwaite's (1946) degrees of freedom for the sum of the two
  variance estimates (R - 1 for the first, the bootstrap's taken as exact) from MIN_SATTERTHWAITE_REPEATS
  repeats on; below that, R - 1 (the Satterthwaite df, itself estimated from R - 1 degrees of freedom, made
  the test anti-conservative: a false-positive rate of 0.077 at R = 3 in benchmarks/calibration.py);
* the probability of improvement P(metric_B > metric_A), paired: the share of repeats in which B beats A,
  ties counting one half (Agarwal et al., NeurIPS 2021 define it over all pairs of A's and B's runs; here
  A and B share each repeat's noise draw, so the pairs that exist are the repeats).

:func:`compare_variants` does this for every comparison of one experiment, and Holm's step-down correction
over the comparisons' p-values on the verdict metric (`evaluate.metric`), within each family of comparisons:
the study's (losses against each other, noisy against clean, pruned against noisy) and the protocol's (a
noisy variant against its oracle twin chosen on clean validation labels, and that twin against the clean
control). A comparison needs at least two repeats: with one, the training randomness cannot be estimated and
no p-value is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from stages.lib.core.variants import oracle_name, variant_name
from stages.lib.evaluate.metrics import DECISION_THRESHOLD, predict_labels

METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "auc")
MULTICLASS_METRICS: tuple[str, ...] = (*METRICS, "macro_f1")
# Holm's families (compare_variants): what the study asks, and what the selection protocol costs.
STUDY, PROTOCOL = "study", "protocol"
# Below this many repeats the t-test's df is R - 1, not Satterthwaite's (module docstring).
MIN_SATTERTHWAITE_REPEATS = 5
# The bootstrap only estimates a variance (not percentiles): 1,000 resamples give it to about ±4.5 %.
N_RESAMPLES = 1000
CONFIDENCE = 0.95
ALPHA = 0.05


def task_metrics(task: str) -> tuple[str, ...]:
    """The metrics every comparison reports for `task`."""
    return MULTICLASS_METRICS if task == "multiclass" else METRICS


# --------------------------------------------------------------------------
# Metrics of weighted test sets: one row of weights per bootstrap resample (each image's count in it).


def _weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of `scores` for the boolean `positive`, once per row of `weights` (B, N): the weighted
    Mann-Whitney statistic, ties counting one half (as scikit-learn's roc_auc_score with sample_weight).
    NaN for a row without both classes.

    Per positive, the negatives' weight below its score (half of those tied with it), from a running sum
    over the negatives only, in score order; with integer counts as weights every sum is exact."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, pos = scores[order], positive[order]
    # Per sorted position: where its group of tied scores starts and ends (exclusive).
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(start)), counts)
    negative_at = np.flatnonzero(~pos)  # sorted positions of the negatives
    positive_at = np.flatnonzero(pos)
    below = np.zeros((weights.shape[0], len(negative_at) + 1))
    np.cumsum(weights[:, order[negative_at]], axis=1, out=below[:, 1:])  # negatives' weight before the k-th negative
    # For each positive, how many negatives lie before its tie group and before the group's end.
    before = np.searchsorted(negative_at, start[group[positive_at]])
    through = np.searchsorted(negative_at, (start + counts)[group[positive_at]])
    negatives_under = below[:, before] + 0.5 * (below[:, through] - below[:, before])
    w_pos = weights[:, order[positive_at]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w_pos * negatives_under).sum(axis=1) / (w_pos.sum(axis=1) * below[:, -1])


def resampled_metrics(
    y_true: np.ndarray, scores: np.ndarray, task: str, weights: np.ndarray, threshold: float = DECISION_THRESHOLD
) -> dict[str, np.ndarray]:
    """The metrics of :func:`task_metrics` of one model's `scores`, for each row of `weights` (B, N): image i
    counted weights[b, i] times; binary predictions are P(positive) >= `threshold`. Equal to scikit-learn's
    scores with `sample_weight`. Balanced accuracy averages the recall of the classes present in the row;
    AUC (multiclass: one-vs-rest macro) is NaN for a row lacking a class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    scores = np.asarray(scores, dtype=np.float64)
    predicted = predict_labels(scores, task, threshold)
    correct = predicted == y_true
    classes = np.arange(2 if task == "binary" else scores.shape[1])
    members = y_true[None, :] == classes[:, None]  # (C, N)
    class_weight = weights @ members.T  # (B, C)
    hits = weights @ (members & correct).T  # (B, C): true positives of each class
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = hits / class_weight
    if task == "binary":
        auc = _weighted_auc(y_true == 1, scores.reshape(-1), weights)
    else:
        auc = np.mean([_weighted_auc(y_true == c, scores[:, c], weights) for c in classes], axis=0)
    result = {
        "accuracy": (weights @ correct) / weights.sum(axis=1),
        "balanced_accuracy": np.nanmean(np.where(class_weight > 0, recall, np.nan), axis=1),
        "auc": auc,
    }
    if task == "multiclass":
        # F1_c = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted as c + truly c); 0 where both are 0 (zero_division=0).
        predicted_weight = weights @ (predicted[None, :] == classes[:, None]).T
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(predicted_weight + class_weight > 0, 2 * hits / (predicted_weight + class_weight), 0.0)
        result["macro_f1"] = f1.mean(axis=1)
    return result


def resample_weights(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(n_resamples + 1, n) counts: row 0 the test set itself, then one row per bootstrap resample of the n
    images drawn with replacement (image i counted weights[b, i] times)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_resamples, n))
    weights = np.zeros((n_resamples + 1, n))
    weights[0] = 1.0
    np.add.at(weights, (np.arange(1, n_resamples + 1)[:, None], picks), 1.0)
    return weights


# --------------------------------------------------------------------------
# The repeat-level test of one metric


def probability_of_improvement(metric_a: np.ndarray, metric_b: np.ndarray) -> float:
    """P(X_B > X_A) paired by repeat: the share of repeats r with b_r > a_r, ties one half (Agarwal et al.
    2021 over the pairs that share a repeat)."""
    a, b = np.asarray(metric_a, dtype=np.float64), np.asarray(metric_b, dtype=np.float64)
    return float(np.mean((b > a) + 0.5 * (b == a)))


def repeat_level_test(
    resampled_a: np.ndarray, resampled_b: np.ndarray, confidence: float = CONFIDENCE
) -> dict[str, float | int | None]:
    """Δ, its interval and p-value for one metric, from each repeat's resampled metric of A and of B.

    `resampled_a`, `resampled_b`: (R, 1 + B) arrays, row r the metric of repeat r's model on the test set
    (column 0) and on B paired bootstrap resamples of it (the same resamples for A and B). The variance of
    Δ is the module docstring's σ²_repeat / R + σ²_test. Resamples in which the metric is undefined (AUC
    without both classes) are left out of the bootstrap variances.

    Returns difference, ci95_low, ci95_high, p_value, se, se_repeats (the part from the spread over repeats),
    se_test (from test-set sampling), se_models_fixed, df, probability_of_improvement and repeats; with one repeat the
    p-value and interval are None (the training randomness cannot be estimated from one repeat).
    """
    from scipy import stats

    a, b = np.asarray(resampled_a, dtype=np.float64), np.asarray(resampled_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"A's resampled metrics have shape {a.shape}, B's {b.shape}: need the same (R, 1 + B)")
    repeats = a.shape[0]
    on_test_set = b[:, 0] - a[:, 0]
    difference = float(np.mean(on_test_set))
    result: dict[str, float | int | None] = {
        "difference": difference,
        "probability_of_improvement": probability_of_improvement(a[:, 0], b[:, 0]),
        "repeats": repeats,
    }
    resampled = b[:, 1:] - a[:, 1:]
    usable = np.all(np.isfinite(resampled), axis=0)
    if repeats < 2 or not np.isfinite(difference) or usable.sum() < 2:
        return {**result, "ci95_low": None, "ci95_high": None, "p_value": None, "se": None}
    resampled = resampled[:, usable]
    var_repeats = float(np.var(on_test_set, ddof=1)) / repeats
    var_mean = float(np.var(resampled.mean(axis=0), ddof=1))  # V̄: the bootstrap variance of Δ
    var_each = float(np.mean(np.var(resampled, axis=1, ddof=1)))  # mean_r V_r
    var_test = max(0.0, (repeats * var_mean - var_each) / (repeats - 1))
    variance = var_repeats + var_test
    se = float(np.sqrt(variance))
    if se == 0.0:
        # No variation at all (A and B the same models): nothing distinguishes them unless Δ itself is not 0.
        p, half_width, df = (1.0 if difference == 0.0 else 0.0), 0.0, float(repeats - 1)
    else:
        if repeats < MIN_SATTERTHWAITE_REPEATS:
            df = float(repeats - 1)
        else:
            df = float(variance**2 * (repeats - 1) / var_repeats**2) if var_repeats > 0 else float("inf")
        p = float(2 * stats.t.sf(abs(difference) / se, df))
        half_width = float(stats.t.ppf(0.5 + confidence / 2, df) * se)
    return {
        **result,
        "ci95_low": difference - half_width,
        "ci95_high": difference + half_width,
        "p_value": p,
        "se": se,
        "se_repeats": float(np.sqrt(var_repeats)),
        "se_test": float(np.sqrt(var_test)),
        # The standard error if the trained models were fixed (test-set sampling only): what a bootstrap over
        # test images alone reports, shown for contrast (benchmarks/calibration.py).
        "se_models_fixed": float(np.sqrt(var_mean)),
        "df": df,
    }


# --------------------------------------------------------------------------
# Multiple comparisons


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
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


def comparison_pairs(losses: tuple[str, ...], label_sets: tuple[str, ...]) -> tuple[list[tuple[str, str]], list[str]]:
    """(a, b) pairs compared (b - a), and a line for each kind of comparison skipped for want of a label set.

    Within the noisy and within the pruned label set, each loss against every later one in train.losses (a
    clean-only run compares its clean losses instead); then, per loss, what the noise costs (noisy - clean)
    and what pruning wins back (pruned - noisy, or pruned - clean without noisy labels).
    """
    within = [labels for labels in ("noisy", "pruned") if labels in label_sets] or list(label_sets)
    pairs = []
    for labels in within:
        names = [variant_name(loss, labels) for loss in losses]
        pairs += [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    skipped = []
    across = [("clean", "noisy"), ("noisy", "pruned") if "noisy" in label_sets else ("clean", "pruned")]
    for control, treated in across:
        if treated not in label_sets:
            continue
        if control not in label_sets:
            skipped.append(f"{treated} vs {control}: train.labels has no {control} labels")
            continue
        pairs += [(variant_name(loss, control), variant_name(loss, treated)) for loss in losses]
    return pairs, skipped


def protocol_pairs(losses: tuple[str, ...], label_sets: tuple[str, ...]) -> list[tuple[str, str]]:
    """Per loss and noisy (or pruned) label set, what choosing on the noisy validation labels costs (the
    variant against its oracle twin) and what the noisy training labels cost when choosing on clean ones (the
    clean control against the twin; without clean labels, that comparison is left out)."""
    pairs = []
    for labels in label_sets:
        if labels == "clean":
            continue
        for loss in losses:
            variant = variant_name(loss, labels)
            pairs.append((variant, oracle_name(variant)))
            if "clean" in label_sets:
                pairs.append((variant_name(loss, "clean"), oracle_name(variant)))
    return pairs


def compare_variants(
    y_true: np.ndarray,
    scores: Mapping[str, Sequence[np.ndarray]],
    pairs: Sequence[tuple[str, str]],
    task: str,
    *,
    families: Mapping[tuple[str, str], str] | None = None,
    verdict_metric: str = "balanced_accuracy",
    thresholds: Mapping[str, Sequence[float]] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
) -> dict[str, dict]:
    """Every comparison (a, b) of `pairs`, keyed `"<b> vs <a>"`, differences being b - a.

    `scores[variant]`: one test-score array per repeat, every variant in the same repeat order (the pairing);
    `thresholds[variant]`: each repeat's binary decision threshold (default 0.5). Each entry holds, per metric
    of :func:`task_metrics`, :func:`repeat_level_test`'s numbers (flat mappings only: `dvc exp show` drops
    lists), and for the verdict metric: ``metric``, ``p_value``, ``probability_of_improvement``, ``family``
    (`families[pair]`, STUDY where absent), ``p_holm`` (Holm over the verdict p-values of the comparisons of
    its family that have one) and ``significant`` (Holm's rejection at `alpha`). One set of bootstrap
    resamples serves every comparison; each model's resampled metrics are computed once.
    """
    metrics = task_metrics(task)
    if verdict_metric not in metrics:
        raise ValueError(f"verdict metric {verdict_metric!r} is not one of {metrics} for the {task} task")
    y_true = np.asarray(y_true, dtype=np.int64)
    names = list(dict.fromkeys(name for pair in pairs for name in pair))
    repeats = {len(scores[name]) for name in names}
    if len(repeats) > 1:
        raise ValueError(f"variants have scores of different numbers of repeats {sorted(repeats)}: they must pair")
    weights = resample_weights(len(y_true), n_resamples, seed)
    resampled: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        runs = [np.asarray(run, dtype=np.float64) for run in scores[name]]
        if any(run.shape[0] != len(y_true) for run in runs):
            raise ValueError(f"{name}: scores do not cover the {len(y_true)} test images")
        cut = list((thresholds or {}).get(name) or [DECISION_THRESHOLD] * len(runs))
        per_run = [resampled_metrics(y_true, run, task, weights, t) for run, t in zip(runs, cut, strict=True)]
        resampled[name] = {metric: np.array([run[metric] for run in per_run]) for metric in metrics}
    results: dict[str, dict] = {}
    for a, b in pairs:
        entry: dict = {"a": a, "b": b, "metric": verdict_metric, "family": (families or {}).get((a, b), STUDY)}
        for metric in metrics:
            entry[metric] = repeat_level_test(resampled[a][metric], resampled[b][metric], confidence)
        verdict = entry[verdict_metric]
        entry["p_value"] = verdict["p_value"]
        entry["probability_of_improvement"] = verdict["probability_of_improvement"]
        entry["p_holm"], entry["significant"] = None, False
        results[f"{b} vs {a}"] = entry
    for family in dict.fromkeys(entry["family"] for entry in results.values()):
        tested = [entry for entry in results.values() if entry["family"] == family and entry["p_value"] is not None]
        if tested:
            reject, adjusted = holm([entry["p_value"] for entry in tested], alpha)
            for entry, rejected, p in zip(tested, reject, adjusted, strict=True):
                entry["p_holm"], entry["significant"] = float(p), bool(rejected)
    return results
