"""Cross-entropy with label smoothing (Szegedy et al., CVPR 2016)."""

from stages.lib.core.schema import Spec, real
from stages.lib.losses.ops import ce, ce_grad
from stages.lib.losses.registry import Loss, register


def _smoothed(y, smoothing: float):
    return (1.0 - smoothing) * y + smoothing / y.shape[-1]


def value(ops, y, log_p, context, smoothing: float):
    """CE with label smoothing, Szegedy et al., CVPR 2016: ``t = (1-s) y + s/K``."""
    return ce(ops, _smoothed(y, smoothing), log_p)


def gradient(y, log_p, context, smoothing: float):
    return ce_grad(_smoothed(y, smoothing), log_p)


LOSS = register(
    Loss(
        "ls",
        5,
        "Szegedy et al., CVPR 2016",
        value,
        gradient,
        params={"smoothing": Spec(real(lambda s: 0.0 <= s < 1.0, "in [0, 1)"), default=0.1)},
        tunable=("smoothing",),
    )
)
