"""Label-noise models for integer class labels.

Labels are integers ``0 .. K-1``; the binary task is ``K = 2`` with ``1`` the
positive class. Every random draw comes from the ``numpy.random.Generator``
passed in, so the same generator seed gives byte-identical output, and the
input array is never modified.

The three noise models drawn here (``SIMULATED_NOISE_TYPES``: symmetric, asymmetric, notebook) and their
sources are described in docs/noise.md and in :func:`corrupt_labels`; the fourth, ``given``, is read from a
file (stages.lib.noise.given_labels).

Rounding: counts are ``rate * n`` rounded half up (not Python's banker's
``round``, where ``round(2.5) == 2``), computed exactly on the rate's decimal
value (its shortest repr, what params.yaml says): in floating point
``0.7 * 45`` is 31.499999999999996, so ``floor(0.7 * 45 + 0.5)`` would give 31
instead of 32. See :func:`exact_count`.

Errors: the settings come checked (stages.lib.core.params checks what the user
wrote) and are not checked again; an unknown noise type or a label array out of
range here is a programming error and raises a plain ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from stages.lib.core.params import NOISE_TYPES

SIMULATED_NOISE_TYPES = tuple(kind for kind in NOISE_TYPES if kind != "given")  # drawn here; `given` is read
__all__ = [
    "NOISE_TYPES",
    "SIMULATED_NOISE_TYPES",
    "class_flip_rates",
    "confusion_counts",
    "corrupt_labels",
    "exact_count",
    "expected_flips",
    "flip_rates",
]


def _validate_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or int(num_classes) < 2:
        raise ValueError(f"num_classes = {num_classes!r}: must be an integer >= 2")
    return int(num_classes)


def _as_labels(labels: Any, num_classes: int, name: str) -> np.ndarray:
    """Return ``labels`` as an integer ndarray, checking dtype and range."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: must be an integer array, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name}: values must be in [0, {num_classes - 1}], got min {arr.min()} and max {arr.max()}")
    return arr


def exact_count(rate: float, n: int) -> int:
    """``rate * n`` rounded half up (0.5 -> 1, 2.5 -> 3), exactly: the rate is taken as the decimal it is
    written as (``repr``, e.g. 0.7 is 7/10, not the binary float 0.6999999999999999556), so
    ``exact_count(0.7, 45) == 32``."""
    product = Fraction(repr(float(rate))) * int(n)
    return math.floor(product + Fraction(1, 2))


# --------------------------------------------------------------------------
# Noise models
# --------------------------------------------------------------------------


def class_flip_rates(
    num_classes: int, noise: float, noise_type: str, class_rates: Mapping[int, float] | None = None
) -> dict[int, float] | None:
    """The flip rate of each class ``c`` for the two exact models (``None`` for ``notebook`` and ``given``, which
    fix no count): ``symmetric``, ``noise`` for every class; ``asymmetric``, ``class_rates`` (missing classes
    0) or without them the binary default (positives only) or ``noise`` for every class."""
    k = int(num_classes)
    if noise_type == "symmetric":
        return {c: float(noise) for c in range(k)}
    if noise_type != "asymmetric":
        return None
    if class_rates is None:
        # Binary default: only positives are corrupted (1 -> 0).
        return {c: (float(noise) if k > 2 or c == 1 else 0.0) for c in range(k)}
    return {c: float(class_rates.get(c, 0.0)) for c in range(k)}


def expected_flips(
    labels: np.ndarray,
    num_classes: int,
    noise: float,
    noise_type: str,
    class_rates: Mapping[int, float] | None = None,
) -> dict[int, int] | None:
    """How many labels of each class the draw flips, exactly: ``exact_count(rate_c, n_c)`` for class ``c``
    with ``n_c`` samples in ``labels`` (``None`` for ``notebook`` and ``given``: their counts are not fixed)."""
    rates = class_flip_rates(num_classes, noise, noise_type, class_rates)
    if rates is None:
        return None
    sizes = np.bincount(np.asarray(labels, dtype=np.int64).reshape(-1), minlength=int(num_classes))
    return {c: exact_count(rate, int(sizes[c])) for c, rate in rates.items()}


def _spread(count: int, destinations: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` split over ``destinations`` cells as evenly as integers allow: each gets
    ``count // destinations``, and ``count % destinations`` cells, drawn without replacement, one more."""
    cells = np.full(destinations, count // destinations, dtype=np.int64)
    cells[rng.choice(destinations, size=count % destinations, replace=False)] += 1
    return cells


def _symmetric(flat: np.ndarray, k: int, counts: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    out = flat.copy()
    # Classes in ascending order so the random stream is consumed deterministically. The count per cell of
    # the transition matrix is fixed too (as cleanlab's generate_noisy_labels does): class c's flips are
    # spread evenly over the K - 1 other classes, the remainder to cells the generator picks.
    for c in range(k):
        if counts[c] == 0:
            continue
        idx = rng.choice(np.flatnonzero(flat == c), size=counts[c], replace=False)  # in random order
        others = np.array([j for j in range(k) if j != c], dtype=np.int64)
        out[idx] = np.repeat(others, _spread(counts[c], k - 1, rng)).astype(flat.dtype)
    return out


def _asymmetric(flat: np.ndarray, k: int, counts: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    out = flat.copy()
    # Classes in ascending order so the random stream is consumed deterministically;
    # samples are chosen from the clean labels, so no label is flipped twice.
    for c in range(k):
        if counts[c] == 0:
            continue
        idx = rng.choice(np.flatnonzero(flat == c), size=counts[c], replace=False)
        out[idx] = (c + 1) % k  # binary: the other class; multiclass: pair flip
    return out


def _notebook(flat: np.ndarray, k: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    n = flat.size
    out = flat.copy()
    if n == 0:
        return out
    # rng.random() is in [0, 1): noise = 0 replaces nothing, noise = 1 replaces all.
    replace = rng.random(n) < noise
    out[replace] = rng.integers(0, k, size=int(replace.sum())).astype(flat.dtype)
    return out


# Each drawn model: (flat labels, K, rate, exact per-class counts or None, rng) -> noisy flat labels.
_DRAWS: dict[str, Callable[..., np.ndarray]] = {
    "symmetric": lambda flat, k, noise, counts, rng: _symmetric(flat, k, counts, rng),
    "asymmetric": lambda flat, k, noise, counts, rng: _asymmetric(flat, k, counts, rng),
    "notebook": lambda flat, k, noise, counts, rng: _notebook(flat, k, noise, rng),
}


def corrupt_labels(
    labels: np.ndarray,
    num_classes: int,
    noise: float,
    noise_type: str,
    rng: np.random.Generator,
    class_rates: dict[int, float] | None = None,
) -> np.ndarray:
    """Return a noisy copy of ``labels`` (same shape and dtype); input is unchanged.

    Args:
        labels: integer class labels in ``[0, num_classes - 1]``, any shape
            (treated as a flat list of samples).
        num_classes: ``K >= 2``. Binary tasks use ``K = 2`` with 1 = positive.
        noise: a rate in [0, 1]; its meaning depends on ``noise_type``.
        noise_type: one of ``SIMULATED_NOISE_TYPES``:

            * ``"symmetric"`` (Ghosh et al. 2017; Han et al. 2018): exactly
              ``exact_count(noise, n_c)`` of the ``n_c`` samples of *each*
              class ``c`` (``noise * n_c`` on the decimal rate, rounded half
              up, so 0.5 rounds up, unlike Python's banker's ``round``), drawn
              uniformly without replacement, each get another class (binary:
              the other class). Multiclass, the destinations are exact too:
              class ``c``'s flips are split evenly over the ``K - 1`` other
              classes, the remainder to cells drawn at random (cleanlab's
              ``generate_noisy_labels`` fixes the count per cell likewise). The
              total is the sum of the per-class counts, which can differ from
              ``exact_count(noise, n)`` by rounding (at most ``K / 2``). For
              binary labels ``noise = 0.5`` leaves the
              noisy label carrying no information about the clean one, and
              ``noise > 0.5`` inverts the concept (most labels are wrong). For
              ``K`` classes the no-information point is ``(K - 1) / K``.
            * ``"asymmetric"`` (class-conditional; Natarajan et al. 2013,
              Patrini et al. 2017; multiclass pair flip of Han et al. 2018):
              class ``c`` has exactly ``exact_count(rate_c, n_c)`` of its
              ``n_c`` samples flipped to ``(c + 1) mod K`` (binary: the other
              class). Without ``class_rates``, binary flips only positives
              (1 -> 0) at rate ``noise`` and multiclass flips every class at
              rate ``noise``. With ``class_rates`` the rates come from that
              mapping alone (missing classes get 0; ``noise`` is ignored).
            * ``"notebook"`` (the original public notebook's rule): each label is
              independently, with probability ``noise``, replaced by a label
              drawn uniformly from all ``K`` classes (possibly the same one),
              so the realised flip rate is only about ``noise * (K - 1) / K``
              (``noise / 2`` for binary) and is random, not exact.
        rng: the only source of randomness; the same seed gives identical
            output.
        class_rates: ``{class_index: rate}``, only for ``"asymmetric"``.

    The setting comes checked (stages.lib.core.params) and is not checked again.

    Raises:
        ValueError: a ``noise_type`` not drawn here or ``num_classes`` below 2;
            ``labels`` is not an integer array or has values outside
            ``[0, num_classes - 1]``.
    """
    if noise_type not in _DRAWS:
        raise ValueError(f"noise_type = {noise_type!r}: corrupt_labels draws {', '.join(_DRAWS)} only")
    k = _validate_num_classes(num_classes)
    arr = _as_labels(labels, k, "labels")
    flat = arr.reshape(-1)
    counts = expected_flips(flat, k, float(noise), noise_type, class_rates)
    out = _DRAWS[noise_type](flat, k, float(noise), counts, rng)
    return out.reshape(arr.shape)


# --------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------


def _pair(clean: Any, noisy: Any, num_classes: Any) -> tuple[np.ndarray, np.ndarray, int]:
    k = _validate_num_classes(num_classes)
    c = _as_labels(clean, k, "clean").reshape(-1)
    y = _as_labels(noisy, k, "noisy").reshape(-1)
    if np.shape(clean) != np.shape(noisy):
        raise ValueError(f"clean and noisy: must have the same shape, got {np.shape(clean)} and {np.shape(noisy)}")
    return c.astype(np.int64), y.astype(np.int64), k


def _counts(clean: np.ndarray, noisy: np.ndarray, k: int) -> np.ndarray:
    """Confusion counts ``C[i, j]``: samples with clean label ``i`` and noisy ``j``."""
    return np.bincount(clean * k + noisy, minlength=k * k).reshape(k, k)


def confusion_counts(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts ``C[i, j]``: samples with clean label ``i`` and noisy ``j``, labels checked."""
    c, y, k = _pair(clean, noisy, num_classes)
    return _counts(c, y, k)


def flip_rates(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Realised flip statistics of ``noisy`` against ``clean``.

    Returns ``{"overall": float, "per_class": {c: float}, "count": int,
    "per_class_count": {c: int}}`` with plain Python ``int`` keys and
    ``int``/``float`` values (ready for YAML/JSON):

    * ``count``: number of samples with ``noisy != clean``;
      ``overall = count / n``.
    * ``per_class_count[c]``: flipped samples whose clean label is ``c``;
      ``per_class[c] = per_class_count[c] / n_c`` (``1 - T[c, c]``).

    A rate with an empty denominator (``n = 0``, or class ``c`` absent from
    ``clean``) is NaN, matching the NaN rows of stages.lib.noise.transition.transition_matrix.
    """
    c, y, k = _pair(clean, noisy, num_classes)
    flipped = c != y
    n_per_class = np.bincount(c, minlength=k)
    flips_per_class = np.bincount(c[flipped], minlength=k)
    count = int(flipped.sum())
    n = int(c.size)
    return {
        "overall": count / n if n else math.nan,
        "per_class": {
            i: int(flips_per_class[i]) / int(n_per_class[i]) if n_per_class[i] else math.nan for i in range(k)
        },
        "count": count,
        "per_class_count": {i: int(flips_per_class[i]) for i in range(k)},
    }
