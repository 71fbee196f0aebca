"""Reading and validating params.yaml: the only place that checks what a user wrote.

Every param is a field of a section's dataclass (stages.lib.core.params.sections, .train) whose metadata holds
its check and default (stages.lib.core.schema); each loss declares its own params (stages.lib.losses). The known
keys, the choices and the "did you mean" hints come from those fields; adding a param is params.yaml plus
one field (and its use). Library modules take values checked here. Every stage starts with
`load_checked_params()`, which checks every param the pipeline reads (types, ranges, names, unknown keys),
not only the stage's own: a typo anywhere fails the first stage that runs, in a second, with one line
naming the param, not an hour later in a later stage. The losses' own params are checked by the stages
that import the losses (stages.lib.losses.settings), the fingerprint stage first of all. Checks that
need the data or a file (is `data.positive_class` a class of the data, does `model.weights` exist) are
made by the stage that reads them, before its heavy work. docs/params.md lists the params
(tests/unit/test_schema.py keeps it so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stages.lib.core.errors import UserError
from stages.lib.core.params.sections import (
    DEFAULT_DETECT_L2,
    DEFAULT_VERDICT_METRIC,
    NOISE_TYPES,
    RESNET50_BLOCKS,
    TASKS,
    DataParams,
    DetectParams,
    EvaluateParams,
    ModelParams,
    NoiseParams,
    StudyParams,
    data_params,
    detect_folds,
    detect_l2,
    evaluate_metric,
    model_params,
    noise_params,
    seed,
    task,
)
from stages.lib.core.params.train import (
    LABEL_SETS,
    SELECT_SCORES,
    GridPoint,
    TrainParams,
    fine_tune_settings_in_head_mode,
    read_train,
    train_seeds,
)
from stages.lib.core.schema import PARAMS_FILE_NAME, read, refuse_unknown, specs

__all__ = [
    "DEFAULT_DETECT_L2",
    "DEFAULT_VERDICT_METRIC",
    "LABEL_SETS",
    "NOISE_TYPES",
    "RESNET50_BLOCKS",
    "SELECT_SCORES",
    "TASKS",
    "DataParams",
    "GridPoint",
    "ModelParams",
    "NoiseParams",
    "TrainParams",
    "data_params",
    "detect_folds",
    "detect_l2",
    "evaluate_metric",
    "fine_tune_settings_in_head_mode",
    "model_params",
    "noise_params",
    "seed",
    "task",
    "train_seeds",
]

PARAMS_FILE = Path(PARAMS_FILE_NAME)
# The sections of params.yaml: "" is the top level. Each dataclass's param fields are its keys.
SECTIONS: tuple[tuple[str, type], ...] = (
    ("", StudyParams),
    ("", NoiseParams),
    ("data", DataParams),
    ("model", ModelParams),
    ("train", TrainParams),
    ("detect", DetectParams),
    ("evaluate", EvaluateParams),
)


def known_keys() -> dict[str, tuple[str, ...]]:
    """Every key the stages read, by section; anything else in params.yaml is a typo that would be ignored."""
    known: dict[str, tuple[str, ...]] = {}
    for section, cls in SECTIONS:
        known[section] = known.get(section, ()) + tuple(key for key, _ in specs(cls).values())
    known[""] += tuple(section for section in known if section)
    return known


def every_param() -> tuple[str, ...]:
    """The dotted name of every param but the losses' own (those: stages.lib.losses.settings.every_param)."""
    names = [f"{section}.{key}" if section else key for section, keys in known_keys().items() for key in keys]
    return tuple(name for name in names if name not in dict(SECTIONS))


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last silently; DVC's
    ruamel.yaml refuses it, so `dvc repro` and a stage run directly would read different params)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden: not a duplicate
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                line = first.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base constructor refuses it
                continue
            if line != key_node.start_mark.line + 1:
                raise _DuplicateKey(
                    None, None, f"{key} is set twice, on lines {line} and {key_node.start_mark.line + 1}"
                )
        return super().construct_mapping(node, deep=deep)


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file as a dict; a key set twice in one mapping is refused."""
    if not path.exists():
        raise UserError(f"{path} not found: run the stages from the project's root")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except _DuplicateKey as error:
        raise UserError(f"{path}: {error.problem}; delete one of them") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error}): save it as UTF-8") from None
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer of over 4,300 digits
        raise UserError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a mapping of params, found {type(raw).__name__}")
    return raw


def check_known_keys(raw: dict[str, Any]) -> None:
    """Refuse keys no stage reads: `nosie: 0.5` would otherwise run, silently, with the old noise."""
    for section, known in known_keys().items():
        node = raw if not section else raw.get(section)
        if not isinstance(node, dict):
            if section:
                raise UserError(f"{section} = {node!r}: must be a mapping with keys {', '.join(known)}")
            continue
        refuse_unknown(node, section, known)


def check_all(raw: dict[str, Any]) -> None:
    """Every check that needs neither data nor files, over every param of the pipeline but the losses' own
    (train.losses' names, train.loss_params, train.tune: stages.lib.losses.settings.check_all)."""
    check_known_keys(raw)
    for section, cls in SECTIONS:  # every declared param on its own; the readers below check them together
        read(cls, raw.get(section) if section else raw, section)
    seed(raw)
    kind = task(raw)
    data = data_params(raw)
    noise = noise_params(raw)
    model = model_params(raw)
    settings = read_train(raw)
    # Up front, not only in the train stage: it would fail after every stage before it had run.
    if not model.fine_tune and (problem := fine_tune_settings_in_head_mode(settings)):
        raise UserError(problem)
    if model.fine_tune and settings.select_epoch == "val" and data.val_size == 0:
        raise UserError(
            "train.select_epoch = val needs a validation set, but data.val_size = 0: "
            "set data.val_size > 0 or train.select_epoch: last"
        )
    detect_folds(raw)
    detect_l2(raw)
    evaluate_metric(raw)
    if noise.class_rates is not None and kind == "binary":
        # Binary class names are known without the data; multiclass names are checked by the corrupt stage.
        names = (f"not_{data.positive_class}", data.positive_class)
        for name in noise.class_rates:
            if name not in names:
                raise UserError(f"noise_class_rates: unknown class {name!r}; allowed: {', '.join(names)}")


@dataclass(frozen=True)
class Params:
    """params.yaml as the stages use it: read once, every param checked, then passed on."""

    seed: int
    task: str
    noise: NoiseParams
    data: DataParams
    model: ModelParams
    train: TrainParams
    detect: DetectParams
    evaluate: EvaluateParams
    # train.loss_params as written, every loss's entry, in use or not (detect reads forward's T).
    written_loss_params: dict[str, Any]


def typed_params(raw: dict[str, Any], train: TrainParams | None = None) -> Params:
    """Checked params (`check_all`) as a Params; `train`: the section with the losses' own params resolved
    (stages.lib.losses.settings), else read without them."""
    detect = DetectParams(folds=detect_folds(raw), l2=detect_l2(raw))
    return Params(
        seed=seed(raw),
        task=task(raw),
        noise=noise_params(raw),
        data=data_params(raw),
        model=model_params(raw),
        train=train or read_train(raw),
        detect=detect,
        evaluate=EvaluateParams(metric=evaluate_metric(raw)),
        written_loss_params=read_train(raw).loss_params,
    )


def read_params(path: Path = PARAMS_FILE) -> Params:
    """params.yaml, every param checked but the losses' own: what a stage that trains, tunes and scores no
    loss starts with (the others: stages.lib.losses.settings.read_params_with_losses)."""
    return typed_params(load_checked_params(path))


def load_checked_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml after `check_all`: what a stage that trains, tunes and scores no loss starts with (the
    others: stages.lib.losses.settings.load_checked_params, which adds the losses' own params)."""
    raw = load_params(path)
    check_all(raw)
    return raw
