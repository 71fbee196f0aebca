"""The params of every section but train's, as dataclasses whose fields are the params (stages.lib.core.schema):
the field's metadata holds its check and default, and the known keys of params.yaml come from the fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.lib.core.errors import UserError
from stages.lib.core.schema import (
    anything,
    boolean,
    choice,
    class_name,
    integer,
    number,
    number_list,
    optional,
    param,
    read,
    text,
)

TASKS = ("binary", "multiclass")
# docs/noise.md describes each; `notebook` is the original notebook's rule (it was called `seed`).
NOISE_TYPES = ("symmetric", "asymmetric", "notebook", "given")
# ResNet50 without its top halves the resolution five times: below 32 px nothing is left to pool.
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024
# ResNet50's residual blocks, bottom to top: conv2 has 3, conv3 4, conv4 6, conv5 3.
RESNET50_BLOCKS = 16
# Where fine-tuning's head starts (docs/fine-tuning.md): the variant's head fit to its optimum on the starting
# backbone's features, as head mode fits it (linear probing, then fine-tuning: LP-FT, Kumar et al., ICLR 2022),
# or a freshly initialised head.
FINE_TUNE_STARTS = ("linear_probe", "fresh_head")
# The metric a comparison's verdict (its p-value, Holm, "significant") is on; every table shows all of them.
# Balanced accuracy by default: on an imbalanced task (sunflowers are 19 % of tf_flowers) accuracy rewards
# answering the majority class. macro_f1 only for the multiclass task.
VERDICT_METRICS = ("balanced_accuracy", "accuracy", "auc", "macro_f1")
DEFAULT_VERDICT_METRIC = "balanced_accuracy"
# What the subsample stage does with a picture found in two or more classes (stages.lib.data.duplicates): leave
# every copy out, use one copy per class, or refuse the data.
DUPLICATE_RULES = ("drop", "keep", "error")
# Cross-validation folds of the detect stage: at least 2; each class needs as many members.
DEFAULT_DETECT_FOLDS = 5
# L2 strengths the detect stage's out-of-fold logistic regression chooses from (by out-of-fold log-loss on
# the labels under test): half-decades from 0.01 to 1,000.
DEFAULT_DETECT_L2 = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def _noise_type(name: str, value: Any) -> str:
    if value == "seed":  # older params files name the notebook's rule so; `seed` is a random seed only
        raise UserError(f"{name} = 'seed': the original notebook's rule is now called notebook; write notebook")
    return choice(*NOISE_TYPES)(name, value)


@dataclass(frozen=True)
class StudyParams:
    seed: int = param(integer(0, 2**31 - 1))
    task: str = param(choice(*TASKS))


@dataclass(frozen=True)
class NoiseParams:
    rate: float = param(number(0.0, 1.0), key="noise")
    kind: str = param(_noise_type, key="noise_type")
    class_rates: dict[str, float] | None = param(anything(), if_absent=None, key="noise_class_rates")
    # noise_type given: absolute path of a CSV of file, label (class name)
    labels_file: str | None = param(anything(), if_absent=None, key="noise_labels", default=None)


def noise_params(raw: dict[str, Any]) -> NoiseParams:
    values = read(NoiseParams, raw, "")
    kind = values["kind"]
    class_rates = values["class_rates"]
    if class_rates is not None:
        if not isinstance(class_rates, dict) or not class_rates:
            raise UserError(f"noise_class_rates = {class_rates!r}: must be null or a mapping of class name to rate")
        class_rates = {str(name): _class_rate(name, value) for name, value in class_rates.items()}
        if kind != "asymmetric":
            raise UserError(
                f"noise_class_rates = {class_rates!r}: only used with noise_type = asymmetric (it is {kind}); "
                "set it to null or change noise_type"
            )
    return NoiseParams(rate=values["rate"], kind=kind, class_rates=class_rates, labels_file=_noise_labels(values))


def _noise_labels(values: dict[str, Any]) -> str | None:
    value, kind = values["labels_file"], values["kind"]
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


@dataclass(frozen=True)
class DataParams:
    source: str = param(text())
    positive_class: str = param(class_name())
    image_size: int = param(integer(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE))
    train_size: int = param(integer(1))
    # None: every usable image outside the training pool and the validation set
    test_size: int | None = param(optional(integer(1)))
    val_size: int = param(integer(0), default=0)  # noisy validation set, drawn from outside the training pool; 0: none
    # a picture in several classes (identical pixels): drop | keep | error (stages.lib.data.duplicates)
    duplicates: str = param(choice(*DUPLICATE_RULES), if_absent="drop", default="drop")


def _trainable_blocks(name: str, value: Any) -> int | None:
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= RESNET50_BLOCKS:
        raise UserError(
            f"{name} = {value!r}: must be `all` or an integer in [0, {RESNET50_BLOCKS}] "
            "(the number of ResNet50's residual blocks, counted from the top, trained when fine-tuning)"
        )
    return value


@dataclass(frozen=True)
class ModelParams:
    weights: str = param(text())  # "imagenet", "none" or a path to a weights file
    embed_batch_size: int = param(integer(1, 4096))
    fine_tune: bool = param(boolean())  # train the backbone on the images instead of a head on cached features
    # top residual blocks trained when fine-tuning; None: the whole network
    trainable_blocks: int | None = param(_trainable_blocks)
    # fine-tuning only: one of FINE_TUNE_STARTS
    fine_tune_start: str = param(choice(*FINE_TUNE_STARTS), if_absent="linear_probe", default="linear_probe")


@dataclass(frozen=True)
class DetectParams:
    # K of the K-fold cross-validation that gives the detect stage out-of-sample probabilities
    folds: int = param(integer(2, 100), if_absent=DEFAULT_DETECT_FOLDS)
    # the L2 strengths (the head's λ, mean loss + λ/2·|w|²) cross-validation chooses from
    l2: tuple[float, ...] = param(number_list(0.0, 1e6, low_open=True), if_absent=DEFAULT_DETECT_L2)


@dataclass(frozen=True)
class EvaluateParams:
    # the metric comparisons test and selection (threshold, hyper-parameters) aims at
    metric: str = param(choice(*VERDICT_METRICS), if_absent=DEFAULT_VERDICT_METRIC)


def section(raw: dict[str, Any], name: str) -> Any:
    return raw.get(name) if name else raw


def seed(raw: dict[str, Any]) -> int:
    return read(StudyParams, raw, "", skip=("task",))["seed"]


def task(raw: dict[str, Any]) -> str:
    return read(StudyParams, raw, "", skip=("seed",))["task"]


def data_params(raw: dict[str, Any]) -> DataParams:
    return DataParams(**read(DataParams, section(raw, "data"), "data"))


def model_params(raw: dict[str, Any]) -> ModelParams:
    return ModelParams(**read(ModelParams, section(raw, "model"), "model"))


def detect_folds(raw: dict[str, Any]) -> int:
    return read(DetectParams, section(raw, "detect"), "detect", skip=("l2",))["folds"]


def detect_l2(raw: dict[str, Any]) -> tuple[float, ...]:
    value = (raw.get("detect") or {}).get("l2")
    if value is None:  # null: the default
        return DEFAULT_DETECT_L2
    return read(DetectParams, section(raw, "detect"), "detect", skip=("folds",))["l2"]


def evaluate_metric(raw: dict[str, Any]) -> str:
    metric = read(EvaluateParams, section(raw, "evaluate"), "evaluate")["metric"]
    if metric == "macro_f1" and task(raw) == "binary":
        raise UserError(
            "evaluate.metric = macro_f1: applies to task: multiclass only (binary: balanced_accuracy, accuracy, auc)"
        )
    return metric
