"""The train section's params (stages.lib.core.schema fields). Each loss's own params, which the loss declares in
its module, and the grids of train.tune are checked by stages.lib.losses.settings: only the stages that
train, tune or score a loss import the losses' modules (editing a loss must not rerun embed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages.lib.core.errors import UserError
from stages.lib.core.schema import anything, boolean, choice, integer, number, param, read

# The label sets a variant can train on: clean (subsample's), noisy (corrupt's), pruned (detect's: noisy without
# the labels it flags).
LABEL_SETS = ("clean", "noisy", "pruned")
DEFAULT_LABEL_SETS = ("clean", "noisy")
MIXED_PRECISION = ("auto", "on", "off")
# Which epoch's model is scored: the last one, or the one with the best accuracy on the (noisy) validation labels.
SELECT_EPOCH = ("last", "val")
# What picks each model's epoch, hyper-parameters and decision threshold on its validation labels
# (docs/losses.md, "Tuning"): `noisy`, evaluate.metric on the validation labels as they are (right for
# symmetric noise); `corrected_true` / `corrected_estimated`, on the clean confusion matrix recovered through
# the inverse of the validation labels' transition matrix T, the realised one (an oracle) or detect's estimate.
SELECT_SCORES = ("noisy", "corrected_true", "corrected_estimated")
# What ranks a variant's candidate models on its validation labels, and what places a binary threshold
# (stages.lib.train.selection; docs/losses.md "Tuning"; benchmarks/selection.py chose the defaults).
SELECT_BY = ("log_loss", "auc", "metric")
THRESHOLD_RULES = ("smoothed", "empirical", "share")


def _losses(name: str, value: Any) -> tuple[str, ...]:
    """The list's shape; which names are losses: stages.lib.losses.settings (it needs the losses' modules)."""
    if not isinstance(value, list) or not value or not all(isinstance(loss, str) for loss in value):
        raise UserError(f"{name} = {value!r}: must be a non-empty list of loss names (docs/losses.md)")
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
    """train.loss_params as written, a mapping (each entry is checked by stages.lib.losses.settings)."""
    value = value or {}
    if not isinstance(value, dict):
        raise UserError(f"{name} = {value!r}: must be a mapping of loss name to params")
    return value


def _labels(name: str, value: Any) -> tuple[str, ...]:
    allowed = ", ".join(LABEL_SETS)
    message = f"{name} = {value!r}: must be a non-empty list of distinct label sets: {allowed}"
    if not isinstance(value, list) or not value:
        raise UserError(message)
    for label_set in value:  # before the set() below: a list or mapping in the list is unhashable
        if label_set not in LABEL_SETS:
            raise UserError(f"{name}: unknown label set {label_set!r}; allowed: {allowed}")
    if len(set(value)) != len(value):
        raise UserError(message)
    return tuple(value)


def _threshold_folds(name: str, value: Any) -> int:
    folds = integer(0)(name, value)
    if folds == 1:
        raise UserError(f"{name} = 1: must be 0 (the validation labels alone) or at least 2 folds")
    return folds


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
    """One model of a variant's grid: a head's L2 strength (train.tune) or fine-tuning's learning rate
    (train.fine_tune_grid), and its loss params (checked, defaults filled in).

    `l2` None: nothing chose it (no validation set, or no train.tune): scikit-learn LogisticRegression's default
    C = 1, λ = 1/N for N training rows, resolved where N is known (stages.lib.train.head); an unpenalised head on
    fewer rows than features has no optimum."""

    l2: float | None
    loss_params: dict[str, Any]
    # the values the grid varies (l2 or learning_rate, and the loss's own): what selection records
    tuned: dict[str, float]
    learning_rate: float | None = None  # fine-tuning's Adam learning rate (None in a head's grid)


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
    # Per loss, fine-tuning's grid (learning rates x the loss's own param); without it: one point, learning_rate.
    fine_tune_grids: dict[str, tuple[GridPoint, ...]] = param(
        anything(), if_absent=None, key="fine_tune_grid", default_factory=dict
    )
    select_score: str = param(choice(*SELECT_SCORES), if_absent="noisy", default="noisy")
    select_by: str = param(choice(*SELECT_BY), if_absent="log_loss", default="log_loss")
    threshold: str = param(choice(*THRESHOLD_RULES), if_absent="smoothed", default="smoothed")
    # K > 0: the binary threshold is chosen on the validation labels together with the training pool's labels
    # and the chosen head's K-fold out-of-fold logits (stages.lib.train.head.out_of_fold_logits); 0: validation alone.
    threshold_folds: int = param(_threshold_folds, if_absent=5, default=5)

    def grid(self, loss: str, validating: bool = True) -> tuple[GridPoint, ...]:
        """The loss's grid; without a validation set (nothing to choose with), or without train.tune, one
        untuned point: λ 1/N (GridPoint) and train.loss_params' values."""
        return (validating and self.grids.get(loss)) or (GridPoint(None, self.loss_params[loss], {}),)

    def fine_tuning_grid(self, loss: str, validating: bool = True) -> tuple[GridPoint, ...]:
        """Fine-tuning's grid for the loss (train.fine_tune_grid); without a validation set, or without the
        section, one untuned point: train.learning_rate and train.loss_params' values."""
        grid = validating and self.fine_tune_grids.get(loss)
        return grid or (GridPoint(None, self.loss_params[loss], {}, learning_rate=self.learning_rate),)


def read_train(raw: dict[str, Any]) -> TrainParams:
    """The train section with every param checked but the losses' own: `loss_params` as written and no grids.
    What stages that train nothing need (their checks and train.seeds); a stage that trains, tunes or scores
    a loss reads stages.lib.losses.settings.train_params instead."""
    values = read(TrainParams, raw.get("train"), "train")
    values["grids"] = values["fine_tune_grids"] = {}
    return TrainParams(**values)


def train_seeds(raw: dict[str, Any]) -> tuple[int, ...]:
    """train.seeds alone: for stages that need the repeats but not the losses."""
    return read(TrainParams, raw.get("train"), "train", skip=set(_fields()) - {"seeds"})["seeds"]


def _fields() -> tuple[str, ...]:
    return tuple(TrainParams.__dataclass_fields__)


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
