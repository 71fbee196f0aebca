"""Choosing a variant's model on its validation labels: the epoch, the grid point (L2 strength and the loss's
own param) and, for binary decisions, the threshold — all by one score, the verdict metric
(`evaluate.metric`) estimated from the validation labels the variant has.

The score (train.select_score, docs/losses.md "Tuning"):

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

AUC is never corrected (affine, above); its threshold is irrelevant and stays 0.5.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from stages.lib.metrics import DECISION_THRESHOLD

# Below this |det T| the inverse is meaningless (binary: flip rates summing to 1, no information).
SINGULAR_DET = 1e-3


@dataclass(frozen=True)
class Selection:
    """The model kept: its grid point and epoch (0-based), threshold, score, and the score per epoch of
    that grid point (for the history)."""

    point: int
    epoch: int
    threshold: float
    score: float
    scores_by_epoch: np.ndarray  # (E,)
    corrected: bool  # whether a transition matrix corrected the score


def correction(transition: np.ndarray | None) -> np.ndarray | None:
    """(Tᵀ)⁻¹, or None where there is nothing to correct (no T, the identity) or T cannot be inverted."""
    if transition is None:
        return None
    t = np.asarray(transition, dtype=np.float64)
    if np.allclose(t, np.eye(len(t))):
        return None
    determinant = abs(np.linalg.det(t))
    if determinant < SINGULAR_DET:
        print(f"selection: |det T| = {determinant:.2g}: T is not invertible, scored uncorrected", file=sys.stderr)
        return None
    return np.linalg.inv(t.T)


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
    and that threshold (predict positive iff score >= threshold, stages.lib.metrics.predict_labels).
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


def model_scores(
    probabilities: np.ndarray, labels: np.ndarray, task: str, metric: str, inverse: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per model, the selection score and its threshold. `probabilities`: (N, M) P(positive) for binary,
    (N, M, K) for multiclass; `labels` (N,) the validation labels."""
    m = probabilities.shape[1]
    if metric == "auc":
        if task == "binary":
            values = auc_scores(probabilities, labels)
        else:
            k = probabilities.shape[2]
            values = np.mean([auc_scores(probabilities[:, :, c], labels == c) for c in range(k)], axis=0)
        return values, np.full(m, DECISION_THRESHOLD)
    if task == "binary":
        return binary_threshold_scores(probabilities, labels, metric, inverse)
    k = probabilities.shape[2]
    noisy = np.einsum("nj,nmk->mjk", np.eye(k)[labels], np.eye(k)[probabilities.argmax(axis=-1)])
    clean = noisy if inverse is None else np.maximum(np.einsum("ij,mjk->mik", inverse, noisy), 0.0)
    return confusion_metric(clean, metric), np.full(m, DECISION_THRESHOLD)


def select(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    task: str,
    metric: str,
    transition: np.ndarray | None,
    select_epoch: str,
) -> Selection:
    """The (epoch, grid point, threshold) with the best score. `probabilities`: the validation predictions
    of every epoch and grid point, (N, E, G) for binary or (N, E, G, K); `select_epoch: last` considers the
    last epoch only. Ties go to the earliest epoch, then the first grid point, then the threshold nearest 0.5."""
    n, epochs, points = probabilities.shape[:3]
    inverse = correction(transition)
    flat = probabilities.reshape(n, epochs * points, *probabilities.shape[3:])
    values, thresholds = model_scores(flat, np.asarray(labels, dtype=np.int64), task, metric, inverse)
    values, thresholds = values.reshape(epochs, points), thresholds.reshape(epochs, points)
    allowed = values if select_epoch == "val" else np.where(np.arange(epochs)[:, None] == epochs - 1, values, -np.inf)
    epoch, point = np.unravel_index(int(np.argmax(allowed)), allowed.shape)
    return Selection(
        point=int(point),
        epoch=int(epoch),
        threshold=float(thresholds[epoch, point]),
        score=float(values[epoch, point]),
        scores_by_epoch=values[:, point],
        corrected=inverse is not None,
    )
