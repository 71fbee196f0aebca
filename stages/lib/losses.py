"""Robust loss functions for training under label noise, written once for two array backends.

Every loss returned by :func:`make_loss` maps ``(y_true, logits)`` to the
per-sample loss, shape ``(batch,)``; Keras applies the reduction. With
``backend="keras"`` (``keras.ops``) they work inside ``model.fit``; with
``backend="numpy"`` they run on NumPy arrays without loading TensorFlow, which is
what the head-mode train stage and the evaluate stage use (a TensorFlow import
costs 3-4 s per stage process, more than training a head). :func:`logit_gradient`
gives each loss's gradient with respect to the logits, derived by hand, for the
NumPy head trainer (stages.lib.head).

Conventions
-----------
* The model outputs **logits**. ``task="binary"``: one logit ``z`` per sample,
  shape ``(N, 1)`` or ``(N,)``; ``y_true`` holds hard 0/1 labels of the same
  shape. Where a loss needs class distributions, binary is two classes with
  logits ``(0, z)``, i.e. ``p = [1 - sigmoid(z), sigmoid(z)]``.
* ``task="multiclass"``: logits ``(N, K)``, ``p = softmax(z)``; ``y_true`` is
  one-hot ``(N, K)``.
* Both inputs are cast to float32 (mixed precision may hand us float16 logits).
  Logs of probabilities are log-softmax of the logits: finite for any finite
  logit, so a confidently wrong sample keeps its full gradient (clipping
  probabilities before a log would zero it beyond |z| of about 16). Nothing is
  clipped except where a loss defines it (SCE's ``log 0 := -4``).

Notation below: ``y`` one-hot target, ``p`` predicted distribution, ``p_y`` the
probability of the labelled class, ``CE(t, p) = -sum_k t_k log p_k``.

Loss names, their params and defaults are defined and checked in stages.lib.params (docs/losses.md
describes each loss); the functions here take checked params and raise a plain ``ValueError`` for an
unknown loss or task, which only a programming error can produce.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
from scipy import special

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
    exp = staticmethod(np.exp)
    abs = staticmethod(np.abs)
    argmax = staticmethod(np.argmax)
    zeros_like = staticmethod(np.zeros_like)
    expand_dims = staticmethod(np.expand_dims)
    greater_equal = staticmethod(np.greater_equal)
    stop_gradient = staticmethod(lambda x: x)
    convert_to_numpy = staticmethod(np.asarray)

    @staticmethod
    def log_softmax(x, axis=-1):
        # scipy.special.log_softmax's arithmetic, without its array-API dispatch: that took ~60 % of a
        # head's fit time (a call per batch).
        top = np.max(x, axis=axis, keepdims=True)
        shifted = x - np.where(np.isfinite(top), top, 0.0)
        return (shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))).astype(x.dtype, copy=False)

    @staticmethod
    def logsumexp(x, axis=None, keepdims=False):
        # As TensorFlow's reduce_logsumexp: exact when one term dominates (forward with T = I is then CE).
        top = np.max(x, axis=axis, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0).astype(x.dtype)
        out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
        return out if keepdims else np.squeeze(out, axis=axis)

    @staticmethod
    def one_hot(indices, num_classes: int, dtype=None):
        return np.eye(num_classes, dtype=dtype)[indices]


BACKENDS: dict[str, Any] = {"keras": _LazyKerasOps(), "numpy": _NumpyOps()}

# Only where probabilities, not logits, are all there is (saved test scores, see mean_loss).
EPS = 1e-7
# SCE: value substituted for log(0) in the reverse CE (Wang et al. 2019, Sec. 3.3).
SCE_LOG_ZERO = -4.0


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


# --------------------------------------------------------------------------
# Losses on (y, log p): one-hot targets and log-probabilities (log-softmax of the logits), both (N, K).


def _log_distributions(ops, y_true, logits, task: str):
    """Cast to float32 and return ``(y, log p)`` as ``(N, K)``: class distributions and log-softmax."""
    y_true = ops.cast(y_true, "float32")
    z = ops.cast(logits, "float32")
    if task == "binary":
        if len(z.shape) > 1 and z.shape[-1] not in (1, None):
            raise ValueError(f"binary task expects logits of shape (N, 1) or (N,), got {tuple(z.shape)}")
        y = ops.reshape(y_true, (-1,))
        z = ops.reshape(z, (-1,))
        # Two classes with logits (0, z): softmax gives (1 - sigmoid(z), sigmoid(z)).
        y_true, z = ops.stack([1.0 - y, y], axis=-1), ops.stack([ops.zeros_like(z), z], axis=-1)
    return y_true, ops.log_softmax(z, axis=-1)


def _ce(ops, target, log_p):
    return -ops.sum(target * log_p, axis=-1)


def _bce(ops, y, log_p):
    """Cross-entropy ``CE(y, p)``: binary CE for binary, categorical CE otherwise."""
    return _ce(ops, y, log_p)


def _l1(ops, y, log_p):
    """MAE on probabilities, ``sum_k |y_k - p_k| = 2 (1 - p_y)`` for one-hot ``y``.

    Ghosh, Kumar & Sastry, AAAI 2017: a *symmetric* loss (``sum_k L(k, p)`` is
    constant), hence tolerant to uniform label noise. (Binary is handled in
    :func:`make_loss` as ``|y - p|``, half the 2-class sum.)
    """
    return ops.sum(ops.abs(y - ops.exp(log_p)), axis=-1)


def _gce(ops, y, log_p, q: float):
    """Generalized CE, Zhang & Sabuncu, NeurIPS 2018: ``(1 - p_y**q) / q``, ``p_y**q = exp(q log p_y)``.

    ``q -> 0`` recovers CE, ``q = 1`` gives ``1 - p_y`` (MAE-like).
    """
    return (1.0 - ops.exp(q * ops.sum(y * log_p, axis=-1))) / q


def _sce(ops, y, log_p, alpha: float, beta: float):
    """Symmetric CE, Wang et al., ICCV 2019: ``alpha CE(y, p) + beta RCE``.

    ``RCE = -sum_k p_k log y_k`` with ``log 0 := A = -4`` (paper's value), done
    by clipping ``y`` to ``[exp(A), 1]``; for one-hot ``y``, ``RCE = 4 (1 - p_y)``.
    """
    return alpha * _ce(ops, y, log_p) - beta * ops.sum(ops.exp(log_p) * _rce_log_labels(ops, y), axis=-1)


def _rce_log_labels(ops, y):
    """``log y`` inside RCE, with the labels clipped so that ``log 0`` becomes ``A``."""
    return ops.log(ops.clip(y, math.exp(SCE_LOG_ZERO), 1.0))


def _predicted_one_hot(ops, log_p, binary: bool):
    """The model's class as a one-hot constant; binary: positive iff ``z >= 0`` (``p >= 0.5``), the rule of
    stages.lib.metrics.predict_labels; multiclass: argmax, ties to the first class."""
    if binary:
        positive = ops.cast(ops.greater_equal(log_p[:, 1], log_p[:, 0]), "float32")
        hard = ops.stack([1.0 - positive, positive], axis=-1)
    else:
        hard = ops.one_hot(ops.argmax(log_p, axis=-1), log_p.shape[-1], dtype="float32")
    return ops.stop_gradient(hard)


def _bootstrap(ops, y, log_p, mode: str, beta: float, binary: bool):
    """Bootstrapping, Reed et al. 2014 (ICLR 2015 workshop).

    soft: ``-sum_k [beta y_k + (1 - beta) p_k] log p_k`` with the gradient flowing through ``p``
    in both places, i.e. ``beta CE(y, p) + (1 - beta) H(p)``: cross-entropy plus a
    minimum-entropy term (Reed et al., Sec. 3.2). Holding ``p`` constant in the target would
    make the logit gradient ``beta (p - y)``, cross-entropy rescaled, which Adam cancels.
    hard: ``CE(beta y + (1 - beta) onehot(prediction), p)``; the prediction (binary: ``z >= 0``,
    multiclass: argmax) is a constant.
    """
    if mode == "soft":
        return _ce(ops, beta * y + (1.0 - beta) * ops.exp(log_p), log_p)
    return _ce(ops, beta * y + (1.0 - beta) * _predicted_one_hot(ops, log_p, binary), log_p)


def _smoothed(y, smoothing: float):
    return (1.0 - smoothing) * y + smoothing / y.shape[-1]


def _ls(ops, y, log_p, smoothing: float):
    """CE with label smoothing, Szegedy et al., CVPR 2016: ``t = (1-s) y + s/K``."""
    return _ce(ops, _smoothed(y, smoothing), log_p)


def _noisy_log_p(ops, log_p, log_t):
    """``log (T^T p)_j = logsumexp_i (log p_i + log T_ij)``: the model's distribution of the noisy label."""
    if log_p.shape[-1] is not None and log_p.shape[-1] != log_t.shape[0]:
        raise ValueError(f"forward loss: transition matrix {log_t.shape} for {log_p.shape[-1]} classes")
    return ops.logsumexp(ops.expand_dims(log_p, -1) + log_t, axis=-2)


def _forward(ops, y, log_p, log_t, T: str):
    """Forward loss correction, Patrini et al., CVPR 2017: ``-log (T^T p)_y``, i.e. ``CE(y, T^T p)``.

    ``T[i, j] = P(noisy = j | clean = i)``; ``T = I`` gives cross-entropy. ``T`` (the param) says where the
    matrix came from; the matrix itself is an argument of :func:`make_loss`.
    """
    return _ce(ops, y, _noisy_log_p(ops, log_p, log_t))


_LOSSES: dict[str, Callable] = {
    "bce": _bce,
    "l1": _l1,
    "gce": _gce,
    "sce": _sce,
    "bootstrap": _bootstrap,
    "ls": _ls,
    "forward": _forward,
}


# --------------------------------------------------------------------------
# Gradients, NumPy: dL/du of each loss above with respect to the K-class logits u (binary: u = (0, z)).
# Derived by hand; tests/test_losses.py checks each against TensorFlow's autodiff of the Keras path.

_NP = BACKENDS["numpy"]


def _softmax_jacobian(p, g):
    """``dL/du_j = p_j (g_j - sum_k g_k p_k)`` from ``g = dL/dp`` (bounded ``g`` only)."""
    return p * (g - np.sum(g * p, axis=-1, keepdims=True))


def _ce_grad(target, log_p):
    """d CE(target, softmax(u)) / du = p sum(target) - target, with the target held constant."""
    return np.exp(log_p) * np.sum(target, axis=-1, keepdims=True) - target


def _bce_grad(y, log_p):
    return _ce_grad(y, log_p)


def _l1_grad(y, log_p):
    p = np.exp(log_p)
    return _softmax_jacobian(p, -np.sign(y - p))


def _gce_grad(y, log_p, q: float):
    # d/du (1 - exp(q s)) / q with s = sum_k y_k log p_k: -exp(q s) ds/du, and ds/du = -_ce_grad.
    return np.exp(q * np.sum(y * log_p, axis=-1, keepdims=True)) * _ce_grad(y, log_p)


def _sce_grad(y, log_p, alpha: float, beta: float):
    # RCE = -sum_k p_k log(clip(y_k)) is linear in p.
    return alpha * _ce_grad(y, log_p) + beta * _softmax_jacobian(np.exp(log_p), -_rce_log_labels(_NP, y))


def _bootstrap_grad(y, log_p, mode: str, beta: float, binary: bool):
    if mode == "hard":
        return _ce_grad(beta * y + (1.0 - beta) * _predicted_one_hot(_NP, log_p, binary), log_p)
    # beta CE(y, p) + (1 - beta) H(p); dH/du_j = -p_j (log p_j + H).
    p = np.exp(log_p)
    entropy = -np.sum(p * log_p, axis=-1, keepdims=True)
    return beta * _ce_grad(y, log_p) - (1.0 - beta) * p * (log_p + entropy)


def _ls_grad(y, log_p, smoothing: float):
    return _ce_grad(_smoothed(y, smoothing), log_p)


def _forward_grad(y, log_p, log_t, T: str):
    # dL/du_k = p_k sum(y) - sum_j y_j w_kj, w_kj = p_k T_kj / (T^T p)_j: the posterior of clean class k
    # given noisy label j, computed in logs.
    log_noisy = _noisy_log_p(_NP, log_p, log_t)
    with np.errstate(invalid="ignore"):  # -inf - finite is -inf; exp gives 0
        posterior = np.exp(log_p[:, :, None] + log_t[None] - log_noisy[:, None, :])
    return np.exp(log_p) * np.sum(y, axis=-1, keepdims=True) - np.einsum("nj,nkj->nk", y, posterior)


_GRADIENTS: dict[str, Callable] = {
    "bce": _bce_grad,
    "l1": _l1_grad,
    "gce": _gce_grad,
    "sce": _sce_grad,
    "bootstrap": _bootstrap_grad,
    "ls": _ls_grad,
    "forward": _forward_grad,
}


# --------------------------------------------------------------------------
# Public entry points


def _checked_config(
    name: str, task: str, params: Mapping[str, Any] | None, transition: Any
) -> tuple[dict, float, dict]:
    """The loss params with their defaults filled in, the loss's scale (binary l1 is |y - p|, half the 2-class
    sum) and the extra arguments of its core function. Params come checked (stages.lib.params); partial ones,
    as tests write them, get defaults."""
    if name not in LOSS_NAMES or task not in TASKS:
        raise ValueError(f"loss {name!r} for task {task!r}: must be one of {LOSS_NAMES} for one of {TASKS}")
    cfg = validate_loss_params(name, params)
    extra: dict[str, Any] = {}
    if name == "forward":
        if transition is None:
            raise ValueError("forward loss: needs the noise transition matrix (transition=)")
        extra["log_t"] = log_transition(transition, task)
    elif transition is not None:
        raise ValueError(f"{name} loss: takes no transition matrix (only the forward loss does)")
    if name == "bootstrap":
        extra["binary"] = task == "binary"
    return cfg, 0.5 if (name == "l1" and task == "binary") else 1.0, extra


def make_loss(
    name: str,
    task: str = "binary",
    params: Mapping[str, Any] | None = None,
    backend: str = "keras",
    transition: np.ndarray | None = None,
) -> Callable:
    """Build the per-sample loss ``fn(y_true, logits) -> (batch,)`` float32.

    Args:
        name: one of :data:`LOSS_NAMES` (``train.losses`` in params.yaml).
        task: ``"binary"`` (one logit, sigmoid) or ``"multiclass"`` (K logits, softmax,
            one-hot ``y_true``).
        params: overrides of :data:`DEFAULT_LOSS_PARAMS` ``[name]``.
        backend: ``"keras"`` (``keras.ops``: tensors, inside ``model.fit``) or
            ``"numpy"`` (NumPy arrays in and out; TensorFlow is not loaded).
        transition: for ``forward`` only (required there): the row-stochastic noise transition matrix
            ``T[i, j] = P(noisy = j | clean = i)``, see :func:`log_transition`.

    For binary ``l1`` the loss is ``|y - p|`` (plain MAE as the seed used it),
    not the 2-class sum ``2 |y - p|``.

    ``fn.__name__`` is the loss name, which Keras uses for logging.

    Raises:
        ValueError: an unknown name or task, or a missing, unexpected or bad ``transition``.
    """
    cfg, scale, extra = _checked_config(name, task, params, transition)
    ops = BACKENDS[backend]
    core = partial(_LOSSES[name], **extra, **cfg)

    def loss_fn(y_true, logits):
        y, log_p = _log_distributions(ops, y_true, logits, task)
        out = core(ops, y, log_p)
        return out * scale if scale != 1.0 else out

    loss_fn.__name__ = loss_fn.__qualname__ = name
    loss_fn.__doc__ = f"{name} ({task}, {cfg}).\n\n{_LOSSES[name].__doc__}"
    return loss_fn


def logit_gradient(
    name: str,
    task: str = "binary",
    params: Mapping[str, Any] | None = None,
    transition: np.ndarray | None = None,
) -> Callable:
    """Build ``fn(y_true, logits) -> dL/dz``: each sample's loss gradient with respect to its logits, in
    NumPy; ``(N, 1)`` for binary, ``(N, K)`` for multiclass. Arguments as in :func:`make_loss`.
    """
    cfg, scale, extra = _checked_config(name, task, params, transition)
    grad = partial(_GRADIENTS[name], **extra, **cfg)

    def gradient(y_true, logits):
        y, log_p = _log_distributions(_NP, y_true, logits, task)
        g = grad(y, log_p) * scale
        # Binary: u = (0, z), so dL/dz = dL/du_1.
        return (g[:, 1:] if task == "binary" else g).astype(np.float32)

    return gradient


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """The model's probabilities from its logits, float32: binary ``sigmoid(z)`` (same shape as ``z``),
    multiclass ``softmax(z)`` over the last axis. What models save as test scores."""
    z = np.asarray(logits, dtype=np.float32)
    if task == "binary":
        return np.exp(-np.logaddexp(np.float32(0.0), -z))  # stable for large |z|
    return special.softmax(z, axis=-1).astype(np.float32)


def logits_from_probabilities(p: np.ndarray, task: str) -> np.ndarray:
    """Logits with the given probabilities (binary ``log p - log(1 - p)``; multiclass ``log p``, whose
    softmax is ``p``), float64. Saved scores can be exactly 0 or 1 in float32: they are clipped to
    ``[EPS, 1 - EPS]`` first, so the losses stay finite (as Keras' and scikit-learn's log losses do)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p) if task == "binary" else np.log(p)


def mean_loss(
    name: str,
    task: str,
    params: Mapping[str, Any] | None,
    y_true: np.ndarray,
    scores: np.ndarray,
    transition: np.ndarray | None = None,
) -> float:
    """Mean loss of saved probability scores (the evaluate stage's; binary ``(N, 1)`` or ``(N,)``), as a
    Python float: ``make_loss`` (NumPy backend) on :func:`logits_from_probabilities`."""
    fn = make_loss(name, task, params, backend="numpy", transition=transition)
    return float(np.mean(fn(y_true, logits_from_probabilities(scores, task))))
