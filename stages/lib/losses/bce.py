"""Cross-entropy: binary CE for the binary task, categorical CE otherwise. The baseline every other loss is
compared with."""

from stages.lib.losses.ops import ce, ce_grad
from stages.lib.losses.registry import Loss, register


def value(ops, y, log_p, context):
    """Cross-entropy ``CE(y, p)``: binary CE for binary, categorical CE otherwise."""
    return ce(ops, y, log_p)


def gradient(y, log_p, context):
    return ce_grad(y, log_p)


LOSS = register(Loss("bce", 0, "cross-entropy", value, gradient, params={}))
