"""The losses there are: each module of this package (but this one and ops) is one loss, which builds a
:class:`Loss` (its params, the paper it follows, its value and gradient) and registers it. Adding a loss is
adding a module; stages.lib.core.params checks its params from the :class:`Loss` and docs/losses.md describes it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from stages.lib.core.schema import Spec

_NOT_LOSSES = {"registry", "ops", "settings"}


class Context(NamedTuple):
    """What a loss may need besides its params: is the task binary, and forward's log T (or None)."""

    binary: bool
    log_t: Any = None


@dataclass(frozen=True)
class Loss:
    """One loss. ``value(ops, y, log_p, context, **params)`` is the per-sample loss on one-hot targets and
    log-probabilities, both ``(N, K)``, in ``ops`` (stages.lib.losses.ops: NumPy or keras.ops);
    ``gradient(y, log_p, context, **params)`` its gradient with respect to the K logits, in NumPy."""

    name: str
    rank: int  # its place in lists and messages (the order docs/losses.md introduces the losses in)
    paper: str
    value: Callable[..., Any]
    gradient: Callable[..., Any]
    params: Mapping[str, Spec]  # its own params (train.loss_params.<name>), each with its check and default
    tunable: tuple[str, ...] = ()  # the params train.tune.<name> may list
    binary_scale: float = 1.0  # binary losses are scaled by this (l1: |y - p|, half the 2-class sum)
    needs_transition: bool = False  # forward: built with the noise transition matrix
    fill: Callable[[dict], dict] | None = None  # defaults that depend on other params (bootstrap's beta)
    check_together: Callable[[dict], None] | None = None  # checks over several params, raising UserError

    def complete(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """``params`` over the defaults: what the loss computes with (no check: params come checked)."""
        out = {key: spec.default for key, spec in self.params.items()} | dict(params or {})
        return self.fill(out) if self.fill is not None else out


_LOSSES: dict[str, Loss] = {}
_discovered = False


def register(loss: Loss) -> Loss:
    if loss.name in _LOSSES and _LOSSES[loss.name] != loss:
        raise ValueError(f"loss {loss.name!r} is registered twice")
    _LOSSES[loss.name] = loss
    return loss


def unregister(name: str) -> None:
    """Remove a registered loss (tests that register their own)."""
    _LOSSES.pop(name, None)


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        package = importlib.import_module(__package__)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in _NOT_LOSSES and not module.name.startswith("_"):
                importlib.import_module(f"{__package__}.{module.name}")


def losses() -> tuple[Loss, ...]:
    """Every loss, in rank order."""
    _discover()
    return tuple(sorted(_LOSSES.values(), key=lambda loss: (loss.rank, loss.name)))


def names() -> tuple[str, ...]:
    return tuple(loss.name for loss in losses())


def get(name: str) -> Loss:
    """The loss named ``name``; a plain ValueError for an unknown one (params are checked before)."""
    _discover()
    if name not in _LOSSES:
        raise ValueError(f"loss {name!r}: must be one of {names()}")
    return _LOSSES[name]
