"""The fine-tuning params: defaults in params.yaml, accepted values, and one-line errors naming the param."""

from __future__ import annotations

import copy

import pytest

from stages.lib.core import params as core_params
from stages.lib.core.errors import UserError
from stages.lib.losses import settings as loss_settings
from toolkit.project import default_params

REPOSITORY_PARAMS = default_params()


def with_values(**dotted) -> dict:
    raw = copy.deepcopy(REPOSITORY_PARAMS)
    for key, value in dotted.items():
        section, name = key.split("__")
        raw[section][name] = value
    return raw


def test_the_repository_defaults_train_a_head_without_fine_tuning_settings() -> None:
    model, train = core_params.model_params(REPOSITORY_PARAMS), loss_settings.train_params(REPOSITORY_PARAMS)
    assert (model.fine_tune, model.trainable_blocks) == (False, None)
    assert (train.augment, train.mixed_precision, train.xla) == (False, "auto", False)
    assert core_params.fine_tune_settings_in_head_mode(train) is None


@pytest.mark.parametrize(("value", "blocks"), [("all", None), (0, 0), (1, 1), (16, 16)])
def test_trainable_blocks_accepts_all_or_a_count(value, blocks) -> None:
    assert core_params.model_params(with_values(model__trainable_blocks=value)).trainable_blocks == blocks


@pytest.mark.parametrize("value", [17, -1, "top", True, 1.5, None])
def test_trainable_blocks_refuses_anything_else(value) -> None:
    with pytest.raises(UserError, match=r"^model.trainable_blocks = .*: must be `all` or an integer in \[0, 16\]"):
        core_params.model_params(with_values(model__trainable_blocks=value))


@pytest.mark.parametrize(("key", "value"), [("model__fine_tune", "yes"), ("train__augment", 1), ("train__xla", None)])
def test_switches_must_be_booleans(key, value) -> None:
    name = key.replace("__", ".")
    reader = core_params.model_params if key.startswith("model") else loss_settings.train_params
    with pytest.raises(UserError, match=rf"^{name} = .*: must be true or false$"):
        reader(with_values(**{key: value}))


@pytest.mark.parametrize(("value", "word"), [("auto", "auto"), (True, "on"), (False, "off")])
def test_mixed_precision_reads_yaml_booleans_as_on_and_off(value, word) -> None:
    assert loss_settings.train_params(with_values(train__mixed_precision=value)).mixed_precision == word


@pytest.mark.parametrize("value", ["fp16", "on", 1, None])
def test_mixed_precision_refuses_other_values(value) -> None:
    with pytest.raises(UserError, match=r"^train.mixed_precision = .*: must be auto"):
        loss_settings.train_params(with_values(train__mixed_precision=value))


@pytest.mark.parametrize("key", ["train__augment", "train__mixed_precision", "train__xla"])
def test_fine_tuning_settings_are_refused_for_a_head(key) -> None:
    message = core_params.fine_tune_settings_in_head_mode(loss_settings.train_params(with_values(**{key: True})))
    param = key.replace("__", ".")
    assert message is not None and message.startswith(f"{param} = true:") and "model.fine_tune" in message


def test_a_missing_fine_tuning_param_is_named() -> None:
    raw = copy.deepcopy(REPOSITORY_PARAMS)
    del raw["model"]["fine_tune"]
    with pytest.raises(UserError, match=r"^model.fine_tune is missing from params.yaml$"):
        core_params.model_params(raw)


def test_train_seeds_reads_the_repeats_alone() -> None:
    raw = with_values(train__losses=["not-a-loss"])  # the losses are not looked at
    assert core_params.train_seeds(raw) == tuple(range(10))
    with pytest.raises(UserError, match=r"^train.seeds = "):
        core_params.train_seeds(with_values(train__seeds=[1, 1]))


def test_every_loss_s_fine_tuning_grid_has_the_same_size_by_default() -> None:
    """The same tuning budget for every loss (issue 33): learning rates x the loss's own param."""
    raw = copy.deepcopy(REPOSITORY_PARAMS)
    raw["train"]["losses"] = list(loss_settings.LOSS_NAMES)
    settings = loss_settings.train_params(raw)
    sizes = {loss: len(settings.fine_tuning_grid(loss)) for loss in loss_settings.LOSS_NAMES}
    assert set(sizes.values()) == {4}, sizes
    for loss in loss_settings.LOSS_NAMES:
        grid = settings.fine_tuning_grid(loss)
        assert all(point.learning_rate == point.tuned["learning_rate"] and point.l2 is None for point in grid)
        assert len({tuple(point.tuned.items()) for point in grid}) == 4  # four distinct models
    gce = settings.fine_tuning_grid("gce")
    assert {(p.learning_rate, p.loss_params["q"]) for p in gce} == {(r, q) for r in (1e-5, 1e-4) for q in (0.4, 0.7)}


def test_fine_tuning_grids_of_different_sizes_are_refused() -> None:
    raw = with_values(train__fine_tune_grid={"bce": {"learning_rate": [1e-4]}, "l1": {"learning_rate": [1e-4, 1e-3]}})
    with pytest.raises(UserError, match=r"^train\.fine_tune_grid: the grids differ in size \(bce 1, l1 2\)"):
        loss_settings.train_params(raw)
    raw = with_values(train__fine_tune_grid={"bce": {"l2": [0.1]}, "l1": {"learning_rate": [1e-4]}})
    with pytest.raises(UserError, match=r"^train\.fine_tune_grid\.bce = .*must set learning_rate"):
        loss_settings.train_params(raw)


def test_without_a_validation_set_or_a_grid_fine_tuning_has_one_point_at_train_learning_rate() -> None:
    settings = loss_settings.train_params(with_values(train__learning_rate=3e-4))
    assert [(p.learning_rate, p.tuned) for p in settings.fine_tuning_grid("l1", validating=False)] == [(3e-4, {})]
    raw = with_values(train__learning_rate=3e-4)
    del raw["train"]["fine_tune_grid"]
    assert [p.learning_rate for p in loss_settings.train_params(raw).fine_tuning_grid("bce")] == [3e-4]


@pytest.mark.parametrize(("value", "ok"), [("linear_probe", True), ("fresh_head", True), ("lp_ft", False)])
def test_fine_tune_start_is_linear_probe_or_fresh_head(value: str, ok: bool) -> None:
    raw = with_values(model__fine_tune_start=value)
    if ok:
        assert core_params.model_params(raw).fine_tune_start == value
    else:
        with pytest.raises(UserError, match=r"^model\.fine_tune_start = 'lp_ft': must be one of linear_probe"):
            core_params.model_params(raw)
