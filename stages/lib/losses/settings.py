"""The losses' own params, as each loss declares them in its module (stages.lib.losses.registry):
train.losses' names, train.loss_params.<loss> and the grids of train.tune, checked and resolved.

Only the stages that train, tune or score a loss read these (fingerprint, detect, train, evaluate), so only
they import the losses' modules: editing a loss reruns them, never download, subsample, corrupt or embed.
The fingerprint stage runs first on every `dvc repro`, so a typo here still fails in its first second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stages.lib.core import params as core_params
from stages.lib.core.errors import UserError
from stages.lib.core.params.train import GridPoint, TrainParams, read_train
from stages.lib.core.schema import number_list, read_value
from stages.lib.losses import registry

LOSS_NAMES = registry.names()  # docs/losses.md describes each


def _unknown_loss(where: str, name: Any) -> UserError:
    return UserError(f"{where}: unknown loss {name!r}; allowed: {', '.join(registry.names())}")


def train_params(raw: dict[str, Any]) -> TrainParams:
    """The train section, every param checked, each loss's params resolved (defaults filled in) and its grid."""
    settings = read_train(raw)
    for name in settings.losses:
        if name not in registry.names():
            raise _unknown_loss("train.losses", name)
    written = settings.loss_params
    checked = {}
    for name in written:  # entries of unused losses too: their typos surface now
        if name not in registry.names():
            raise _unknown_loss("train.loss_params", name)
        checked[name] = validate_loss_params(name, written[name] or {})
    # Each loss in use: its checked entry, or its defaults where params.yaml lists none.
    loss_params = {name: checked.get(name) or validate_loss_params(name, {}) for name in settings.losses}
    section = raw.get("train") or {}
    grids = tune_grids(section.get("tune"), settings.losses, written)
    fine_tune_grids = tune_grids(section.get("fine_tune_grid"), settings.losses, written, FINE_TUNE_GRID)
    return replace(settings, loss_params=loss_params, grids=grids, fine_tune_grids=fine_tune_grids)


def check_all(raw: dict[str, Any]) -> None:
    """stages.lib.core.params.check_all and the losses' own params: every check that needs neither data nor files."""
    core_params.check_all(raw)
    train_params(raw)


def load_checked_params(path: Path = core_params.PARAMS_FILE) -> dict[str, Any]:
    """params.yaml after `check_all`, losses included: what a stage that trains, tunes or scores starts with."""
    raw = core_params.load_params(path)
    check_all(raw)
    return raw


def read_params_with_losses(path: Path = core_params.PARAMS_FILE) -> core_params.Params:
    """params.yaml, every param checked, the losses' own too, their grids resolved: what a stage that trains,
    tunes or scores a loss starts with."""
    raw = load_checked_params(path)
    return core_params.typed_params(raw, train_params(raw))


def every_param() -> tuple[str, ...]:
    """The dotted name of every param, each loss's own too (train.loss_params.<loss>.<key>)."""
    own = [f"train.loss_params.{loss.name}.{key}" for loss in registry.losses() for key in loss.params]
    return core_params.every_param() + tuple(own)


def validate_loss_params(name: str, params: Mapping[str, Any] | None) -> dict:
    """The loss's params (train.loss_params.<name>) checked against what the loss declares, its defaults
    filled in: what stages.lib.losses takes. Checked params come back unchanged.

    Raises:
        UserError: unknown loss name, unknown parameter key, or a value out of range; the message names
            ``train.losses`` or ``train.loss_params.<loss>.<key>`` and the allowed values.
    """
    if name not in registry.names():
        raise _unknown_loss("train.losses", name)
    loss = registry.get(name)
    params = {} if params is None else params
    section = f"train.loss_params.{name}"
    if not isinstance(params, Mapping):
        raise UserError(f"{section} = {params!r}: must be a mapping of parameters")
    unknown = sorted(set(params) - set(loss.params), key=str)  # keys of any type: YAML allows `1: x`
    if unknown:
        raise UserError(f"{section}.{unknown[0]}: unknown parameter; allowed: {', '.join(loss.params) or 'none'}")
    checked = loss.complete({key: read_value(params, section, key, spec) for key, spec in loss.params.items()})
    if loss.check_together is not None:
        loss.check_together(checked)
    return checked


@dataclass(frozen=True)
class GridSpec:
    """What a section of per-loss grids varies besides the loss's own param: `step`, a list every entry sets."""

    section: str  # its dotted name
    step: str  # l2 (a head's L2 strength) or learning_rate (fine-tuning's)
    check: Callable[[str, Any], tuple[float, ...]]
    example: str


# λ > 0: an unpenalised head on fewer images than features has no optimum.
HEAD_GRID = GridSpec("train.tune", "l2", number_list(0.0, 1e6, low_open=True), "{l2: [0.001, 0.01]}")
FINE_TUNE_GRID = GridSpec(
    "train.fine_tune_grid", "learning_rate", number_list(0.0, 10.0, low_open=True), "{learning_rate: [0.0001]}"
)


def tune_grids(
    tune: Any, losses: tuple[str, ...], loss_params: dict, spec: GridSpec = HEAD_GRID
) -> dict[str, tuple[GridPoint, ...]]:
    """A section of grids (train.tune, or train.fine_tune_grid): per loss, the product of its `spec.step` list
    and its own param's list; every loss in train.losses must have a grid of the same size (the same tuning
    budget for every method). Without the section: no grids (one point per loss: TrainParams.grid and
    fine_tuning_grid say which)."""
    if tune is None:
        return {}
    if not isinstance(tune, dict):
        raise UserError(f"{spec.section} = {tune!r}: must be a mapping of loss name to its grid")
    grids = {}
    for name, entry in tune.items():
        if name not in registry.names():
            raise _unknown_loss(spec.section, name)
        entry = entry or {}
        tunable = registry.get(name).tunable
        unknown = sorted(set(entry) - {spec.step, *tunable}, key=str) if isinstance(entry, dict) else None
        if unknown is None or unknown or spec.step not in entry or len(entry) > 2:
            raise UserError(
                f"{spec.section}.{name} = {entry!r}: must set {spec.step} (a list) and at most one of {name}'s own "
                f"params ({', '.join(tunable) or 'none'}), e.g. {spec.example}"
            )
        steps = spec.check(f"{spec.section}.{name}.{spec.step}", entry[spec.step])
        own = [key for key in entry if key != spec.step]
        written = loss_params.get(name) or {}
        points = []
        values: tuple[float, ...] = (math.nan,)
        if own:
            key = own[0]
            if key in written:
                raise UserError(
                    f"train.loss_params.{name}.{key} and {spec.section}.{name}.{key} are both set: the grid's list "
                    f"is what trains; remove train.loss_params.{name}.{key}"
                )
            values = number_list(0.0, 1.0)(f"{spec.section}.{name}.{key}", entry[key])
        for value in values:
            checked = validate_loss_params(name, dict(written) if not own else {**written, own[0]: value})
            for step in steps:
                tuned = {spec.step: step, **({own[0]: checked[own[0]]} if own else {})}
                if spec.step == "l2":
                    points.append(GridPoint(step, checked, tuned))
                else:
                    points.append(GridPoint(None, checked, tuned, learning_rate=step))
        grids[name] = tuple(points)
    missing = [name for name in losses if name not in grids]
    if missing:
        raise UserError(
            f"{spec.section} has no entry for {missing[0]}: every loss in train.losses needs one (e.g. {spec.example})"
        )
    sizes = {name: len(grids[name]) for name in losses}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise UserError(
            f"{spec.section}: the grids differ in size ({listed}): every loss needs the same number of points, so "
            "that each method gets the same tuning budget"
        )
    return grids
