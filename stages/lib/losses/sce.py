"""Symmetric cross-entropy (Wang et al., ICCV 2019)."""

import math

import numpy as np

from stages.lib.core.errors import UserError
from stages.lib.core.schema import Spec, real
from stages.lib.losses.ops import ce, ce_grad, softmax_jacobian
from stages.lib.losses.registry import Loss, register

# Value substituted for log(0) in the reverse CE (Wang et al. 2019, Sec. 3.3).
SCE_LOG_ZERO = -4.0


def _rce_log_labels(ops, y):
    """``log y`` inside RCE, with the labels clipped so that ``log 0`` becomes ``A``."""
    return ops.log(ops.clip(y, math.exp(SCE_LOG_ZERO), 1.0))


def value(ops, y, log_p, context, alpha: float, beta: float):
    """Symmetric CE, Wang et al., ICCV 2019: ``alpha CE(y, p) + beta RCE``.

    ``RCE = -sum_k p_k log y_k`` with ``log 0 := A = -4`` (paper's value), done
    by clipping ``y`` to ``[exp(A), 1]``; for one-hot ``y``, ``RCE = 4 (1 - p_y)``.
    """
    return alpha * ce(ops, y, log_p) - beta * ops.sum(ops.exp(log_p) * _rce_log_labels(ops, y), axis=-1)


def gradient(y, log_p, context, alpha: float, beta: float):
    # RCE = -sum_k p_k log(clip(y_k)) is linear in p.
    return alpha * ce_grad(y, log_p) + beta * softmax_jacobian(np.exp(log_p), -_rce_log_labels(np, y))


def _not_both_zero(params: dict) -> None:
    if params["alpha"] == 0.0 and params["beta"] == 0.0:
        raise UserError("train.loss_params.sce.alpha/beta = 0/0: at least one must be > 0")


_WEIGHT = real(lambda weight: weight >= 0.0, ">= 0")
LOSS = register(
    Loss(
        "sce",
        3,
        "Wang et al., ICCV 2019",
        value,
        gradient,
        params={"alpha": Spec(_WEIGHT, default=0.1), "beta": Spec(_WEIGHT, default=1.0)},
        tunable=("alpha", "beta"),
        check_together=_not_both_zero,
    )
)
