"""The train section's params (stages.lib.schema fields) and each loss's own, which the loss declares
(stages.lib.losses.registry): train.losses, train.loss_params.<loss>, and the grids of train.tune."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stages.lib.errors import UserError
from stages.lib.losses import registry
from stages.lib.schema import anything, boolean, choice, integer, number, number_list, param, read, read_value

# The label sets a variant can train on (stages.lib.labels.LABEL_SETS): `pruned` is `noisy` without the
# labels the detect stage flags.
LABEL_SET_NAMES = ("clean", "noisy", "pruned")
DEFAULT_LABEL_SETS = ("clean", "noisy")
MIXED_PRECISION = ("auto", "on", "off")
# Which epoch's model is scored: the last one, or the one with the best accuracy on the (noisy) validation labels.
SELECT_EPOCH = ("last", "val")
# What picks each model's epoch, hyper-parameters and decision threshold on its validation labels
# (docs/losses.md, "Tuning"): `noisy`, evaluate.metric on the validation labels as they are (right for
# symmetric noise); `corrected_true` / `corrected_estimated`, on the clean confusion matrix recovered through
# the inverse of the validation labels' transition matrix T, the realised one (an oracle) or detect's estimate.
SELECT_SCORES = ("noisy", "corrected_true", "corrected_estimated")
# Which transition matrix each score corrects with (stages.lib.seed_labels): none, the realised, detect's.
SELECT_SCORE_TRANSITIONS: dict[str, str | None] = {
    "noisy": None,
    "corrected_true": "true",
    "corrected_estimated": "estimated",
}


def _allowed_losses() -> str:
    return ", ".join(registry.names())


def _unknown_loss(where: str, name: Any) -> UserError:
    return UserError(f"{where}: unknown loss {name!r}; allowed: {_allowed_losses()}")


def _losses(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise UserError(f"{name} = {value!r}: must be a non-empty list of {_allowed_losses()}")
    for loss in value:
        if loss not in registry.names():
            raise _unknown_loss(name, loss)
    if len(set(value)) != len(value):
        raise UserError(f"{name} = {value!r}: each loss may appear once")
    return tuple(value)


def _seeds(name: str, value: Any) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in value)
        or len(set(value)) != len(value)
    ):
        raise UserError(f"{name} = {value!r}: must be a non-empty list of distinct integers >= 0")
    return tuple(value)


def _loss_params(name: str, value: Any) -> dict:
    """train.loss_params as written, each entry checked (entries of unused losses too: typos surface now)."""
    value = value or {}
    if not isinstance(value, dict):
        raise UserError(f"{name} = {value!r}: must be a mapping of loss name to params")
    for loss in value:
        if loss not in registry.names():
            raise _unknown_loss(name, loss)
        validate_loss_params(loss, value[loss] or {})
    return value


def _labels(name: str, value: Any) -> tuple[str, ...]:
    allowed = ", ".join(LABEL_SET_NAMES)
    message = f"{name} = {value!r}: must be a non-empty list of distinct label sets: {allowed}"
    if not isinstance(value, list) or not value:
        raise UserError(message)
    for label_set in value:  # before the set() below: a list or mapping in the list is unhashable
        if label_set not in LABEL_SET_NAMES:
            raise UserError(f"{name}: unknown label set {label_set!r}; allowed: {allowed}")
    if len(set(value)) != len(value):
        raise UserError(message)
    return tuple(value)


def _mixed_precision(name: str, value: Any) -> str:
    # YAML reads true/false (and unquoted on/off) as booleans; "auto" is the one word.
    if isinstance(value, bool):
        return "on" if value else "off"
    if value != "auto":
        raise UserError(
            f"{name} = {value!r}: must be auto (mixed precision where every GPU supports it), true or false"
        )
    return value


@dataclass(frozen=True)
class GridPoint:
    """One head of a variant's grid: its L2 strength and its loss params (checked, defaults filled in)."""

    l2: float
    loss_params: dict[str, Any]
    tuned: dict[str, float]  # the values this grid varies (l2 and the loss's own): what selection records


@dataclass(frozen=True)
class TrainParams:
    losses: tuple[str, ...] = param(_losses)
    seeds: tuple[int, ...] = param(_seeds)
    # Per loss in `losses`, its params resolved (defaults filled in); params.yaml's mapping is checked whole.
    loss_params: dict[str, dict[str, Any]] = param(_loss_params, if_absent={})
    epochs: int = param(integer(1))
    batch_size: int = param(integer(1))
    learning_rate: float = param(number(0.0, 10.0, low_open=True))
    select_epoch: str = param(choice(*SELECT_EPOCH), default="last")
    # Fine-tuning only (model.fine_tune: true); see fine_tune_settings_in_head_mode.
    augment: bool = param(boolean(), default=False)
    mixed_precision: str = param(_mixed_precision, default="auto")  # one of MIXED_PRECISION
    xla: bool = param(boolean(), default=False)
    labels: tuple[str, ...] = param(_labels, if_absent=DEFAULT_LABEL_SETS, default=DEFAULT_LABEL_SETS)
    # Per loss, the grid its variants choose from (train.tune); a loss missing here: one point, l2 0.
    grids: dict[str, tuple[GridPoint, ...]] = param(anything(), if_absent=None, key="tune", default_factory=dict)
    select_score: str = param(choice(*SELECT_SCORES), if_absent="noisy", default="noisy")

    def grid(self, loss: str, validating: bool = True) -> tuple[GridPoint, ...]:
        """The loss's grid; without a validation set (nothing to choose with), or without train.tune, one
        untuned point: l2 0 and train.loss_params' values."""
        return (validating and self.grids.get(loss)) or (GridPoint(0.0, self.loss_params[loss], {"l2": 0.0}),)


def train_params(raw: dict[str, Any]) -> TrainParams:
    values = read(TrainParams, raw.get("train"), "train")
    losses, written = values["losses"], values["loss_params"]
    values["loss_params"] = {name: validate_loss_params(name, written.get(name) or {}) for name in losses}
    values["grids"] = tune_grids(values["grids"], losses, written)
    return TrainParams(**values)


def train_seeds(raw: dict[str, Any]) -> tuple[int, ...]:
    """train.seeds alone: for stages that need the repeats but not the losses."""
    return read(TrainParams, raw.get("train"), "train", skip=set(_fields()) - {"seeds"})["seeds"]


def _fields() -> tuple[str, ...]:
    return tuple(TrainParams.__dataclass_fields__)


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


def tune_grids(tune: Any, losses: tuple[str, ...], loss_params: dict) -> dict[str, tuple[GridPoint, ...]]:
    """train.tune: per loss, the product of its `l2` list and its own param's list; every loss in
    train.losses must have a grid of the same size (the same tuning budget for every method). Without a
    train.tune section: no grids (one point per loss, l2 0, as before tuning existed)."""
    if tune is None:
        return {}
    if not isinstance(tune, dict):
        raise UserError(f"train.tune = {tune!r}: must be a mapping of loss name to its grid")
    grids = {}
    for name, entry in tune.items():
        if name not in registry.names():
            raise _unknown_loss("train.tune", name)
        entry = entry or {}
        tunable = registry.get(name).tunable
        unknown = sorted(set(entry) - {"l2", *tunable}, key=str) if isinstance(entry, dict) else None
        if unknown is None or unknown or "l2" not in entry or len(entry) > 2:
            raise UserError(
                f"train.tune.{name} = {entry!r}: must set l2 (a list) and at most one of {name}'s own params "
                f"({', '.join(tunable) or 'none'}), e.g. {{l2: [0.001, 0.01]}}"
            )
        strengths = number_list(0.0, 1e6)(f"train.tune.{name}.l2", entry["l2"])
        own = [key for key in entry if key != "l2"]
        written = loss_params.get(name) or {}
        points = []
        values: tuple[float, ...] = (math.nan,)
        if own:
            key = own[0]
            if key in written:
                raise UserError(
                    f"train.loss_params.{name}.{key} and train.tune.{name}.{key} are both set: the tune list is "
                    f"what trains; remove train.loss_params.{name}.{key}"
                )
            values = number_list(0.0, 1.0)(f"train.tune.{name}.{key}", entry[key])
        for value in values:
            checked = validate_loss_params(name, dict(written) if not own else {**written, own[0]: value})
            for strength in strengths:
                tuned = {"l2": strength, **({own[0]: checked[own[0]]} if own else {})}
                points.append(GridPoint(strength, checked, tuned))
        grids[name] = tuple(points)
    missing = [name for name in losses if name not in grids]
    if missing:
        raise UserError(
            f"train.tune has no entry for {missing[0]}: every loss in train.losses needs one (e.g. {{l2: [0.01]}})"
        )
    sizes = {name: len(grids[name]) for name in losses}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise UserError(
            f"train.tune: the grids differ in size ({listed}): every loss needs the same number of points, so that "
            "each method gets the same tuning budget"
        )
    return grids


def fine_tune_settings_in_head_mode(settings: TrainParams) -> str | None:
    """The first fine-tuning-only setting asked for while model.fine_tune is false, as a message.

    A head on cached features has no images to augment and nothing for mixed precision or XLA to speed
    up; accepting these silently would rerun every train stage for identical results.
    """
    if settings.augment:
        return "train.augment = true: augmentation needs the images; it applies with model.fine_tune: true only"
    if settings.mixed_precision == "on":
        return "train.mixed_precision = true: applies with model.fine_tune: true only (use auto or false)"
    if settings.xla:
        return "train.xla = true: applies with model.fine_tune: true only"
    return None
