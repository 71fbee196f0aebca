"""Robust loss functions for training under label noise, written once for two array backends.

Every loss returned by :func:`make_loss` maps ``(y_true, logits)`` to the
per-sample loss, shape ``(batch,)``; Keras applies the reduction. With
``backend="keras"`` (``keras.ops``) they work inside ``model.fit``; with
``backend="numpy"`` they run on NumPy arrays without loading TensorFlow, which is
what the head-mode train stage and the evaluate stage use (a TensorFlow import
costs 3-4 s per stage process, more than training a head). :func:`logit_gradient`
gives each loss's gradient with respect to the logits, derived by hand, for the
NumPy head trainer (stages.lib.train.head).

Conventions
-----------
* The model outputs **logits**. ``task="binary"``: one logit ``z`` per sample,
  shape ``(N, 1)`` or ``(N,)``; ``y_true`` holds hard 0/1 labels of the same
  shape. Where a loss needs class distributions, binary is two classes with
  logits ``(0, z)``, i.e. ``p = [1 - sigmoid(z), sigmoid(z)]``.
* ``task="multiclass"``: logits ``(N, K)``, ``p = softmax(z)``; ``y_true`` is
  one-hot ``(N, K)``.
* Both inputs are cast to float32 (mixed precision may hand us float16 logits), or to float64 where a
  NumPy caller asks (``dtype``): the head's full-batch optimiser needs objective values exact enough for
  its line search.
  Logs of probabilities are log-softmax of the logits: finite for any finite
  logit, so a confidently wrong sample keeps its full gradient (clipping
  probabilities before a log would zero it beyond |z| of about 16). Nothing is
  clipped except where a loss defines it (SCE's ``log 0 := -4``).

Notation below: ``y`` one-hot target, ``p`` predicted distribution, ``p_y`` the
probability of the labelled class, ``CE(t, p) = -sum_k t_k log p_k``.

Each loss is one module of this package (bce, l1, gce, sce, bootstrap, ls, forward; docs/losses.md
describes each): its params with their checks and defaults, the paper it follows, its value in either
backend and its gradient, registered in stages.lib.losses.registry. stages.lib.core.params checks what a user
wrote against the registered params; the functions here take checked params (partial ones get the loss's
defaults) and raise a plain ``ValueError`` for an unknown loss or task, which only a programming error can
produce.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
from scipy import special

from stages.lib.losses import registry
from stages.lib.losses.ops import BACKENDS, NP
from stages.lib.losses.registry import Context, Loss
from stages.lib.noise.transition import log_transition

# Only where probabilities, not logits, are all there is (saved test scores, see mean_loss).
EPS = 1e-7


def _log_distributions(ops, y_true, logits, task: str, dtype: str = "float32"):
    """Cast to ``dtype`` and return ``(y, log p)`` as ``(N, K)``: class distributions and log-softmax."""
    y_true = ops.cast(y_true, dtype)
    z = ops.cast(logits, dtype)
    if task == "binary":
        if len(z.shape) > 1 and z.shape[-1] not in (1, None):
            raise ValueError(f"binary task expects logits of shape (N, 1) or (N,), got {tuple(z.shape)}")
        y = ops.reshape(y_true, (-1,))
        z = ops.reshape(z, (-1,))
        # Two classes with logits (0, z): softmax gives (1 - sigmoid(z), sigmoid(z)).
        y_true, z = ops.stack([1.0 - y, y], axis=-1), ops.stack([ops.zeros_like(z), z], axis=-1)
    return y_true, ops.log_softmax(z, axis=-1)


# --------------------------------------------------------------------------
# Public entry points


def _config(name: str, task: str, params: Mapping[str, Any] | None, transition: Any) -> tuple[Loss, dict, Context]:
    """The loss, its params with their defaults filled in (params come checked, stages.lib.core.params; partial
    ones, as tests write them, get defaults), and its context."""
    loss = registry.get(name)
    if task not in ("binary", "multiclass"):
        raise ValueError(f"loss {name!r} for task {task!r}: the task must be binary or multiclass")
    if loss.needs_transition and transition is None:
        raise ValueError(f"{name} loss: needs the noise transition matrix (transition=)")
    if not loss.needs_transition and transition is not None:
        raise ValueError(f"{name} loss: takes no transition matrix (only the forward loss does)")
    log_t = log_transition(transition, task) if loss.needs_transition else None
    return loss, loss.complete(params), Context(binary=task == "binary", log_t=log_t)


def make_loss(
    name: str,
    task: str = "binary",
    params: Mapping[str, Any] | None = None,
    backend: str = "keras",
    transition: np.ndarray | None = None,
    dtype: str = "float32",
) -> Callable:
    """Build the per-sample loss ``fn(y_true, logits) -> (batch,)`` float32 (or ``dtype``).

    Args:
        name: a registered loss (``train.losses`` in params.yaml), :data:`LOSS_NAMES`.
        task: ``"binary"`` (one logit, sigmoid) or ``"multiclass"`` (K logits, softmax,
            one-hot ``y_true``).
        params: the loss's params, checked; those left out get the loss's defaults.
        backend: ``"keras"`` (``keras.ops``: tensors, inside ``model.fit``) or
            ``"numpy"`` (NumPy arrays in and out; TensorFlow is not loaded).
        transition: for ``forward`` only (required there): the row-stochastic noise transition matrix
            ``T[i, j] = P(noisy = j | clean = i)``, see :func:`log_transition`.
        dtype: what the arithmetic runs in: ``"float32"``, or ``"float64"`` (NumPy backend only).

    A binary loss is scaled by the loss's ``binary_scale`` (``l1``: ``|y - p|``, plain MAE as the original
    notebook used it, not the 2-class sum ``2 |y - p|``).

    ``fn.__name__`` is the loss name, which Keras uses for logging.

    Raises:
        ValueError: an unknown name or task, or a missing, unexpected or bad ``transition``.
    """
    loss, cfg, context = _config(name, task, params, transition)
    ops = BACKENDS[backend]
    core = partial(loss.value, context=context, **cfg)
    scale = loss.binary_scale if context.binary else 1.0

    def loss_fn(y_true, logits):
        y, log_p = _log_distributions(ops, y_true, logits, task, dtype)
        out = core(ops, y, log_p)
        return out * scale if scale != 1.0 else out

    loss_fn.__name__ = loss_fn.__qualname__ = name
    loss_fn.__doc__ = f"{name} ({task}, {cfg}).\n\n{loss.value.__doc__}"
    return loss_fn


def logit_gradient(
    name: str,
    task: str = "binary",
    params: Mapping[str, Any] | None = None,
    transition: np.ndarray | None = None,
    dtype: str = "float32",
) -> Callable:
    """Build ``fn(y_true, logits) -> dL/dz``: each sample's loss gradient with respect to its logits, in
    NumPy; ``(N, 1)`` for binary, ``(N, K)`` for multiclass. Arguments as in :func:`make_loss`.
    """
    loss, cfg, context = _config(name, task, params, transition)
    grad = partial(loss.gradient, context=context, **cfg)
    scale = loss.binary_scale if context.binary else 1.0

    def gradient(y_true, logits):
        y, log_p = _log_distributions(NP, y_true, logits, task, dtype)
        g = grad(y, log_p) * scale
        # Binary: u = (0, z), so dL/dz = dL/du_1.
        return (g[:, 1:] if task == "binary" else g).astype(dtype)

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


LOSS_NAMES = registry.names()  # every registered loss, in rank order
