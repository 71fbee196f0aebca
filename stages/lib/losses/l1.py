"""MAE on probabilities (Ghosh, Kumar & Sastry, AAAI 2017): a symmetric loss, tolerant to uniform noise."""

import numpy as np

from stages.lib.losses.ops import softmax_jacobian
from stages.lib.losses.registry import Loss, register


def value(ops, y, log_p, context):
    """MAE on probabilities, ``sum_k |y_k - p_k| = 2 (1 - p_y)`` for one-hot ``y``.

    Ghosh, Kumar & Sastry, AAAI 2017: a *symmetric* loss (``sum_k L(k, p)`` is
    constant), hence tolerant to uniform label noise. (Binary is ``|y - p|``, half
    the 2-class sum: ``binary_scale``.)
    """
    return ops.sum(ops.abs(y - ops.exp(log_p)), axis=-1)


def gradient(y, log_p, context):
    p = np.exp(log_p)
    return softmax_jacobian(p, -np.sign(y - p))


# Binary l1 is |y - p| (plain MAE as the original notebook used it), not the 2-class sum 2 |y - p|.
LOSS = register(Loss("l1", 1, "Ghosh, Kumar & Sastry, AAAI 2017", value, gradient, params={}, binary_scale=0.5))
