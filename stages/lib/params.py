"""Reading and validating params.yaml: the only place that checks what a user wrote.

It also defines every choice a param offers (tasks, losses and their params' defaults, noise models); the
library modules that use them (losses, noise) take values checked here. Every stage starts with
`load_checked_params()`, which checks every param the pipeline reads (types, ranges, names, unknown keys),
not only the stage's own: a typo anywhere fails the first stage that runs, in a second, with one line
naming the param, not an hour later in a later stage. Checks that need the data or a file (is
`data.positive_class` a class of the data, does `model.weights` exist) are made by the stage that reads
them, before its heavy work. docs/params.md lists the params.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stages.lib.errors import UserError

PARAMS_FILE = Path("params.yaml")
TASKS = ("binary", "multiclass")
NOISE_TYPES = ("symmetric", "asymmetric", "seed", "given")  # docs/noise.md describes each
LOSS_NAMES = ("bce", "l1", "gce", "sce", "bootstrap", "ls", "forward")  # docs/losses.md describes each
BOOTSTRAP_MODES = ("soft", "hard")
# Reed et al. 2014 use beta=0.95 for soft and beta=0.8 for hard bootstrapping.
BOOTSTRAP_DEFAULT_BETA = {"soft": 0.95, "hard": 0.8}
# Forward correction's transition matrix: `true`, the realised one of each seed's labels (an oracle that shows
# the ceiling), or `estimated` by the detect stage from cleanlab's confident joint on that seed's labels.
TRANSITION_SOURCES = ("true", "estimated")
# The label sets a variant can train on (stages.lib.labels.LABEL_SETS): `pruned` is `noisy` without the
# labels the detect stage flags.
LABEL_SET_NAMES = ("clean", "noisy", "pruned")
DEFAULT_LABEL_SETS = ("clean", "noisy")
# Each loss's own params and their defaults: what train.loss_params.<loss> may set.
DEFAULT_LOSS_PARAMS: dict[str, dict[str, Any]] = {
    "bce": {},
    "l1": {},
    "gce": {"q": 0.7},
    "sce": {"alpha": 0.1, "beta": 1.0},
    "bootstrap": {"mode": "soft", "beta": None},  # None: 0.95 soft / 0.8 hard
    "ls": {"smoothing": 0.1},
    "forward": {"T": "true"},
}
# ResNet50 without its top halves the resolution five times: below 32 px nothing is left to pool.
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024


# Every key the stages read, by section; anything else in params.yaml is a typo that would be ignored.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": (
        "seed",
        "noise",
        "noise_type",
        "noise_class_rates",
        "noise_labels",
        "task",
        "data",
        "model",
        "train",
        "detect",
        "evaluate",
    ),
    "data": ("source", "positive_class", "image_size", "train_size", "val_size", "test_size"),
    "model": ("weights", "embed_batch_size", "fine_tune", "trainable_blocks"),
    "detect": ("folds", "l2"),
    "evaluate": ("metric",),
    "train": (
        "losses",
        "labels",
        "loss_params",
        "tune",
        "select_score",
        "epochs",
        "select_epoch",
        "batch_size",
        "learning_rate",
        "seeds",
        "augment",
        "mixed_precision",
        "xla",
    ),
}


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file as a dict."""
    if not path.exists():
        raise UserError(f"{path} not found: run the stages from the project's root")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error}): save it as UTF-8") from None
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer of over 4,300 digits
        raise UserError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a mapping of params, found {type(raw).__name__}")
    return raw


def _get(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise UserError(f"{dotted} is missing from {PARAMS_FILE}")
        node = node[key]
    return node


def _int(raw: dict[str, Any], dotted: str, low: int | None = None, high: int | None = None) -> int:
    value = _get(raw, dotted)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{dotted} = {value!r}: must be an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise UserError(f"{dotted} = {value!r}: must be an integer {bounds}")
    return value


def _float(raw: dict[str, Any], dotted: str, low: float, high: float, low_open: bool = False) -> float:
    value = _get(raw, dotted)
    # Only floats can be nan or inf; an int too large for a float is out of range below, not an OverflowError.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise UserError(f"{dotted} = {value!r}: must be a number")
    if value > high or value < low or (low_open and value == low):
        opening = "(" if low_open else "["
        raise UserError(f"{dotted} = {value!r}: must be a number in {opening}{low}, {high}]")
    return float(value)


def _choice(raw: dict[str, Any], dotted: str, allowed: tuple[str, ...]) -> str:
    value = _get(raw, dotted)
    if value not in allowed:
        raise UserError(f"{dotted} = {value!r}: must be one of {', '.join(allowed)}")
    return value


def _class_name(raw: dict[str, Any], dotted: str) -> str:
    """A class name, which is a folder's name: `-S data.positive_class=8` gives YAML's integer 8, and a
    folder named `8` is meant (an integer is read as its decimal name; true/false/floats are not names)."""
    value = _get(raw, dotted)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**100:
        return str(value)
    return _str(raw, dotted)


def _str(raw: dict[str, Any], dotted: str) -> str:
    value = _get(raw, dotted)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{dotted} = {value!r}: must be a non-empty string")
    return value


def seed(raw: dict[str, Any]) -> int:
    return _int(raw, "seed", 0, 2**31 - 1)


def task(raw: dict[str, Any]) -> str:
    return _choice(raw, "task", TASKS)


@dataclass(frozen=True)
class DataParams:
    source: str
    positive_class: str
    image_size: int
    train_size: int
    test_size: int | None  # None: every usable image outside the training pool and the validation set
    val_size: int = 0  # noisy validation set, drawn from outside the training pool; 0: none


def data_params(raw: dict[str, Any]) -> DataParams:
    test_size = _get(raw, "data.test_size")
    return DataParams(
        source=_str(raw, "data.source"),
        positive_class=_class_name(raw, "data.positive_class"),
        image_size=_int(raw, "data.image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
        train_size=_int(raw, "data.train_size", 1),
        val_size=_int(raw, "data.val_size", 0),
        test_size=None if test_size is None else _int(raw, "data.test_size", 1),
    )


@dataclass(frozen=True)
class NoiseParams:
    rate: float
    kind: str
    class_rates: dict[str, float] | None  # keyed by class name, as users write them
    labels_file: str | None = None  # noise_type given: absolute path of a CSV of file, label (class name)


def noise_params(raw: dict[str, Any]) -> NoiseParams:
    rate = _float(raw, "noise", 0.0, 1.0)
    kind = _choice(raw, "noise_type", NOISE_TYPES)
    class_rates = raw.get("noise_class_rates")
    if class_rates is not None:
        if not isinstance(class_rates, dict) or not class_rates:
            raise UserError(f"noise_class_rates = {class_rates!r}: must be null or a mapping of class name to rate")
        class_rates = {str(name): _class_rate(name, value) for name, value in class_rates.items()}
        if kind != "asymmetric":
            raise UserError(
                f"noise_class_rates = {class_rates!r}: only used with noise_type = asymmetric (it is {kind}); "
                "set it to null or change noise_type"
            )
    return NoiseParams(rate=rate, kind=kind, class_rates=class_rates, labels_file=_noise_labels(raw, kind))


def _noise_labels(raw: dict[str, Any], kind: str) -> str | None:
    value = raw.get("noise_labels")
    if kind != "given":
        if value is not None:
            raise UserError(
                f"noise_labels = {value!r}: only used with noise_type = given (it is {kind}); set it to null"
            )
        return None
    if not isinstance(value, str) or not Path(value).is_absolute():
        raise UserError(
            f"noise_labels = {value!r}: noise_type = given needs the absolute path of a CSV with columns "
            "file (relative to data.source) and label (a class name)"
        )
    return value


def _class_rate(name: Any, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise UserError(f"noise_class_rates.{name} = {value!r}: must be a number in [0, 1]")
    return float(value)


def _bool(raw: dict[str, Any], dotted: str) -> bool:
    value = _get(raw, dotted)
    if not isinstance(value, bool):
        raise UserError(f"{dotted} = {value!r}: must be true or false")
    return value


# ResNet50's residual blocks, bottom to top: conv2 has 3, conv3 4, conv4 6, conv5 3.
RESNET50_BLOCKS = 16


@dataclass(frozen=True)
class ModelParams:
    weights: str  # "imagenet", "none" or a path to a weights file
    embed_batch_size: int
    fine_tune: bool  # train the backbone on the images instead of a head on cached features
    trainable_blocks: int | None  # top residual blocks trained when fine-tuning; None: the whole network


def model_params(raw: dict[str, Any]) -> ModelParams:
    return ModelParams(
        weights=_str(raw, "model.weights"),
        embed_batch_size=_int(raw, "model.embed_batch_size", 1, 4096),
        fine_tune=_bool(raw, "model.fine_tune"),
        trainable_blocks=_trainable_blocks(raw),
    )


def _trainable_blocks(raw: dict[str, Any]) -> int | None:
    value = _get(raw, "model.trainable_blocks")
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= RESNET50_BLOCKS:
        raise UserError(
            f"model.trainable_blocks = {value!r}: must be `all` or an integer in [0, {RESNET50_BLOCKS}] "
            "(the number of ResNet50's residual blocks, counted from the top, trained when fine-tuning)"
        )
    return value


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
# The hyper-parameters a loss's grid may vary besides `l2` (train.tune.<loss>): one of its own params.
TUNABLE_LOSS_PARAMS: dict[str, tuple[str, ...]] = {
    "bce": (),
    "l1": (),
    "gce": ("q",),
    "sce": ("alpha", "beta"),
    "bootstrap": ("beta",),
    "ls": ("smoothing",),
    "forward": (),
}


@dataclass(frozen=True)
class GridPoint:
    """One head of a variant's grid: its L2 strength and its loss params (checked, defaults filled in)."""

    l2: float
    loss_params: dict[str, Any]
    tuned: dict[str, float]  # the values this grid varies (l2 and the loss's own): what selection records


@dataclass(frozen=True)
class TrainParams:
    losses: tuple[str, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    seeds: tuple[int, ...]
    loss_params: dict[str, dict[str, Any]]
    select_epoch: str = "last"  # one of SELECT_EPOCH
    # Fine-tuning only (model.fine_tune: true); see fine_tune_settings_in_head_mode.
    augment: bool = False
    mixed_precision: str = "auto"  # one of MIXED_PRECISION
    xla: bool = False
    # labels sits after the required fields: records built by hand (tests) keep working.
    labels: tuple[str, ...] = DEFAULT_LABEL_SETS
    # Per loss, the grid its variants choose from (train.tune); a loss missing here: one point, l2 0.
    grids: dict[str, tuple[GridPoint, ...]] = field(default_factory=dict)
    select_score: str = "noisy"  # one of SELECT_SCORES

    def grid(self, loss: str, validating: bool = True) -> tuple[GridPoint, ...]:
        """The loss's grid; without a validation set (nothing to choose with), or without train.tune, one
        untuned point: l2 0 and train.loss_params' values."""
        return (validating and self.grids.get(loss)) or (GridPoint(0.0, self.loss_params[loss], {"l2": 0.0}),)


def train_params(raw: dict[str, Any]) -> TrainParams:
    losses = _get(raw, "train.losses")
    if not isinstance(losses, list) or not losses:
        raise UserError(f"train.losses = {losses!r}: must be a non-empty list of {', '.join(LOSS_NAMES)}")
    for name in losses:
        if name not in LOSS_NAMES:
            raise UserError(f"train.losses: unknown loss {name!r}; allowed: {', '.join(LOSS_NAMES)}")
    if len(set(losses)) != len(losses):
        raise UserError(f"train.losses = {losses!r}: each loss may appear once")
    seeds = train_seeds(raw)
    loss_params = raw.get("train", {}).get("loss_params") or {}
    if not isinstance(loss_params, dict):
        raise UserError(f"train.loss_params = {loss_params!r}: must be a mapping of loss name to params")
    for name in loss_params:
        if name not in LOSS_NAMES:
            raise UserError(f"train.loss_params: unknown loss {name!r}; allowed: {', '.join(LOSS_NAMES)}")
        validate_loss_params(name, loss_params[name] or {})  # entries of unused losses too: typos surface now
    resolved = {name: validate_loss_params(name, loss_params.get(name) or {}) for name in losses}
    return TrainParams(
        losses=tuple(losses),
        epochs=_int(raw, "train.epochs", 1),
        select_epoch=_choice(raw, "train.select_epoch", SELECT_EPOCH),
        batch_size=_int(raw, "train.batch_size", 1),
        learning_rate=_float(raw, "train.learning_rate", 0.0, 10.0, low_open=True),
        seeds=seeds,
        loss_params=resolved,
        augment=_bool(raw, "train.augment"),
        mixed_precision=_mixed_precision(raw),
        xla=_bool(raw, "train.xla"),
        labels=train_labels(raw),
        grids=tune_grids(raw, tuple(losses), loss_params),
        select_score=_choice(raw, "train.select_score", SELECT_SCORES) if "select_score" in raw["train"] else "noisy",
    )


def _number_list(dotted: str, value: Any, low: float, high: float, low_open: bool = False) -> tuple[float, ...]:
    """A non-empty list of distinct finite numbers in [low, high] ((low, high] with low_open)."""
    # Types first: set() of a list holding a list raises, and an int too large for a float is out of range
    # (compared as an int), not an OverflowError.
    ok = isinstance(value, list) and bool(value)
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ok = ok and all(not isinstance(v, float) or math.isfinite(v) for v in value)
    ok = ok and all(low <= v <= high and not (low_open and v == low) for v in value)
    ok = ok and len(set(value)) == len(value)
    if not ok:
        opening = "(" if low_open else "["
        raise UserError(
            f"{dotted} = {value!r}: must be a non-empty list of distinct numbers in {opening}{low}, {high}]"
        )
    return tuple(float(v) for v in value)


def tune_grids(raw: dict[str, Any], losses: tuple[str, ...], loss_params: dict) -> dict[str, tuple[GridPoint, ...]]:
    """train.tune: per loss, the product of its `l2` list and its own param's list; every loss in
    train.losses must have a grid of the same size (the same tuning budget for every method). Without a
    train.tune section: no grids (one point per loss, l2 0, as before tuning existed)."""
    tune = raw.get("train", {}).get("tune")
    if tune is None:
        return {}
    if not isinstance(tune, dict):
        raise UserError(f"train.tune = {tune!r}: must be a mapping of loss name to its grid")
    grids = {}
    for name, entry in tune.items():
        if name not in LOSS_NAMES:
            raise UserError(f"train.tune: unknown loss {name!r}; allowed: {', '.join(LOSS_NAMES)}")
        entry = entry or {}
        allowed = ("l2", *TUNABLE_LOSS_PARAMS[name])
        unknown = sorted(set(entry) - set(allowed), key=str) if isinstance(entry, dict) else None
        if unknown is None or unknown or "l2" not in entry or len(entry) > 2:
            raise UserError(
                f"train.tune.{name} = {entry!r}: must set l2 (a list) and at most one of {name}'s own params "
                f"({', '.join(TUNABLE_LOSS_PARAMS[name]) or 'none'}), e.g. {{l2: [0.001, 0.01]}}"
            )
        strengths = _number_list(f"train.tune.{name}.l2", entry["l2"], 0.0, 1e6)
        own = [key for key in entry if key != "l2"]
        written = (loss_params.get(name) or {}) if isinstance(loss_params, dict) else {}
        points = []
        values: tuple[float, ...] = (math.nan,)
        if own:
            key = own[0]
            if key in written:
                raise UserError(
                    f"train.loss_params.{name}.{key} and train.tune.{name}.{key} are both set: the tune list is "
                    f"what trains; remove train.loss_params.{name}.{key}"
                )
            values = _number_list(f"train.tune.{name}.{key}", entry[key], 0.0, 1.0)
        for value in values:
            params = dict(written) if not own else {**written, own[0]: value}
            checked = validate_loss_params(name, params)
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


def train_labels(raw: dict[str, Any]) -> tuple[str, ...]:
    """train.labels: which label sets the train matrix trains each loss on (default clean, noisy)."""
    labels = raw.get("train", {}).get("labels", list(DEFAULT_LABEL_SETS))
    allowed = ", ".join(LABEL_SET_NAMES)
    message = f"train.labels = {labels!r}: must be a non-empty list of distinct label sets: {allowed}"
    if not isinstance(labels, list) or not labels:
        raise UserError(message)
    for name in labels:  # before the set() below: a list or mapping in the list is unhashable
        if name not in LABEL_SET_NAMES:
            raise UserError(f"train.labels: unknown label set {name!r}; allowed: {allowed}")
    if len(set(labels)) != len(labels):
        raise UserError(message)
    return tuple(labels)


# Cross-validation folds of the detect stage: at least 2; each class needs as many members.
DEFAULT_DETECT_FOLDS = 5


def detect_folds(raw: dict[str, Any]) -> int:
    """detect.folds: K of the K-fold cross-validation that gives the detect stage out-of-sample probabilities."""
    if "detect" not in raw:
        return DEFAULT_DETECT_FOLDS
    return _int(raw, "detect.folds", 2, 100)


# The metric a comparison's verdict (its p-value, Holm, "significant") is on; every table shows all of them.
# Balanced accuracy by default: on an imbalanced task (sunflowers are 19 % of tf_flowers) accuracy rewards
# answering the majority class. macro_f1 only for the multiclass task.
VERDICT_METRICS = ("balanced_accuracy", "accuracy", "auc", "macro_f1")
DEFAULT_VERDICT_METRIC = "balanced_accuracy"


# L2 strengths the detect stage's out-of-fold logistic regression chooses from (by out-of-fold log-loss on
# the labels under test): half-decades from 0.01 to 1,000.
DEFAULT_DETECT_L2 = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def detect_l2(raw: dict[str, Any]) -> tuple[float, ...]:
    """detect.l2: the L2 strengths (the head's λ, mean loss + λ/2·|w|²) cross-validation chooses from."""
    value = (raw.get("detect") or {}).get("l2")
    if value is None:
        return DEFAULT_DETECT_L2
    return _number_list("detect.l2", value, 0.0, 1e6, low_open=True)


def evaluate_metric(raw: dict[str, Any]) -> str:
    """evaluate.metric: the metric comparisons test and selection (threshold, hyper-parameters) aims at."""
    if "evaluate" not in raw:
        return DEFAULT_VERDICT_METRIC
    metric = _choice(raw, "evaluate.metric", VERDICT_METRICS)
    if metric == "macro_f1" and task(raw) == "binary":
        raise UserError(
            "evaluate.metric = macro_f1: applies to task: multiclass only (binary: balanced_accuracy, accuracy, auc)"
        )
    return metric


def _loss_number(name: str, key: str, value: Any) -> float:
    # bool is an int subclass; `q: true` in YAML is a typo, not 1.0.
    try:
        finite = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise UserError(f"train.loss_params.{name}.{key} = {value!r}: must be a finite number")
    return float(value)


def _check_loss_param(name: str, key: str, value: float, ok: bool, allowed: str) -> None:
    if not ok:
        raise UserError(f"train.loss_params.{name}.{key} = {value!r}: must be {allowed}")


def validate_loss_params(name: str, params: Mapping[str, Any] | None) -> dict:
    """``DEFAULT_LOSS_PARAMS[name]`` updated with ``params``, checked: what stages.lib.losses takes.

    For ``bootstrap`` a ``beta`` of ``None`` is resolved to the default of the chosen mode, so the
    returned dict holds the value actually used. Checked params come back unchanged.

    Raises:
        UserError: unknown loss name, unknown parameter key, or a value out of range; the message names
            ``train.losses`` or ``train.loss_params.<loss>.<key>`` and the allowed values.
    """
    if name not in LOSS_NAMES:
        raise UserError(f"train.losses: unknown loss {name!r}; allowed: {', '.join(LOSS_NAMES)}")
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise UserError(f"train.loss_params.{name} = {params!r}: must be a mapping of parameters")
    defaults = DEFAULT_LOSS_PARAMS[name]
    unknown = sorted(set(params) - set(defaults), key=str)  # keys of any type: YAML allows `1: x`
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise UserError(f"train.loss_params.{name}.{unknown[0]}: unknown parameter; allowed: {allowed}")
    out = {**defaults, **params}

    if name == "gce":
        q = out["q"] = _loss_number(name, "q", out["q"])
        _check_loss_param(name, "q", q, 0.0 < q <= 1.0, "in (0, 1]")
    elif name == "sce":
        for key in ("alpha", "beta"):
            out[key] = _loss_number(name, key, out[key])
            _check_loss_param(name, key, out[key], out[key] >= 0.0, ">= 0")
        if out["alpha"] == 0.0 and out["beta"] == 0.0:
            raise UserError("train.loss_params.sce.alpha/beta = 0/0: at least one must be > 0")
    elif name == "bootstrap":
        mode = out["mode"]
        if mode not in BOOTSTRAP_MODES:
            raise UserError(f"train.loss_params.bootstrap.mode = {mode!r}: must be one of {', '.join(BOOTSTRAP_MODES)}")
        if out["beta"] is None:
            out["beta"] = BOOTSTRAP_DEFAULT_BETA[mode]
        beta = out["beta"] = _loss_number(name, "beta", out["beta"])
        _check_loss_param(name, "beta", beta, 0.0 <= beta <= 1.0, "in [0, 1] (or null)")
    elif name == "ls":
        smoothing = out["smoothing"] = _loss_number(name, "smoothing", out["smoothing"])
        _check_loss_param(name, "smoothing", smoothing, 0.0 <= smoothing < 1.0, "in [0, 1)")
    elif name == "forward":
        if out["T"] is True:  # YAML reads an unquoted `T: true` as a boolean
            out["T"] = "true"
        if out["T"] not in TRANSITION_SOURCES:
            raise UserError(
                f"train.loss_params.forward.T = {out['T']!r}: must be one of {', '.join(TRANSITION_SOURCES)}"
            )
    return out


def check_known_keys(raw: dict[str, Any]) -> None:
    """Refuse keys no stage reads: `nosie: 0.5` would otherwise run, silently, with the old noise."""
    for section, known in KNOWN_KEYS.items():
        node = raw if not section else raw.get(section)
        if not isinstance(node, dict):
            if section:
                raise UserError(f"{section} = {node!r}: must be a mapping with keys {', '.join(known)}")
            continue
        for key in node:
            if key not in known:
                prefix = f"{section}." if section else ""
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {prefix}{close[0]}?" if close else f"known: {', '.join(known)}"
                raise UserError(f"{prefix}{key}: unknown param in {PARAMS_FILE}; {hint}")


def check_all(raw: dict[str, Any]) -> None:
    """Every check that needs neither data nor files, over every param of the pipeline."""
    check_known_keys(raw)
    seed(raw)
    kind = task(raw)
    data = data_params(raw)
    noise = noise_params(raw)
    model = model_params(raw)
    settings = train_params(raw)
    # Up front, not only in the train stage: it would fail after every stage before it had run.
    if not model.fine_tune and (problem := fine_tune_settings_in_head_mode(settings)):
        raise UserError(problem)
    if settings.select_epoch == "val" and data.val_size == 0:
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


def load_checked_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml after `check_all`: what every stage starts with."""
    raw = load_params(path)
    check_all(raw)
    return raw


def train_seeds(raw: dict[str, Any]) -> tuple[int, ...]:
    """train.seeds alone: for stages that need the repeats but not the losses (whose module loads Keras)."""
    seeds = _get(raw, "train.seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise UserError(f"train.seeds = {seeds!r}: must be a non-empty list of distinct integers >= 0")
    return tuple(seeds)


def _mixed_precision(raw: dict[str, Any]) -> str:
    # YAML reads true/false (and unquoted on/off) as booleans; "auto" is the one word.
    value = _get(raw, "train.mixed_precision")
    if isinstance(value, bool):
        return "on" if value else "off"
    if value != "auto":
        raise UserError(
            f"train.mixed_precision = {value!r}: must be auto (mixed precision where every GPU supports it), "
            "true or false"
        )
    return value


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
