"""Forward loss correction (Patrini et al., CVPR 2017) with the noise transition matrix T."""

from typing import Any

import numpy as np

from stages.lib.core.schema import Spec, choice
from stages.lib.losses.ops import NP, ce
from stages.lib.losses.registry import Loss, register

# Where T comes from: `true`, the realised one of each seed's labels (an oracle that shows the ceiling), or
# `estimated` by the detect stage from cleanlab's confident joint on that seed's labels.
TRANSITION_SOURCES = ("true", "estimated")


def _noisy_log_p(ops, log_p, log_t):
    """``log (T^T p)_j = logsumexp_i (log p_i + log T_ij)``: the model's distribution of the noisy label."""
    if log_p.shape[-1] is not None and log_p.shape[-1] != log_t.shape[0]:
        raise ValueError(f"forward loss: transition matrix {log_t.shape} for {log_p.shape[-1]} classes")
    return ops.logsumexp(ops.expand_dims(log_p, -1) + log_t, axis=-2)


def value(ops, y, log_p, context, T: str):
    """Forward loss correction, Patrini et al., CVPR 2017: ``-log (T^T p)_y``, i.e. ``CE(y, T^T p)``.

    ``T[i, j] = P(noisy = j | clean = i)``; ``T = I`` gives cross-entropy. ``T`` (the param) says where the
    matrix came from; the matrix itself is an argument of make_loss.
    """
    return ce(ops, y, _noisy_log_p(ops, log_p, context.log_t))


def gradient(y, log_p, context, T: str):
    # dL/du_k = p_k sum(y) - sum_j y_j w_kj, w_kj = p_k T_kj / (T^T p)_j: the posterior of clean class k
    # given noisy label j, computed in logs.
    log_t = context.log_t
    log_noisy = _noisy_log_p(NP, log_p, log_t)
    with np.errstate(invalid="ignore"):  # -inf - finite is -inf; exp gives 0
        posterior = np.exp(log_p[:, :, None] + log_t[None] - log_noisy[:, None, :])
    return np.exp(log_p) * np.sum(y, axis=-1, keepdims=True) - np.einsum("nj,nkj->nk", y, posterior)


def _source(name: str, value: Any) -> str:
    # YAML reads an unquoted `T: true` as a boolean.
    return choice(*TRANSITION_SOURCES)(name, "true" if value is True else value)


LOSS = register(
    Loss(
        "forward",
        6,
        "Patrini et al., CVPR 2017",
        value,
        gradient,
        params={"T": Spec(_source, default="true")},
        needs_transition=True,
    )
)
