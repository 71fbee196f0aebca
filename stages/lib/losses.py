"""Robust loss functions for training under label noise, written once for two array backends.

Every loss returned by :func:`make_loss` maps ``(y_true, y_pred)`` to the
per-sample loss, shape ``(batch,)``; Keras applies the reduction. With
``backend="keras"`` (``keras.ops``) they work inside ``model.fit``; with
``backend="numpy"`` they run on NumPy arrays without loading TensorFlow, which is
what the head-mode train stage and the evaluate stage use (a TensorFlow import
costs 3-4 s per stage process, more than training a head). :func:`logit_gradient`
gives each loss's gradient with respect to the output unit's logits, for the
NumPy head trainer (stages.lib.head).

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

Loss names, their params and defaults are defined and checked in stages.lib.params (docs/losses.md
describes each loss); the functions here take checked params and raise a plain ``ValueError`` for an
unknown loss or task, which only a programming error can produce.

Notation below: ``y`` one-hot target, ``p`` predicted distribution, ``p_y`` the
probability of the labelled class, ``CE(t, p) = -sum_k t_k log p_k``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from stages.lib.params import LOSS_NAMES, TASKS, validate_loss_params


class _LazyKerasOps:
    """`keras.ops`, imported on first use: the NumPy backend (head mode, the evaluate stage) must not wait
    for TensorFlow to load."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("keras.ops"), name)


class _NumpyOps:
    """The few `keras.ops` functions the losses use, on NumPy arrays (forward values only)."""

    cast = staticmethod(lambda x, dtype: np.asarray(x, dtype=dtype))
    reshape = staticmethod(np.reshape)
    clip = staticmethod(np.clip)
    stack = staticmethod(np.stack)
    sum = staticmethod(np.sum)
    log = staticmethod(np.log)
    abs = staticmethod(np.abs)
    power = staticmethod(np.power)
    argmax = staticmethod(np.argmax)
    stop_gradient = staticmethod(lambda x: x)
    convert_to_numpy = staticmethod(np.asarray)

    @staticmethod
    def one_hot(indices, num_classes: int, dtype=None):
        return np.eye(num_classes, dtype=dtype)[indices]


BACKENDS: dict[str, Any] = {"keras": _LazyKerasOps(), "numpy": _NumpyOps()}

EPS = 1e-7
# SCE: value substituted for log(0) in the reverse CE (Wang et al. 2019, Sec. 3.3).
SCE_LOG_ZERO = -4.0

# --------------------------------------------------------------------------
# Losses on (y, p): one-hot targets and clipped probabilities, both (N, K).


def _to_distributions(ops, y_true, y_pred, task: str):
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


def _ce(ops, target, p):
    return -ops.sum(target * ops.log(p), axis=-1)


def _p_label(ops, y, p):
    # Probability of the labelled class (y is one-hot).
    return ops.sum(y * p, axis=-1)


def _bce(ops, y, p):
    """Cross-entropy ``CE(y, p)``: binary CE for binary, categorical CE otherwise."""
    return _ce(ops, y, p)


def _l1(ops, y, p):
    """MAE on probabilities, ``sum_k |y_k - p_k| = 2 (1 - p_y)`` for one-hot ``y``.

    Ghosh, Kumar & Sastry, AAAI 2017: a *symmetric* loss (``sum_k L(k, p)`` is
    constant), hence tolerant to uniform label noise. (Binary is handled in
    :func:`make_loss` as ``|y - p|``, half the 2-class sum.)
    """
    return ops.sum(ops.abs(y - p), axis=-1)


def _gce(ops, y, p, q: float):
    """Generalized CE, Zhang & Sabuncu, NeurIPS 2018: ``(1 - p_y**q) / q``.

    ``q -> 0`` recovers CE, ``q = 1`` gives ``1 - p_y`` (MAE-like).
    """
    return (1.0 - ops.power(_p_label(ops, y, p), q)) / q


def _sce(ops, y, p, alpha: float, beta: float):
    """Symmetric CE, Wang et al., ICCV 2019: ``alpha CE(y, p) + beta RCE``.

    ``RCE = -sum_k p_k log y_k`` with ``log 0 := A = -4`` (paper's value), done
    by clipping ``y`` to ``[exp(A), 1]``; for one-hot ``y``, ``RCE = 4 (1 - p_y)``.
    """
    return alpha * _ce(ops, y, p) + beta * _ce(ops, p, _rce_labels(ops, y))


def _rce_labels(ops, y):
    """The labels inside RCE's log, clipped so that ``log 0`` becomes ``A``."""
    return ops.clip(y, math.exp(SCE_LOG_ZERO), 1.0)


def _bootstrap_target(ops, y, p, mode: str, beta: float):
    """``beta y + (1 - beta) z``, soft: ``z = p``, hard: ``z = onehot(argmax p)``; ``z`` held constant."""
    if mode == "soft":
        z = p
    else:
        # argmax of [1-p, p] picks class 0 at p = 0.5, i.e. binary z = 1[p > 0.5].
        z = ops.one_hot(ops.argmax(p, axis=-1), p.shape[-1], dtype=p.dtype)
    return beta * y + (1.0 - beta) * ops.stop_gradient(z)


def _bootstrap(ops, y, p, mode: str, beta: float):
    """Bootstrapping, Reed et al. 2014 (ICLR 2015 workshop).

    ``CE(t, p)`` with target ``t = beta y + (1 - beta) z``; soft: ``z = p``,
    hard: ``z = onehot(argmax p)`` (binary: ``1[p > 0.5]``). ``z`` is a
    constant (``stop_gradient``): the model's belief is a target, not a path
    for the gradient.
    """
    return _ce(ops, _bootstrap_target(ops, y, p, mode, beta), p)


def _smoothed(y, smoothing: float):
    return (1.0 - smoothing) * y + smoothing / y.shape[-1]


def _ls(ops, y, p, smoothing: float):
    """CE with label smoothing, Szegedy et al., CVPR 2016: ``t = (1-s) y + s/K``."""
    return _ce(ops, _smoothed(y, smoothing), p)


_LOSSES: dict[str, Callable] = {
    "bce": _bce,
    "l1": _l1,
    "gce": _gce,
    "sce": _sce,
    "bootstrap": _bootstrap,
    "ls": _ls,
}


# --------------------------------------------------------------------------
# Gradients on (y, p), NumPy: dL/dp_k of each loss above, with the same targets held constant.
# Derived by hand; tests/unit/tf/test_losses_keras.py checks each against TensorFlow's autodiff of the Keras path.

_NP = BACKENDS["numpy"]


def _ce_grad(target, p):
    """d CE(target, p) / dp with the target held constant."""
    return -target / p


def _bce_grad(y, p):
    return _ce_grad(y, p)


def _l1_grad(y, p):
    return -np.sign(y - p)


def _gce_grad(y, p, q: float):
    return -np.power(_p_label(_NP, y, p), q - 1.0)[:, None] * y


def _sce_grad(y, p, alpha: float, beta: float):
    # RCE = CE(p, clipped y) = -sum_k p_k log(clip(y_k)) is linear in p.
    return alpha * _ce_grad(y, p) - beta * np.log(_rce_labels(_NP, y))


def _bootstrap_grad(y, p, mode: str, beta: float):
    return _ce_grad(_bootstrap_target(_NP, y, p, mode, beta), p)


def _ls_grad(y, p, smoothing: float):
    return _ce_grad(_smoothed(y, smoothing), p)


_GRADIENTS: dict[str, Callable] = {
    "bce": _bce_grad,
    "l1": _l1_grad,
    "gce": _gce_grad,
    "sce": _sce_grad,
    "bootstrap": _bootstrap_grad,
    "ls": _ls_grad,
}


# --------------------------------------------------------------------------
# Public entry points


def _checked_config(name: str, task: str, params: Mapping[str, Any] | None) -> tuple[dict, float]:
    """The loss params with their defaults filled in and the loss's scale (binary l1 is |y - p|, half the
    2-class sum). Params come checked (stages.lib.params); partial ones, as tests write them, get defaults."""
    if name not in LOSS_NAMES or task not in TASKS:
        raise ValueError(f"loss {name!r} for task {task!r}: must be one of {LOSS_NAMES} for one of {TASKS}")
    cfg = validate_loss_params(name, params)
    return cfg, 0.5 if (name == "l1" and task == "binary") else 1.0


def make_loss(
    name: str, task: str = "binary", params: Mapping[str, Any] | None = None, backend: str = "keras"
) -> Callable:
    """Build the per-sample loss ``fn(y_true, y_pred) -> (batch,)`` float32.

    Args:
        name: one of :data:`LOSS_NAMES` (``train.losses`` in params.yaml).
        task: ``"binary"`` (sigmoid output) or ``"multiclass"`` (softmax output,
            one-hot ``y_true``).
        params: checked params (stages.lib.params.validate_loss_params); None: the defaults.
        backend: ``"keras"`` (``keras.ops``: tensors, inside ``model.fit``) or
            ``"numpy"`` (NumPy arrays in and out; TensorFlow is not loaded).

    For binary ``l1`` the loss is ``|y - p|`` (plain MAE as the seed used it),
    not the 2-class sum ``2 |y - p|``.

    ``fn.__name__`` is the loss name, which Keras uses for logging.
    """
    cfg, scale = _checked_config(name, task, params)
    ops = BACKENDS[backend]
    core = _LOSSES[name]

    def loss_fn(y_true, y_pred):
        y, p = _to_distributions(ops, y_true, y_pred, task)
        out = core(ops, y, p, **cfg)
        return out * scale if scale != 1.0 else out

    loss_fn.__name__ = loss_fn.__qualname__ = name
    loss_fn.__doc__ = f"{name} ({task}, {cfg}).\n\n{core.__doc__}"
    return loss_fn


def logit_gradient(name: str, task: str = "binary", params: Mapping[str, Any] | None = None) -> Callable:
    """Build ``fn(y_true, y_pred) -> dL/dz``: each sample's loss gradient with respect to the logits ``z``
    of the output unit(s), in NumPy.

    ``y_pred`` is the output the loss sees: ``sigmoid(z)`` as ``(N, 1)`` for binary (the gradient is then
    ``(N, 1)``), ``softmax(z)`` as ``(N, K)`` for multiclass (gradient ``(N, K)``). As in the Keras path,
    probabilities clipped to ``[EPS, 1 - EPS]`` pass no gradient.
    """
    cfg, scale = _checked_config(name, task, params)
    grad_p = _GRADIENTS[name]

    def gradient(y_true, y_pred):
        y, p = _to_distributions(_NP, y_true, y_pred, task)
        raw = np.asarray(y_pred, dtype=np.float32)
        raw = np.stack([1.0 - raw.reshape(-1), raw.reshape(-1)], axis=-1) if task == "binary" else raw
        g = grad_p(y, p, **cfg) * scale * ((raw >= EPS) & (raw <= 1.0 - EPS))
        if task == "binary":
            # p = [1 - s, s] with s = sigmoid(z): dL/dz = (g_1 - g_0) s (1 - s).
            s = p[:, 1]
            return ((g[:, 1] - g[:, 0]) * s * (1.0 - s)).reshape(-1, 1).astype(np.float32)
        # Softmax Jacobian: dL/dz_j = p_j (g_j - sum_k g_k p_k).
        return (p * (g - np.sum(g * p, axis=-1, keepdims=True))).astype(np.float32)

    return gradient


def mean_loss(
    name: str,
    task: str,
    params: Mapping[str, Any] | None,
    y_true: np.ndarray,
    y_pred: np.ndarray,
) -> float:
    """Mean of ``make_loss(name, task, params)(y_true, y_pred)`` as a Python float (NumPy backend)."""
    return float(np.mean(make_loss(name, task, params, backend="numpy")(y_true, y_pred)))
