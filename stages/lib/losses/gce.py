"""Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018)."""

import numpy as np

from stages.lib.core.schema import Spec, real
from stages.lib.losses.ops import ce_grad
from stages.lib.losses.registry import Loss, register


def value(ops, y, log_p, context, q: float):
    """Generalized CE, Zhang & Sabuncu, NeurIPS 2018: ``(1 - p_y**q) / q``, ``p_y**q = exp(q log p_y)``.

    ``q -> 0`` recovers CE, ``q = 1`` gives ``1 - p_y`` (MAE-like).
    """
    return (1.0 - ops.exp(q * ops.sum(y * log_p, axis=-1))) / q


def gradient(y, log_p, context, q: float):
    # d/du (1 - exp(q s)) / q with s = sum_k y_k log p_k: -exp(q s) ds/du, and ds/du = -ce_grad.
    return np.exp(q * np.sum(y * log_p, axis=-1, keepdims=True)) * ce_grad(y, log_p)


LOSS = register(
    Loss(
        "gce",
        2,
        "Zhang & Sabuncu, NeurIPS 2018",
        value,
        gradient,
        params={"q": Spec(real(lambda q: 0.0 < q <= 1.0, "in (0, 1]"), default=0.7)},
        tunable=("q",),
    )
)
