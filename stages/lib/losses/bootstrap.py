"""Bootstrapping (Reed et al. 2014, ICLR 2015 workshop), soft or hard."""

import numpy as np

from stages.lib.core.schema import Spec, choice, optional, real
from stages.lib.losses.ops import NP, ce, ce_grad
from stages.lib.losses.registry import Loss, register

MODES = ("soft", "hard")
# Reed et al. 2014 use beta=0.95 for soft and beta=0.8 for hard bootstrapping.
DEFAULT_BETA = {"soft": 0.95, "hard": 0.8}


def _predicted_one_hot(ops, log_p, binary: bool):
    """The model's class as a one-hot constant; binary: positive iff ``z >= 0`` (``p >= 0.5``), the rule of
    stages.lib.evaluate.metrics.predict_labels; multiclass: argmax, ties to the first class."""
    if binary:
        positive = ops.cast(ops.greater_equal(log_p[:, 1], log_p[:, 0]), "float32")
        hard = ops.stack([1.0 - positive, positive], axis=-1)
    else:
        hard = ops.one_hot(ops.argmax(log_p, axis=-1), log_p.shape[-1], dtype="float32")
    return ops.stop_gradient(hard)


def value(ops, y, log_p, context, mode: str, beta: float):
    """Bootstrapping, Reed et al. 2014 (ICLR 2015 workshop).

    soft: ``-sum_k [beta y_k + (1 - beta) p_k] log p_k`` with the gradient flowing through ``p``
    in both places, i.e. ``beta CE(y, p) + (1 - beta) H(p)``: cross-entropy plus a
    minimum-entropy term (Reed et al., Sec. 3.2). Holding ``p`` constant in the target would
    make the logit gradient ``beta (p - y)``, cross-entropy rescaled, which Adam cancels.
    hard: ``CE(beta y + (1 - beta) onehot(prediction), p)``; the prediction (binary: ``z >= 0``,
    multiclass: argmax) is a constant.
    """
    if mode == "soft":
        return ce(ops, beta * y + (1.0 - beta) * ops.exp(log_p), log_p)
    return ce(ops, beta * y + (1.0 - beta) * _predicted_one_hot(ops, log_p, context.binary), log_p)


def gradient(y, log_p, context, mode: str, beta: float):
    if mode == "hard":
        return ce_grad(beta * y + (1.0 - beta) * _predicted_one_hot(NP, log_p, context.binary), log_p)
    # beta CE(y, p) + (1 - beta) H(p); dH/du_j = -p_j (log p_j + H).
    p = np.exp(log_p)
    entropy = -np.sum(p * log_p, axis=-1, keepdims=True)
    return beta * ce_grad(y, log_p) - (1.0 - beta) * p * (log_p + entropy)


def _mode_beta(params: dict) -> dict:
    """A beta of null is the chosen mode's default."""
    return params if params["beta"] is not None else {**params, "beta": DEFAULT_BETA[params["mode"]]}


LOSS = register(
    Loss(
        "bootstrap",
        4,
        "Reed et al., ICLR 2015 workshop",
        value,
        gradient,
        params={
            "mode": Spec(choice(*MODES), default="soft"),
            "beta": Spec(optional(real(lambda beta: 0.0 <= beta <= 1.0, "in [0, 1] (or null)")), default=None),
        },
        tunable=("beta",),
        fill=_mode_beta,
    )
)
