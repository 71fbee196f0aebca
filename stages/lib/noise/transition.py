"""The noise transition matrix T, in one place: T[i, j] = P(given label j | true label i), row-stochastic
(Patrini et al. 2017; cleanlab's noise matrix is its transpose). How it is realised (counted from a draw's
true and given labels), estimated (cleanlab's confident joint), stored per train variant by the detect stage
(data/detect/transitions/<variant>.json) and read back per seed, and how training uses it: the forward loss
through log T, the selection score through (Tᵀ)⁻¹ (docs/noise.md, docs/losses.md "Tuning").
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.core.errors import UserError
from stages.lib.core.io import read_json
from stages.lib.noise.models import confusion_counts

TRANSITIONS_DIR = Path("data/detect/transitions")

# Which T each train.select_score corrects the validation metric with: none, the realised, detect's.
SELECT_SCORE_TRANSITIONS: dict[str, str | None] = {
    "noisy": None,
    "corrected_true": "true",
    "corrected_estimated": "estimated",
}
# Below this |det T| the inverse is meaningless (binary: flip rates summing to 1, no information).
SINGULAR_DET = 1e-3


def transition_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Realised noise transition matrix ``T[i, j] = P(noisy = j | clean = i)``.

    This is the empirical counterpart of the transition matrix ``T`` of
    Patrini et al. (2017). The result is a ``(K, K)`` float64 array whose rows
    sum to 1, except that the row of a class absent from ``clean`` is all NaN
    (the conditional probability is undefined, and NaN keeps it from being
    mistaken for "no noise").
    """
    counts = confusion_counts(clean, noisy, num_classes).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = counts / totals
    matrix[totals[:, 0] == 0] = np.nan
    return matrix


def no_noise(num_classes: int) -> np.ndarray:
    """T of true labels: the identity."""
    return np.eye(num_classes)


def estimated_transition(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, float]:
    """Our T (row-stochastic, true -> given) and the estimated noise rate, from cleanlab's confident joint.

    cleanlab's `estimate_latent` returns P(given = i | true = j) in column j: we transpose it.
    """
    from cleanlab.count import compute_confident_joint, estimate_latent

    joint = compute_confident_joint(labels, pred_probs)  # joint[i, j]: given i, true j
    _, noise_matrix, _ = estimate_latent(joint, labels)
    rate = float(1.0 - np.trace(joint) / joint.sum())
    return np.asarray(noise_matrix, dtype=np.float64).T, rate


def transition_file(variant: str) -> Path:
    """What a variant needs from the detect stage: the estimated noise matrix per seed, or null."""
    return TRANSITIONS_DIR / f"{variant}.json"


def variant_transitions(
    loss: str,
    labels: str,
    estimates: Mapping[tuple[str, int], np.ndarray],
    seeds: tuple[int, ...],
    *,
    forward: bool,
    validation: bool,
) -> dict | None:
    """One variant's file: forward's T per seed (`seeds`, with `T: estimated`), the noisy validation labels'
    T (`validation`, train.select_score: corrected_estimated) for noisy and pruned variants; null when the
    variant needs neither. `estimates[(label set, seed)]`: detect's estimate of that label set's T."""
    content: dict = {}
    if forward and loss == "forward":
        content = {"T": "estimated", "seeds": {str(r): estimates[(labels, r)].tolist() for r in seeds}}
    if validation and labels != "clean":
        content["validation"] = {str(r): estimates[("noisy", r)].tolist() for r in seeds}
    return content or None


def estimated_transitions(
    variant: str, repeats: tuple[int, ...], num_classes: int, key: str = "seeds"
) -> dict[int, np.ndarray]:
    """Each seed's matrix the detect stage estimated for this variant: under `seeds`, forward's T (with
    T: estimated) of the training labels; under `validation`, the validation labels' T (train.select_score:
    corrected_estimated)."""
    path = transition_file(variant)
    content = read_json(path)
    matrices = {repeat: np.asarray((content or {}).get(key, {}).get(str(repeat), []), float) for repeat in repeats}
    if any(matrix.shape != (num_classes, num_classes) for matrix in matrices.values()):
        raise UserError(
            f"{path} lacks an estimated {num_classes}x{num_classes} matrix for some seed: rerun `dvc repro`"
        )
    return matrices


def log_transition(transition: Any, task: str) -> np.ndarray:
    """``log T`` (float32, ``-inf`` where ``T`` is 0) of a checked row-stochastic transition matrix.

    ``T[i, j] = P(noisy = j | clean = i)`` (Patrini et al. 2017; cleanlab's matrix is the transpose),
    ``(2, 2)`` for the binary task, ``(K, K)`` otherwise.

    Raises:
        ValueError: not a square matrix (not 2x2 for binary), an entry outside [0, 1] or not finite, or a
            row that does not sum to 1.
    """
    t = np.asarray(transition, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2 or (task == "binary" and t.shape != (2, 2)):
        want = "(2, 2)" if task == "binary" else "(K, K)"
        raise ValueError(f"forward loss: transition matrix of shape {t.shape}, the {task} task needs {want}")
    if not np.all(np.isfinite(t)) or t.min() < 0.0 or t.max() > 1.0:
        raise ValueError("forward loss: transition matrix entries must be probabilities in [0, 1]")
    if not np.allclose(t.sum(axis=1), 1.0, rtol=0.0, atol=1e-6):
        raise ValueError(
            f"forward loss: transition matrix rows must sum to 1 (row-stochastic), got {t.sum(axis=1).tolist()}"
        )
    with np.errstate(divide="ignore"):
        return np.log(t).astype(np.float32)


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
