"""Choosing a variant's model on its validation labels: the grid point (L2 strength and the loss's own
param; for fine-tuning also the epoch) and, for binary decisions, the threshold.

Two rules (docs/losses.md "Tuning"; benchmarks/selection.py simulated the choices on validation data):

- `train.select_by` ranks the candidate models: `log_loss` (the validation labels' mean log-loss of the
  model's probabilities: a proper score of P(given label | image)), `auc` (threshold-free), or `metric`
  (the verdict metric at the model's own threshold).
- `train.threshold` places the binary threshold: `smoothed` maximises the verdict metric of the
  kernel-smoothed confusion matrix (each given label's validation logits convolved with a normal kernel:
  the kernel estimate of the ROC curve, Zou, Hall & Shapiro 1997), which varies less between validation
  draws than the step function `empirical` maximises over every cut of the validation scores; `share` is
  the plug-in rule for balanced accuracy on calibrated probabilities (predict positive iff P(positive) >=
  the validation labels' positive share, Menon et al., ICML 2015), right only where the model's
  probabilities are. (A binormal fit, normal logits per label, misplaced the threshold on the digits'
  skewed logits: benchmarks/README.md, "Selection".)

Where a confusion-matrix metric is estimated from noisy validation labels (`metric`, the thresholds), the
score (train.select_score) says how:

- `noisy`: the metric on the validation labels as they are. When is that right? Binary balanced accuracy
  and AUC: under any class-conditional noise (flip rates ρ₊, ρ₋ with ρ₊ + ρ₋ < 1) the noisy value is an
  increasing affine function of the clean one (Menon et al., ICML 2015, "Learning from corrupted binary
  labels via class-probability estimation": balanced error and AUC; slope π(1 − π)(1 − ρ₊ − ρ₋) /
  (π̃(1 − π̃)) for balanced accuracy, π and π̃ the clean and noisy positive rates), so its argmax is the
  clean argmax and no correction is needed. Accuracy: only under symmetric noise ((1 − 2η)·accuracy + η;
  Chen et al., ICML 2019); under class-conditional noise it weights the classes by their noisy shares and
  the chosen threshold moves. Multiclass balanced accuracy and macro-F1: symmetric noise only.
- `corrected_*`: the clean confusion matrix recovered from the noisy one through the transition matrix T
  (T[i, j] = P(given j | true i)): E[noisy confusion] = Tᵀ · clean confusion, so clean ≈ (Tᵀ)⁻¹ · noisy —
  the "backward" correction of Patrini et al. (CVPR 2017, Theorem 1) applied to counts, unbiased for a
  known T; the recovered counts are clipped at 0 (they can go negative on a finite sample). `true`: each
  seed's realised T of the validation labels (an oracle); `estimated`: the detect stage's estimate.
  Right for every confusion-matrix metric under class-conditional noise, if T is right.

AUC and log-loss are never corrected (AUC is affine, above; the log-loss scores P(given label), which is
what a model trained on these labels estimates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from stages.lib.core.params import TrainParams
from stages.lib.evaluate.metrics import DECISION_THRESHOLD
from stages.lib.noise.transition import correction

# The smoothed rule's kernel bandwidth, in multiples of Silverman's rule of thumb (benchmarks/selection.py
# chose it on validation data: docs/losses.md, "Tuning").
BANDWIDTH = 2.0
# The smoothed rule's candidate thresholds: this many, evenly spaced over the validation logits'
# range (about 0.02 apart on a range of 10).
THRESHOLD_STEPS = 512


@dataclass(frozen=True)
class Selection:
    """The model kept: its grid point and epoch (0-based), its binary threshold (on P(positive)), its
    selection score (`select_by`; higher is better, so the log-loss is negated) and the verdict metric's
    estimate at that threshold on the validation labels, per epoch of that grid point (for the history)."""

    point: int
    epoch: int
    threshold: float
    score: float
    metric_value: float
    scores_by_epoch: np.ndarray  # (E,)
    corrected: bool  # whether a transition matrix corrected the metric


def confusion_metric(confusion: np.ndarray, metric: str) -> np.ndarray:
    """accuracy, balanced_accuracy or macro_f1 from confusion counts (..., K true, K predicted); 0 where a
    class has no (recovered) member."""
    diagonal = np.diagonal(confusion, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "accuracy":
            out = diagonal.sum(axis=-1) / confusion.sum(axis=(-2, -1))
        elif metric == "balanced_accuracy":
            out = np.nanmean(diagonal / confusion.sum(axis=-1), axis=-1)
        elif metric == "macro_f1":
            f1 = 2 * diagonal / (confusion.sum(axis=-1) + confusion.sum(axis=-2))
            out = np.nanmean(f1, axis=-1)
        else:
            raise ValueError(f"metric {metric!r}: not a confusion-matrix metric")
    return np.nan_to_num(out, nan=0.0)


def binary_threshold_scores(
    scores: np.ndarray, labels: np.ndarray, metric: str, inverse: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `scores` (N, M: P(positive) of M models), the best `metric` over decision thresholds
    and that threshold (predict positive iff score >= threshold, stages.lib.evaluate.metrics.predict_labels).
    `labels`: the validation labels (N,); `inverse`: (Tᵀ)⁻¹ or None. Every distinct cut is tried."""
    n, m = scores.shape
    order = np.argsort(-scores, axis=0, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=0)
    positive = np.asarray(labels)[order] == 1
    # Cut i (0..N): the top i predicted positive. Counts by given label j (rows) and prediction k (columns).
    pos_hit = np.vstack([np.zeros((1, m)), np.cumsum(positive, axis=0)])
    neg_hit = np.vstack([np.zeros((1, m)), np.cumsum(~positive, axis=0)])
    noisy = np.empty((n + 1, m, 2, 2))
    noisy[..., 0, 1], noisy[..., 1, 1] = neg_hit, pos_hit
    noisy[..., 0, 0], noisy[..., 1, 0] = neg_hit[-1] - neg_hit, pos_hit[-1] - pos_hit
    clean = noisy if inverse is None else np.maximum(np.einsum("ij,cmjk->cmik", inverse, noisy), 0.0)
    values = confusion_metric(clean, metric)
    # Only cuts between distinct scores (and the two ends) can be made by a threshold.
    valid = np.ones((n + 1, m), dtype=bool)
    valid[1:n] = ranked[:-1] > ranked[1:]
    values = np.where(valid, values, -np.inf)
    # Cut i's threshold: between the lowest score predicted positive (ranked[i-1]) and the next.
    upper = np.vstack([np.nextafter(ranked[:1], np.inf), ranked])
    lower = np.vstack([ranked, ranked[-1:]])
    thresholds = (upper + lower) / 2
    thresholds[0], thresholds[n] = upper[0], ranked[-1]
    # Of the cuts that tie for the best value (a step function on a few hundred labels has plateaus), the
    # one whose threshold is nearest DECISION_THRESHOLD: moving off 0.5 needs a strictly better score.
    tied = values >= values.max(axis=0, keepdims=True)
    best = np.where(tied, -np.abs(thresholds - DECISION_THRESHOLD), -np.inf).argmax(axis=0)
    columns = np.arange(m)
    return values[best, columns], thresholds[best, columns]


def auc_scores(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUC of each column of `scores` (N, M) for labels (N,) == 1 (Mann-Whitney, ties count 1/2)."""
    labels = np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels != 1]
    if not len(pos) or not len(neg):
        return np.full(scores.shape[1], 0.5)
    wins = np.zeros(scores.shape[1])
    for row in pos:  # one positive at a time against every negative: memory O(negatives × models)
        wins += (row > neg).sum(axis=0) + 0.5 * (row == neg).sum(axis=0)
    return wins / (len(pos) * len(neg))


def smoothed_threshold_scores(
    logits: np.ndarray, labels: np.ndarray, metric: str, inverse: np.ndarray | None, bandwidth: float = BANDWIDTH
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `logits` (N, M), the best `metric` of the kernel-smoothed confusion matrix and its threshold
    on P(positive): each given label's distribution of logits is its samples convolved with a normal kernel
    (`bandwidth` times Silverman's, from the sample's standard deviation and interquartile range), so the expected
    counts at a threshold are sums of normal CDFs (the kernel estimate of a ROC curve: Zou, Hall & Shapiro
    1997). A column where either label has fewer than two samples falls back to the empirical search."""
    labels = np.asarray(labels)
    values, thresholds = binary_threshold_scores(special.expit(logits), labels, metric, inverse)
    groups = [logits[labels == c] for c in (0, 1)]
    if min(len(g) for g in groups) < 2:
        return values, thresholds
    low, high = logits.min(axis=0), logits.max(axis=0)
    cuts = low + (high - low) * np.linspace(0.0, 1.0, THRESHOLD_STEPS)[:, None]  # (S, M)
    expected = np.empty((THRESHOLD_STEPS, logits.shape[1], 2, 2))
    usable = np.ones(logits.shape[1], dtype=bool)
    for c, g in enumerate(groups):
        spread = np.minimum(g.std(axis=0, ddof=1), np.subtract(*np.percentile(g, [75, 25], axis=0)) / 1.34)
        width = bandwidth * 0.9 * spread * len(g) ** -0.2  # Silverman's rule of thumb, scaled
        usable &= width > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            below = np.zeros((THRESHOLD_STEPS, logits.shape[1]))
            for row in g:  # one sample at a time: memory O(steps × models)
                below += stats.norm.cdf((cuts - row) / width)
        expected[..., c, 0], expected[..., c, 1] = below, len(g) - below
    clean = expected if inverse is None else np.maximum(np.einsum("ij,smjk->smik", inverse, expected), 0.0)
    smooth = confusion_metric(clean, metric)
    best = np.argmax(smooth, axis=0)
    columns = np.arange(logits.shape[1])
    values = np.where(usable, smooth[best, columns], values)
    thresholds = np.where(usable, special.expit(cuts[best, columns]), thresholds)
    return values, thresholds


def share_threshold_scores(
    probabilities: np.ndarray, labels: np.ndarray, metric: str, inverse: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `probabilities` (N, M), `metric` on the validation labels at the threshold the labels'
    positive share, and that threshold."""
    labels = np.asarray(labels)
    share = float(np.mean(labels == 1)) if len(labels) else DECISION_THRESHOLD
    predicted = probabilities >= share
    given = np.eye(2)[labels.astype(np.int64)]  # (N, 2)
    confusion = np.einsum("nj,nmk->mjk", given, np.eye(2)[predicted.astype(np.int64)])
    clean = confusion if inverse is None else np.maximum(np.einsum("ij,mjk->mik", inverse, confusion), 0.0)
    return confusion_metric(clean, metric), np.full(probabilities.shape[1], share)


def log_likelihoods(logits: np.ndarray, labels: np.ndarray, task: str) -> np.ndarray:
    """Per model, the mean log-probability of the given labels (the negated log-loss): `logits` (N, M) binary
    log-odds or (N, M, K) class logits."""
    labels = np.asarray(labels, dtype=np.int64)
    if task == "binary":
        signed = np.where(labels[:, None] == 1, logits, -logits)
        return -np.mean(np.logaddexp(0.0, -signed), axis=0)
    log_p = special.log_softmax(logits, axis=-1)
    return np.mean(np.take_along_axis(log_p, labels[:, None, None], axis=-1)[..., 0], axis=0)


def thresholds_and_metric(
    logits: np.ndarray, labels: np.ndarray, task: str, metric: str, rule: str, inverse: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per model, its threshold on P(positive) by `rule` (DECISION_THRESHOLD for multiclass and for AUC) and
    the verdict metric's estimate there. `logits`: (N, M) binary log-odds or (N, M, K)."""
    m = logits.shape[1]
    if metric == "auc":
        if task == "binary":
            values = auc_scores(logits, labels)
        else:
            k = logits.shape[2]
            values = np.mean([auc_scores(logits[:, :, c], labels == c) for c in range(k)], axis=0)
        return values, np.full(m, DECISION_THRESHOLD)
    if task == "binary":
        if rule == "smoothed":
            return smoothed_threshold_scores(logits, labels, metric, inverse)
        if rule == "share":
            return share_threshold_scores(special.expit(logits), labels, metric, inverse)
        return binary_threshold_scores(special.expit(logits), labels, metric, inverse)
    k = logits.shape[2]
    noisy = np.einsum("nj,nmk->mjk", np.eye(k)[labels], np.eye(k)[logits.argmax(axis=-1)])
    clean = noisy if inverse is None else np.maximum(np.einsum("ij,mjk->mik", inverse, noisy), 0.0)
    return confusion_metric(clean, metric), np.full(m, DECISION_THRESHOLD)


def pooled_threshold(
    extra_logits: np.ndarray,
    extra_labels: np.ndarray,
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    *,
    metric: str,
    transition: np.ndarray | None,
    rule: str,
) -> tuple[float, float]:
    """One binary model's threshold on P(positive) and the metric's estimate there, by `rule` on its validation
    logits and labels together with more of its own (the training pool's out-of-fold logits: more labels for
    a one-dimensional choice that 300 noisy validation labels make noisy)."""
    logits = np.concatenate([extra_logits, val_logits])[:, None]
    labels = np.concatenate([extra_labels, val_labels]).astype(np.int64)
    values, thresholds = thresholds_and_metric(logits, labels, "binary", metric, rule, correction(transition))
    return float(thresholds[0]), float(values[0])


def select(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    task: str,
    metric: str,
    transition: np.ndarray | None,
    select_by: str,
    threshold_rule: str,
    select_epoch: str = "last",
) -> Selection:
    """The (epoch, grid point) with the best `select_by` score and its threshold. `logits`: the validation
    logits of every epoch and grid point, (N, E, G) binary log-odds or (N, E, G, K); `select_epoch: last`
    considers the last epoch only (heads have one). Ties go to the earliest epoch, then the first grid point."""
    n, epochs, points = logits.shape[:3]
    labels = np.asarray(labels, dtype=np.int64)
    inverse = correction(transition)
    flat = np.asarray(logits, dtype=np.float64).reshape(n, epochs * points, *logits.shape[3:])
    metric_values, thresholds = thresholds_and_metric(flat, labels, task, metric, threshold_rule, inverse)
    if select_by == "metric":
        scores = metric_values
    elif select_by == "auc":
        scores = thresholds_and_metric(flat, labels, task, "auc", threshold_rule, None)[0]
    else:
        scores = log_likelihoods(flat, labels, task)
    scores, metric_values, thresholds = (v.reshape(epochs, points) for v in (scores, metric_values, thresholds))
    epoch, point = choose(scores, select_epoch)
    return Selection(
        point=int(point),
        epoch=int(epoch),
        threshold=float(thresholds[epoch, point]),
        score=float(scores[epoch, point]),
        metric_value=float(metric_values[epoch, point]),
        scores_by_epoch=scores[:, point],
        corrected=inverse is not None,
    )


def choose(scores: np.ndarray, select_epoch: str = "last") -> tuple[int, int]:
    """The (epoch, grid point) of the best score in `scores` (E, G), both 0-based: `select_epoch: last` considers
    the last epoch only. Ties go to the earliest epoch, then the first grid point; a NaN score (a model whose
    training diverged) is never chosen over a number."""
    first = 0 if select_epoch == "val" else scores.shape[0] - 1
    allowed = np.where(np.isnan(scores[first:]), -np.inf, scores[first:])
    epoch, point = np.unravel_index(int(np.argmax(allowed)), allowed.shape)
    return first + int(epoch), int(point)


def class_labels(y: np.ndarray, task: str) -> np.ndarray:
    """Class indices (N,) of targets (stages.lib.core.variants.targets): (N, 1) floats or one-hot (N, K)."""
    return y[:, 0].astype(np.int64) if task == "binary" else y.argmax(axis=1)


def select_on_validation(
    val_logits: np.ndarray,
    val_y: np.ndarray,
    *,
    task: str,
    metric: str,
    settings: TrainParams,
    transition: np.ndarray | None,
    select_epoch: str = "last",
) -> Selection:
    """The rule every trainer chooses by, on a variant's validation targets `val_y`: the (epoch, grid point) by
    train.select_by and the binary threshold by train.threshold, aimed at `metric` (evaluate.metric), a
    confusion metric corrected through `transition` where train.select_score asks (stages.lib.train.selection).
    `val_logits`: (N, E, G) binary log-odds or (N, E, G, K); a head has one "epoch" (its optimum)."""
    return select(
        val_logits,
        class_labels(val_y, task),
        task=task,
        metric=metric,
        transition=transition,
        select_by=settings.select_by,
        threshold_rule=settings.threshold,
        select_epoch=select_epoch,
    )
