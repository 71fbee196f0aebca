"""The array operations losses are written in, for two backends, and the pieces several losses share.

``BACKENDS["keras"]`` is ``keras.ops``, imported on first use; ``BACKENDS["numpy"]`` the few functions the
losses use, on NumPy arrays, so that the head-mode train stage and the evaluate stage never load TensorFlow
(3-4 s per stage process, more than training a head). Gradients are NumPy only (stages.lib.train.head).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np


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
NP = BACKENDS["numpy"]


def ce(ops, target, log_p):
    """``CE(target, p) = -sum_k target_k log p_k``."""
    return -ops.sum(target * log_p, axis=-1)


def ce_grad(target, log_p):
    """d CE(target, softmax(u)) / du = p sum(target) - target, with the target held constant (NumPy)."""
    return np.exp(log_p) * np.sum(target, axis=-1, keepdims=True) - target


def softmax_jacobian(p, g):
    """``dL/du_j = p_j (g_j - sum_k g_k p_k)`` from ``g = dL/dp`` (bounded ``g`` only; NumPy)."""
    return p * (g - np.sum(g * p, axis=-1, keepdims=True))
