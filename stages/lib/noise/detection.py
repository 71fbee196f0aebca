"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) on the training pool: which given labels look
wrong, how wrong the labels are overall, and how well that matches the labels we know were flipped.

Out-of-sample probabilities come from K-fold cross-validation of an L2-regularised logistic regression whose
strength is chosen by out-of-fold log-loss on the labels under test; cleanlab turns them into flags
("prune by noise rate"), a ranking score and the confident joint. Conventions: the ranking `score` is
1 - self-confidence (1 - the out-of-sample probability of the given label), so higher is more suspect;
transition matrices are ours, row-stochastic, T[i, j] = P(given = j | true = i) — cleanlab's noise matrix is
its transpose.

Beside it, the obvious baseline (stages.detect reports both): "small-loss", each sample's out-of-sample
cross-entropy on its given label, flagging as many samples as confident learning does.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from stages.lib.core.cpus import usable_cpus
from stages.lib.core.errors import UserError
from stages.lib.core.io import features_path, label_names, load_array, read_json, read_prepared
from stages.lib.noise.transition import estimated_transition, transition_matrix

# The detect_clean stage's run on the clean labels, per seed: false flags and the estimated T (read by detect).
CLEAN_DETECTION_FILE = Path("data/detect/clean.json")


@dataclass(frozen=True)
class OutOfSample:
    """Out-of-fold class probabilities and the L2 strength they were made with (and its out-of-fold
    log-loss on the labels under test, the score that chose it)."""

    probabilities: np.ndarray  # (N, K)
    l2: float
    log_loss: float


def out_of_sample_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    folds: int,
    l2: Sequence[float],
    seed: int,
) -> OutOfSample:
    """(N, K) class probabilities, each row from an L2-regularised logistic regression (scikit-learn's, on
    features standardised with the training folds' statistics) fitted on the other folds (StratifiedKFold,
    shuffled with `seed`).

    The L2 strength λ (objective: mean log-loss + λ/2·|w|², scikit-learn's C = 1 / (λ · rows)) is the one
    of `l2` whose out-of-fold probabilities have the lowest log-loss on the labels under test — the rule of
    scikit-learn's LogisticRegressionCV(scoring="neg_log_loss"), on the same folds that give the
    probabilities, so no clean label chooses anything. Confident learning needs probabilities that estimate
    p(given label | image) out of sample (Northcutt et al., JAIR 2021, Sec. 2); a head that fits every
    training label gives over-confident ones.
    """
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels, dtype=np.int64)
    features = np.asarray(features, dtype=np.float64)
    with threadpool_limits(limits=1):  # small matrices: BLAS threads only contend (5x slower on a busy 2-core machine)
        return _out_of_sample(features, labels, num_classes, folds, l2, seed)


def row_space_coordinates(x: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `x` (N, D), N < D, and of `other` in an orthonormal basis V of x's row space: x V = U S, other V.

    An L2-penalised linear model's weights lie in that span (representer theorem), so fitting on these at
    most N columns is the same problem as on the D features: the same λ, the same predictions. V comes from
    the Gram matrix x xᵀ = U S² Uᵀ (V = xᵀ U S⁻¹), cheaper than an SVD of x."""
    eigenvalues, u = np.linalg.eigh(x @ x.T)
    keep = eigenvalues > eigenvalues.max() * 1e-10
    root = np.sqrt(eigenvalues[keep])
    u = u[:, keep]
    return u * root, (other @ x.T @ u) / root


def _fold_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    train_rows: np.ndarray,
    held_out: np.ndarray,
    strengths: Sequence[float],
    num_classes: int,
) -> np.ndarray:
    """(len(strengths), len(held_out), K): one fold's held-out probabilities at each L2 strength."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features[train_rows])  # the training folds' statistics
    x, held = scaler.transform(features[train_rows]), scaler.transform(features[held_out])
    if x.shape[1] > x.shape[0]:
        x, held = row_space_coordinates(x, held)
    model = LogisticRegression(warm_start=True, max_iter=2000, tol=1e-4)
    probabilities = np.zeros((len(strengths), len(held_out), num_classes))
    for index, strength in enumerate(strengths):
        model.set_params(C=1.0 / (strength * len(train_rows)))
        model.fit(x, labels[train_rows])
        probabilities[index][:, model.classes_] = model.predict_proba(held)
    return probabilities


def _out_of_sample(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int, l2: Sequence[float], seed: int
) -> OutOfSample:
    strengths = sorted(float(v) for v in l2)[::-1]  # strongest first: each warm start moves to a weaker penalty
    probabilities = np.zeros((len(strengths), len(labels), num_classes))
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, labels))
    # The folds are independent fits: one thread per core (NumPy's BLAS and scikit-learn's solver release
    # the GIL; each fit keeps one BLAS thread), the same numbers as one after the other.
    with ThreadPoolExecutor(max_workers=min(folds, usable_cpus())) as pool:
        fold_probabilities = pool.map(
            lambda split: _fold_probabilities(features, labels, split[0], split[1], strengths, num_classes), splits
        )
        for (_, held_out), found in zip(splits, fold_probabilities, strict=True):
            probabilities[:, held_out] = found
    given = probabilities[:, np.arange(len(labels)), labels]
    losses = -np.log(np.clip(given, 1e-15, 1.0)).mean(axis=1)
    best = int(np.argmin(losses))
    return OutOfSample(probabilities[best], strengths[best], float(losses[best]))


@dataclass(frozen=True)
class TrainingPool:
    """The training pool both detection stages read: ids and true labels (the task's, in feature-row order),
    the cached features, the label names."""

    ids: np.ndarray
    true_labels: np.ndarray
    features: np.ndarray
    names: list[str]


def training_pool(task: str) -> TrainingPool:
    """The training pool from the subsample and embed stages' files, checked against each other."""
    table, summary = read_prepared(task)
    rows = table["split"] == "train"
    ids = table.loc[rows, "id"].to_numpy()
    features = load_array(features_path("train"))
    if len(features) and len(features) != len(ids):
        raise UserError(
            f"{features_path('train')} has {len(features)} rows, the training pool {len(ids)}: rerun `dvc repro`"
        )
    true_labels = table.loc[rows, "label"].to_numpy(dtype=np.int64)
    return TrainingPool(ids, true_labels, features, label_names(summary))


def detection_problem(pool: TrainingPool, *, fine_tune: bool, folds: int) -> str | None:
    """Why no detection can run on this pool (None: it can)."""
    if fine_tune or pool.features.ndim != 2 or pool.features.shape[1] == 0:
        return "model.fine_tune: true leaves no cached features for the head"
    if smallest_class(pool.true_labels) < folds:
        return f"detect.folds = {folds} but a class has only {smallest_class(pool.true_labels)} training labels"
    return None


@dataclass(frozen=True)
class Issues:
    """cleanlab's verdict on one label set: per sample, flagged or not, the suspicion score and the model's
    label; overall, the confident joint's noise rate and the transition matrix it implies."""

    flagged: np.ndarray  # (N,) bool
    score: np.ndarray  # (N,) 1 - self-confidence: higher is more suspect
    predicted: np.ndarray  # (N,) argmax of the out-of-sample probabilities
    estimated_noise_rate: float  # off-diagonal share of the calibrated confident joint
    transition: np.ndarray  # (K, K) row-stochastic T[i, j] = P(given = j | true = i)


def find_issues(labels: np.ndarray, pred_probs: np.ndarray) -> Issues:
    """Flags by cleanlab's `prune_by_noise_rate` and scores by self-confidence, for every sample."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    flagged = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate")
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    transition, rate = estimated_transition(labels, pred_probs)
    return Issues(
        flagged=np.asarray(flagged, dtype=bool),
        score=1.0 - np.asarray(quality, dtype=np.float64),
        predicted=pred_probs.argmax(axis=1),
        estimated_noise_rate=rate,
        transition=transition,
    )


def detect_issues(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    folds: int,
    l2: Sequence[float],
    seed: int,
    source: str,
) -> tuple[OutOfSample, Issues]:
    """Out-of-sample probabilities of `labels` (from `source`, named in errors) and cleanlab's verdict."""
    if smallest_class(labels) < folds:
        raise UserError(
            f"detect.folds = {folds}: {source} has a class with only {smallest_class(labels)} training labels; "
            "each class needs at least one per fold (lower detect.folds or raise data.train_size)"
        )
    out_of_sample = out_of_sample_probabilities(
        features, labels, num_classes=num_classes, folds=folds, l2=l2, seed=seed
    )
    return out_of_sample, find_issues(labels, out_of_sample.probabilities)


def detection_metrics(flipped: np.ndarray, flagged: np.ndarray, score: np.ndarray) -> dict[str, float | int | None]:
    """How the flags and the ranking find the truly flipped labels.

    precision, recall, f1 of `flagged` against `flipped` (0 where undefined: nothing flagged or nothing
    flipped); auc and average_precision (scikit-learn's, the flipped labels the positives) of `score`, None
    when every label or none was flipped (ranking at random: AUC 0.5, AP the flipped share); the false-flag
    rate (flags on unflipped labels / unflipped labels).
    """
    flipped, flagged = np.asarray(flipped, dtype=bool), np.asarray(flagged, dtype=bool)
    both = flipped.any() and not flipped.all()
    return {
        "precision": float(precision_score(flipped, flagged, zero_division=0)),
        "recall": float(recall_score(flipped, flagged, zero_division=0)),
        "f1": float(f1_score(flipped, flagged, zero_division=0)),
        "auc": float(roc_auc_score(flipped, score)) if both else None,
        "average_precision": float(average_precision_score(flipped, score)) if both else None,
        "flagged": int(flagged.sum()),
        "flipped": int(flipped.sum()),
        "false_flag_rate": float((flagged & ~flipped).sum() / max(int((~flipped).sum()), 1)),
    }


def small_loss_scores(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(N,) each sample's cross-entropy on its given label, -log p(given), from out-of-sample probabilities:
    higher is more suspect. It orders the samples as 1 - self-confidence does (both fall as p(given)
    rises), so its AUC and AP equal the confident-learning score's, up to ties of 1 - p in floating point."""
    labels = np.asarray(labels, dtype=np.int64)
    given = np.asarray(pred_probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return -np.log(np.maximum(given, np.finfo(np.float64).tiny))  # p = 0 ranks first, finite


def top_flags(score: np.ndarray, count: int) -> np.ndarray:
    """(N,) bool: the `count` highest scores flagged (ties to the earlier sample)."""
    flags = np.zeros(len(score), dtype=bool)
    flags[np.argsort(-np.asarray(score), kind="stable")[:count]] = True
    return flags


def small_loss_metrics(
    flipped: np.ndarray, labels: np.ndarray, pred_probs: np.ndarray, count: int
) -> dict[str, float | None]:
    """The small-loss baseline's ranking (auc, average_precision) and its flags when it flags the `count`
    largest losses (precision, recall, f1), keys prefixed `small_loss_`."""
    loss = small_loss_scores(labels, pred_probs)
    found = detection_metrics(flipped, top_flags(loss, count), loss)
    return {f"small_loss_{key}": found[key] for key in ("precision", "recall", "f1", "auc", "average_precision")}


def noise_rate_metrics(estimated: float, flipped: np.ndarray) -> dict[str, float]:
    """The estimated noise rate beside the realised one (the flipped share), its error (estimated - realised)
    and that error's absolute value."""
    realised = float(np.mean(flipped)) if len(flipped) else float("nan")
    return {
        "estimated_noise_rate": float(estimated),
        "realised_noise_rate": realised,
        "noise_rate_error": float(estimated) - realised,
        "abs_noise_rate_error": abs(float(estimated) - realised),
    }


def pruned_rows(noisy: pd.DataFrame, seed: int, flagged_ids: np.ndarray) -> pd.DataFrame:
    """One seed's rows of the noisy label table without the ids flagged for that seed ("prune by noise rate")."""
    rows = noisy[noisy["seed"] == seed]
    return rows[~rows["id"].isin(flagged_ids)]


def issues_table(seed: int, ids: np.ndarray, labels: np.ndarray, flipped: np.ndarray, issues: Issues) -> pd.DataFrame:
    """issues.csv's rows of one seed: the verdict per training image, with its rank (1 = most suspect)."""
    order = np.argsort(-issues.score, kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return pd.DataFrame(
        {
            "seed": seed,
            "id": ids,
            "label": labels,
            "predicted": issues.predicted,
            "score": np.round(issues.score, 6),
            "rank": ranks,
            "flagged": issues.flagged,
            "flipped": flipped,
        }
    )


def mean_over_seeds(per_seed: dict[str, dict], keys: tuple[str, ...]) -> dict[str, float | None]:
    """Each key's mean over the seeds that have a value for it (None where none has)."""
    means = {}
    for key in keys:
        values = [s[key] for s in per_seed.values() if s.get(key) is not None]
        means[key] = float(np.mean(values)) if values else None
    return means


def smallest_class(labels: np.ndarray) -> int:
    """The count of the rarest class present: StratifiedKFold needs at least one per fold."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return int(counts[counts > 0].min())


MEAN_KEYS = (
    "precision",
    "recall",
    "f1",
    "false_flag_rate",
    "auc",
    "average_precision",
    "small_loss_precision",
    "small_loss_recall",
    "small_loss_f1",
    "small_loss_auc",
    "small_loss_average_precision",
    "estimated_noise_rate",
    "realised_noise_rate",
    "noise_rate_error",
    "abs_noise_rate_error",
)


CLEAN_KEYS = ("false_flag_rate", "flagged", "estimated_noise_rate")  # detect_clean's, in the detail file


def clean_run(seeds: tuple[int, ...]) -> dict[int, dict]:
    """The detect_clean stage's run on the clean labels, per seed (its file says why it is a stage)."""
    found = read_json(CLEAN_DETECTION_FILE)
    runs = found.get("seeds") or {}
    missing = [repeat for repeat in seeds if str(repeat) not in runs]
    if missing:
        raise UserError(f"{CLEAN_DETECTION_FILE} has no run for seeds {missing}: rerun `dvc repro`")
    return {repeat: runs[str(repeat)] for repeat in seeds}


def _rounded(matrix: np.ndarray) -> list:
    return np.round(matrix, 6).tolist()


def seed_metrics(
    labels: np.ndarray, true_labels: np.ndarray, out_of_sample: OutOfSample, issues: Issues, num_classes: int
) -> dict:
    """One seed's detail entry: the flags' scores against the flipped labels, the small-loss baseline's with as
    many flags, the estimated noise against the realised one, both T, and the out-of-fold model that chose
    them (its L2 strength and out-of-fold log-loss)."""
    flipped = labels != true_labels
    probs = out_of_sample.probabilities
    return {
        **detection_metrics(flipped, issues.flagged, issues.score),
        **small_loss_metrics(flipped, labels, probs, int(issues.flagged.sum())),
        **noise_rate_metrics(issues.estimated_noise_rate, flipped),
        "estimated_transition_matrix": _rounded(issues.transition),
        "realised_transition_matrix": _rounded(transition_matrix(true_labels, labels, num_classes)),
        "model": {"l2": out_of_sample.l2, "log_loss": out_of_sample.log_loss},
    }


def detection_summary(folds: int, names: list[str], noisy_seeds: dict, clean_seeds: dict) -> dict:
    """metrics/details/detection.json: the method, and per label set (noisy; clean, every flag false) the
    means over seeds and each seed's entry."""
    return {
        "method": "cleanlab find_label_issues, prune_by_noise_rate; score = 1 - self-confidence",
        "baseline": "small-loss: -log p(given label), the same out-of-sample probabilities; flags the top as many",
        "folds": folds,
        "label_names": names,
        "noisy": {**mean_over_seeds(noisy_seeds, MEAN_KEYS), "seeds": noisy_seeds},
        "clean": {**mean_over_seeds(clean_seeds, ("false_flag_rate", "estimated_noise_rate")), "seeds": clean_seeds},
    }
