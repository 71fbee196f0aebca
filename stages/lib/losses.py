"""Robust loss functions for training under label noise (Keras 3, ``keras.ops``).

Every loss returned by :func:`make_loss` maps ``(y_true, y_pred)`` to the
per-sample loss, shape ``(batch,)``; Keras applies the reduction. They work
inside ``model.fit`` and on plain NumPy arrays (``np.asarray`` converts the
result).

Conventions
-----------
* ``task="binary"``: ``y_pred`` is a sigmoid probability, shape ``(N, 1)`` or
  ``(N,)``; ``y_true`` holds hard 0/1 labels of the same shape. Where a loss
  needs class distributions, binary is treated as two classes, ``p = [1-p, p]``.
* ``task="multiclass"``: ``y_pred`` is a softmax output ``(N, K)``; ``y_true``
  is one-hot ``(N, K)``.
* Both inputs are cast to float32 (mixed precision may hand us float16
  ``y_pred``) and probabilities are clipped to ``[EPS, 1 - EPS]`` before any
  ``log``.

Notation below: ``y`` one-hot target, ``p`` predicted distribution, ``p_y`` the
probability of the labelled class, ``CE(t, p) = -sum_k t_k log p_k``.
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


class _LazyKerasOps:
    """`keras.ops`, imported on first use: validating loss params (every stage does, at start) must not
    wait for TensorFlow to load."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("keras.ops"), name)


ops = _LazyKerasOps()

EPS = 1e-7
# SCE: value substituted for log(0) in the reverse CE (Wang et al. 2019, Sec. 3.3).
SCE_LOG_ZERO = -4.0

LOSS_NAMES: tuple[str, ...] = ("bce", "l1", "gce", "sce", "bootstrap", "ls")
TASKS: tuple[str, ...] = ("binary", "multiclass")
BOOTSTRAP_MODES: tuple[str, ...] = ("soft", "hard")
# Reed et al. 2014 use beta=0.95 for soft and beta=0.8 for hard bootstrapping.
BOOTSTRAP_DEFAULT_BETA: dict[str, float] = {"soft": 0.95, "hard": 0.8}

DEFAULT_LOSS_PARAMS: dict[str, dict[str, Any]] = {
    "bce": {},
    "l1": {},
    "gce": {"q": 0.7},
    "sce": {"alpha": 0.1, "beta": 1.0},
    "bootstrap": {"mode": "soft", "beta": None},  # None: 0.95 soft / 0.8 hard
    "ls": {"smoothing": 0.1},
}


class LossConfigError(ValueError):
    """A loss name, task or loss parameter from params.yaml is invalid."""


# --------------------------------------------------------------------------
# Validation


def _number(name: str, key: str, value: Any) -> float:
    # bool is an int subclass; `q: true` in YAML is a typo, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise LossConfigError(f"train.loss_params.{name}.{key} = {value!r}: must be a finite number")
    return float(value)


def _check(name: str, key: str, value: float, ok: bool, allowed: str) -> None:
    if not ok:
        raise LossConfigError(f"train.loss_params.{name}.{key} = {value!r}: must be {allowed}")


def _check_name(name: Any) -> None:
    if name not in LOSS_NAMES:
        raise LossConfigError(f"train.losses: unknown loss {name!r}; allowed: {', '.join(LOSS_NAMES)}")


def validate_loss_params(name: str, params: Mapping[str, Any] | None) -> dict:
    """Return ``DEFAULT_LOSS_PARAMS[name]`` updated with ``params``, validated.

    For ``bootstrap`` a ``beta`` of ``None`` is resolved to the default of the
    chosen mode, so the returned dict holds the value actually used.

    Raises:
        LossConfigError: unknown loss name, unknown parameter key, or a value
            out of range; the message names ``train.losses`` or
            ``train.loss_params.<loss>.<key>`` and the allowed values.
    """
    _check_name(name)
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise LossConfigError(f"train.loss_params.{name} = {params!r}: must be a mapping of parameters")
    defaults = DEFAULT_LOSS_PARAMS[name]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise LossConfigError(f"train.loss_params.{name}.{unknown[0]}: unknown parameter; allowed: {allowed}")
    out = {**defaults, **params}

    if name == "gce":
        q = out["q"] = _number(name, "q", out["q"])
        _check(name, "q", q, 0.0 < q <= 1.0, "in (0, 1]")
    elif name == "sce":
        for key in ("alpha", "beta"):
            out[key] = _number(name, key, out[key])
            _check(name, key, out[key], out[key] >= 0.0, ">= 0")
        if out["alpha"] == 0.0 and out["beta"] == 0.0:
            raise LossConfigError("train.loss_params.sce.alpha/beta = 0/0: at least one must be > 0")
    elif name == "bootstrap":
        mode = out["mode"]
        if mode not in BOOTSTRAP_MODES:
            raise LossConfigError(
                f"train.loss_params.bootstrap.mode = {mode!r}: must be one of {', '.join(BOOTSTRAP_MODES)}"
            )
        if out["beta"] is None:
            out["beta"] = BOOTSTRAP_DEFAULT_BETA[mode]
        beta = out["beta"] = _number(name, "beta", out["beta"])
        _check(name, "beta", beta, 0.0 <= beta <= 1.0, "in [0, 1] (or null)")
    elif name == "ls":
        s = out["smoothing"] = _number(name, "smoothing", out["smoothing"])
        _check(name, "smoothing", s, 0.0 <= s < 1.0, "in [0, 1)")
    return out


# --------------------------------------------------------------------------
# Losses on (y, p): one-hot targets and clipped probabilities, both (N, K).


def _to_distributions(y_true, y_pred, task: str):
    """Cast to float32 and return ``(y, p)`` as ``(N, K)`` class distributions."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    if task == "binary":
        if len(y_pred.shape) > 1 and y_pred.shape[-1] not in (1, None):
            raise ValueError(f"binary task expects y_pred of shape (N, 1) or (N,), got {tuple(y_pred.shape)}")
        y = ops.reshape(y_true, (-1,))
        p = ops.clip(ops.reshape(y_pred, (-1,)), EPS, 1.0 - EPS)
        return ops.stack([1.0 - y, y], axis=-1), ops.stack([1.0 - p, p], axis=-1)
    return y_true, ops.clip(y_pred, EPS, 1.0 - EPS)


def _ce(target, p):
    return -ops.sum(target * ops.log(p), axis=-1)


def _p_label(y, p):
    # Probability of the labelled class (y is one-hot).
    return ops.sum(y * p, axis=-1)


def _bce(y, p):
    """Cross-entropy ``CE(y, p)``: binary CE for binary, categorical CE otherwise."""
    return _ce(y, p)


def _l1(y, p):
    """MAE on probabilities, ``sum_k |y_k - p_k| = 2 (1 - p_y)`` for one-hot ``y``.

    Ghosh, Kumar & Sastry, AAAI 2017: a *symmetric* loss (``sum_k L(k, p)`` is
    constant), hence tolerant to uniform label noise. (Binary is handled in
    :func:`make_loss` as ``|y - p|``, half the 2-class sum.)
    """
    return ops.sum(ops.abs(y - p), axis=-1)


def _gce(y, p, q: float):
    """Generalized CE, Zhang & Sabuncu, NeurIPS 2018: ``(1 - p_y**q) / q``.

    ``q -> 0`` recovers CE, ``q = 1`` gives ``1 - p_y`` (MAE-like).
    """
    return (1.0 - ops.power(_p_label(y, p), q)) / q


def _sce(y, p, alpha: float, beta: float):
    """Symmetric CE, Wang et al., ICCV 2019: ``alpha CE(y, p) + beta RCE``.

    ``RCE = -sum_k p_k log y_k`` with ``log 0 := A = -4`` (paper's value), done
    by clipping ``y`` to ``[exp(A), 1]``; for one-hot ``y``, ``RCE = 4 (1 - p_y)``.
    """
    rce = _ce(p, ops.clip(y, math.exp(SCE_LOG_ZERO), 1.0))
    return alpha * _ce(y, p) + beta * rce


def _bootstrap(y, p, mode: str, beta: float):
    """Bootstrapping, Reed et al. 2014 (ICLR 2015 workshop).

    ``CE(t, p)`` with target ``t = beta y + (1 - beta) z``; soft: ``z = p``,
    hard: ``z = onehot(argmax p)`` (binary: ``1[p > 0.5]``). ``z`` is a
    constant (``stop_gradient``): the model's belief is a target, not a path
    for the gradient.
    """
    if mode == "soft":
        z = p
    else:
        # argmax of [1-p, p] picks class 0 at p = 0.5, i.e. binary z = 1[p > 0.5].
        z = ops.one_hot(ops.argmax(p, axis=-1), p.shape[-1], dtype=p.dtype)
    target = beta * y + (1.0 - beta) * ops.stop_gradient(z)
    return _ce(target, p)


def _ls(y, p, smoothing: float):
    """CE with label smoothing, Szegedy et al., CVPR 2016: ``t = (1-s) y + s/K``."""
    k = p.shape[-1]
    return _ce((1.0 - smoothing) * y + smoothing / k, p)


_LOSSES: dict[str, Callable] = {
    "bce": _bce,
    "l1": _l1,
    "gce": _gce,
    "sce": _sce,
    "bootstrap": _bootstrap,
    "ls": _ls,
}


# --------------------------------------------------------------------------
# Public entry points


def make_loss(name: str, task: str = "binary", params: Mapping[str, Any] | None = None) -> Callable:
    """Build the per-sample loss ``fn(y_true, y_pred) -> (batch,)`` float32.

    Args:
        name: one of :data:`LOSS_NAMES` (``train.losses`` in params.yaml).
        task: ``"binary"`` (sigmoid output) or ``"multiclass"`` (softmax output,
            one-hot ``y_true``).
        params: overrides of :data:`DEFAULT_LOSS_PARAMS` ``[name]``.

    For binary ``l1`` the loss is ``|y - p|`` (plain MAE as the seed used it),
    not the 2-class sum ``2 |y - p|``.

    ``fn.__name__`` is the loss name, which Keras uses for logging.
    """
    if task not in TASKS:
        raise LossConfigError(f"task = {task!r}: must be one of {', '.join(TASKS)}")
    cfg = validate_loss_params(name, params)
    core = _LOSSES[name]
    # Binary l1 is |y - p|, half of the 2-class sum.
    scale = 0.5 if (name == "l1" and task == "binary") else 1.0

    def loss_fn(y_true, y_pred):
        y, p = _to_distributions(y_true, y_pred, task)
        out = core(y, p, **cfg)
        return out * scale if scale != 1.0 else out

    loss_fn.__name__ = loss_fn.__qualname__ = name
    loss_fn.__doc__ = f"{name} ({task}, {cfg}).\n\n{core.__doc__}"
    return loss_fn


def mean_loss(
    name: str,
    task: str,
    params: Mapping[str, Any] | None,
    y_true: np.ndarray,
    y_pred: np.ndarray,
) -> float:
    """Mean of ``make_loss(name, task, params)(y_true, y_pred)`` as a Python float."""
    per_sample = make_loss(name, task, params)(y_true, y_pred)
    return float(np.mean(ops.convert_to_numpy(per_sample)))
