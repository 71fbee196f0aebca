"""Unit tests for stages.lib.core.params: the repository's params.yaml loads; typical mistakes name their param.

The command-line behaviour of every invalid value (exit status, one-line message) is tested through the
stages elsewhere; these tests call the section functions directly.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stages.lib.core import params as core_params
from stages.lib.core.errors import UserError
from stages.lib.losses import make_loss
from stages.lib.losses import settings as loss_settings
from toolkit.project import DEFAULT_PARAMS_FILE

REPO_PARAMS = DEFAULT_PARAMS_FILE  # the project's defaults, not the working params.yaml a study edits


@pytest.fixture(scope="module")
def repo_params() -> dict[str, Any]:
    return core_params.load_params(REPO_PARAMS)


def test_repository_params_load_through_every_section(repo_params: dict[str, Any]) -> None:
    as_written = yaml.safe_load(REPO_PARAMS.read_text())
    assert core_params.seed(repo_params) == as_written["seed"]
    assert core_params.task(repo_params) in core_params.TASKS
    data = core_params.data_params(repo_params)
    assert data == core_params.DataParams(**as_written["data"])
    noise = core_params.noise_params(repo_params)
    assert (noise.rate, noise.kind, noise.class_rates) == (
        as_written["noise"],
        as_written["noise_type"],
        as_written["noise_class_rates"],
    )
    model = core_params.model_params(repo_params)
    # `trainable_blocks: all` is read as None (every block trains).
    written_model = {**as_written["model"], "trainable_blocks": None}
    assert as_written["model"]["trainable_blocks"] == "all"
    assert model == core_params.ModelParams(**written_model)
    train = loss_settings.train_params(repo_params)
    assert train.losses == tuple(as_written["train"]["losses"])
    assert train.seeds == tuple(as_written["train"]["seeds"])
    assert (train.epochs, train.batch_size, train.learning_rate) == (
        as_written["train"]["epochs"],
        as_written["train"]["batch_size"],
        as_written["train"]["learning_rate"],
    )
    assert train.select_epoch == as_written["train"]["select_epoch"]
    # Every loss in use gets its resolved parameters (defaults filled in), and only those.
    assert set(train.loss_params) == set(train.losses)


def test_loss_params_written_are_used_and_defaults_fill_the_rest(repo_params: dict[str, Any]) -> None:
    raw = with_value(repo_params, "train.losses", ["gce", "sce", "bootstrap"])
    raw["train"]["loss_params"] = {"gce": {"q": 0.5}, "bootstrap": {"mode": "hard"}}
    del raw["train"]["tune"], raw["train"]["fine_tune_grid"]  # no grids: each loss trains with its loss_params
    resolved = loss_settings.train_params(raw).loss_params
    assert resolved["gce"] == {"q": 0.5}
    assert resolved["sce"] == {"alpha": 0.1, "beta": 1.0}
    assert resolved["bootstrap"]["mode"] == "hard"
    assert 0 <= resolved["bootstrap"]["beta"] <= 1  # the hard mode's default, resolved


def test_noise_class_rates_by_name(repo_params: dict[str, Any]) -> None:
    raw = with_value(repo_params, "noise_type", "asymmetric")
    raw["noise_class_rates"] = {"sunflowers": 0.4, "daisy": 0}
    assert core_params.noise_params(raw).class_rates == {"sunflowers": 0.4, "daisy": 0.0}


def test_test_size_null_or_number(repo_params: dict[str, Any]) -> None:
    assert core_params.data_params(with_value(repo_params, "data.test_size", None)).test_size is None
    assert core_params.data_params(with_value(repo_params, "data.test_size", 500)).test_size == 500


def test_select_epoch_val_needs_a_validation_set_when_fine_tuning(repo_params: dict[str, Any]) -> None:
    raw = with_value(with_value(repo_params, "train.select_epoch", "val"), "data.val_size", 0)
    loss_settings.check_all(raw)  # heads: no epochs to choose from, one untuned head without a validation set
    raw = with_value(raw, "model.fine_tune", True)
    with pytest.raises(UserError, match=r"^train\.select_epoch = val needs a validation set, but data\.val_size = 0: "):
        loss_settings.check_all(raw)
    loss_settings.check_all(with_value(raw, "train.select_epoch", "last"))  # no validation set: the last epoch is kept
    assert core_params.data_params(raw).val_size == 0


def copy_and_locate(raw: dict[str, Any], dotted: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A deep copy of raw, the mapping in it that holds the dotted param, and the param's own key."""
    changed = copy.deepcopy(raw)
    *parents, key = dotted.split(".")
    node = changed
    for parent in parents:
        node = node[parent]
    return changed, node, key


def with_value(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of raw with one (possibly nested) param replaced."""
    changed, node, key = copy_and_locate(raw, dotted)
    node[key] = value
    return changed


INVALID = [
    # (section function, param, bad value, what the message must say)
    (core_params.seed, "seed", -1, r"seed = -1: must be an integer in \[0, 2147483647\]"),
    (core_params.seed, "seed", "0", r"seed = '0': must be an integer"),
    (core_params.task, "task", "regression", r"task = 'regression': must be one of binary, multiclass"),
    (core_params.data_params, "data.source", "", r"data\.source = '': must be a non-empty string"),
    (core_params.data_params, "data.image_size", 16, r"data\.image_size = 16: must be an integer in \[32, 1024\]"),
    (core_params.data_params, "data.train_size", 0, r"data\.train_size = 0: must be an integer >= 1"),
    (core_params.data_params, "data.train_size", 600.5, r"data\.train_size = 600\.5: must be an integer"),
    (core_params.data_params, "data.test_size", 0, r"data\.test_size = 0: must be an integer >= 1"),
    (core_params.data_params, "data.val_size", -1, r"data\.val_size = -1: must be an integer >= 0"),
    (core_params.data_params, "data.val_size", None, r"data\.val_size = None: must be an integer"),
    (core_params.data_params, "data.positive_class", None, r"data\.positive_class = None: must be a non-empty string"),
    (core_params.noise_params, "noise", 1.5, r"noise = 1\.5: must be a number in \[0\.0, 1\.0\]"),
    (core_params.noise_params, "noise", True, r"noise = True: must be a number"),
    (core_params.noise_params, "noise", float("nan"), r"noise = nan: must be a number"),
    (
        core_params.noise_params,
        "noise_type",
        "uniform",
        r"noise_type = 'uniform': must be one of symmetric, asymmetric, notebook, given",
    ),
    (
        core_params.noise_params,
        "noise_class_rates",
        {"sunflowers": 2},
        r"noise_class_rates\.sunflowers = 2: .*\[0, 1\]",
    ),
    (core_params.noise_params, "noise_class_rates", [0.4], r"noise_class_rates = \[0\.4\]: must be null or a mapping"),
    (core_params.model_params, "model.weights", "", r"model\.weights = '': must be a non-empty string"),
    (
        core_params.model_params,
        "model.embed_batch_size",
        0,
        r"model\.embed_batch_size = 0: must be an integer in \[1, 4096\]",
    ),
    (loss_settings.train_params, "train.losses", [], r"train\.losses = \[\]: must be a non-empty list of loss names"),
    (
        loss_settings.train_params,
        "train.losses",
        ["bce", "mse"],
        r"train\.losses: unknown loss 'mse'; allowed: bce, l1",
    ),
    (
        loss_settings.train_params,
        "train.losses",
        ["l1", "l1"],
        r"train\.losses = \['l1', 'l1'\]: each loss may appear once",
    ),
    (
        loss_settings.train_params,
        "train.seeds",
        [0, 0],
        r"train\.seeds = \[0, 0\]: must be a non-empty list of distinct",
    ),
    (loss_settings.train_params, "train.seeds", [True], r"train\.seeds = \[True\]: must be"),
    (loss_settings.train_params, "train.epochs", 0, r"train\.epochs = 0: must be an integer >= 1"),
    (
        loss_settings.train_params,
        "train.select_epoch",
        "best",
        r"train\.select_epoch = 'best': must be one of last, val",
    ),
    (loss_settings.train_params, "train.batch_size", "32", r"train\.batch_size = '32': must be an integer"),
    (
        loss_settings.train_params,
        "train.learning_rate",
        0,
        r"train\.learning_rate = 0: must be a number in \(0\.0, 10\.0\]",
    ),
    (loss_settings.train_params, "train.loss_params", {"gce": {"q": 2}}, r"train\.loss_params\.gce\.q"),
    (
        loss_settings.train_params,
        "train.loss_params",
        {"gce": {"k": 1}},
        r"train\.loss_params\.gce\.k: unknown parameter",
    ),
    (loss_settings.train_params, "train.loss_params", {"focal": {}}, r"train\.loss_params: unknown loss 'focal'"),
]


INVALID_IDS = [f"{param}={value!r}" for _, param, value, _ in INVALID]


@pytest.mark.parametrize(("section", "param", "value", "message"), INVALID, ids=INVALID_IDS)
def test_invalid_value_names_the_param(
    repo_params: dict[str, Any], section: Any, param: str, value: Any, message: str
) -> None:
    raw = with_value(repo_params, param, value)
    with pytest.raises(UserError, match=message) as caught:
        section(raw)
    assert "\n" not in str(caught.value)  # one line for the user


@pytest.mark.parametrize(
    ("section", "param"),
    [
        (core_params.seed, "seed"),
        (core_params.task, "task"),
        (core_params.data_params, "data.image_size"),
        (loss_settings.train_params, "train.epochs"),
    ],
)
def test_missing_param_is_named(repo_params: dict[str, Any], section: Any, param: str) -> None:
    raw, node, key = copy_and_locate(repo_params, param)
    del node[key]
    with pytest.raises(UserError, match=re.escape(f"{param} is missing from params.yaml")):
        section(raw)


def test_load_params_problems_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found: run the stages from the project's root"):
        core_params.load_params(tmp_path / "params.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [0\n")
    with pytest.raises(UserError, match="is not valid YAML"):
        core_params.load_params(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- seed\n")
    with pytest.raises(UserError, match="must hold a mapping of params, found list"):
        core_params.load_params(listing)


# -- each loss's own params (train.loss_params), checked here for stages.lib.losses --------------------------------


def test_loss_params_get_defaults():
    assert loss_settings.validate_loss_params("gce", None) == {"q": 0.7}
    assert loss_settings.validate_loss_params("gce", {"q": 1}) == {"q": 1.0}
    assert loss_settings.validate_loss_params("sce", {"beta": 0.5}) == {"alpha": 0.1, "beta": 0.5}
    assert loss_settings.validate_loss_params("bootstrap", {}) == {"mode": "soft", "beta": 0.95}
    assert loss_settings.validate_loss_params("bootstrap", {"mode": "hard"}) == {
        "mode": "hard",
        "beta": 0.8,
    }
    assert loss_settings.validate_loss_params("bce", {}) == {}


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("focal", {}, r"train\.losses: unknown loss 'focal'; allowed: bce, l1"),
        ("gce", {"q": 1.5}, r"train\.loss_params\.gce\.q = 1\.5: must be in \(0, 1\]"),
        ("gce", {"q": 0}, r"train\.loss_params\.gce\.q = 0\.0"),
        ("gce", {"q": "0.7"}, r"train\.loss_params\.gce\.q = '0\.7'"),
        ("gce", {"q": True}, r"train\.loss_params\.gce\.q = True"),
        (
            "gce",
            {"qq": 0.5},
            r"train\.loss_params\.gce\.qq: unknown parameter; allowed: q",
        ),
        ("bce", {"q": 0.5}, r"train\.loss_params\.bce\.q: unknown .* allowed: none"),
        ("sce", {"alpha": -1}, r"train\.loss_params\.sce\.alpha = -1\.0: must be >= 0"),
        ("sce", {"alpha": 0, "beta": 0}, r"train\.loss_params\.sce\.alpha/beta"),
        ("sce", {"beta": float("nan")}, r"train\.loss_params\.sce\.beta = nan"),
        ("bootstrap", {"mode": "medium"}, r"bootstrap\.mode = 'medium'.*soft, hard"),
        ("bootstrap", {"beta": 1.2}, r"train\.loss_params\.bootstrap\.beta = 1\.2"),
        (
            "ls",
            {"smoothing": 1.0},
            r"train\.loss_params\.ls\.smoothing = 1\.0: .*\[0, 1\)",
        ),
        ("ls", [0.1], r"train\.loss_params\.ls = \[0\.1\]: must be a mapping"),
    ],
)
def test_bad_loss_params_are_user_errors(name, params, match):
    with pytest.raises(UserError, match=match):
        loss_settings.validate_loss_params(name, params)
    # stages.lib.losses takes checked params and does not check them again; an unknown loss is a programming
    # error there.
    if name == "focal":
        with pytest.raises(ValueError, match="loss 'focal'"):
            make_loss(name, "binary", params)


# Issue 13: label sets, detect's folds, forward's estimated T, given noise labels.


def test_train_labels_default_and_pruned(repo_params: dict[str, Any]) -> None:
    assert loss_settings.train_params(repo_params).labels == ("clean", "noisy")
    raw = copy.deepcopy(repo_params)
    raw["train"]["labels"] = ["noisy", "pruned"]
    assert loss_settings.train_params(raw).labels == ("noisy", "pruned")


@pytest.mark.parametrize("labels", [["clean", "cleaned"], [], ["noisy", "noisy"], "noisy"])
def test_train_labels_refuses_unknown_empty_repeated(repo_params: dict[str, Any], labels: Any) -> None:
    raw = copy.deepcopy(repo_params)
    raw["train"]["labels"] = labels
    with pytest.raises(UserError, match=r"^train\.labels"):
        loss_settings.train_params(raw)


@pytest.mark.parametrize(("folds", "ok"), [(2, True), (5, True), (1, False), (2.5, False), (True, False)])
def test_detect_folds(repo_params: dict[str, Any], folds: Any, ok: bool) -> None:
    raw = copy.deepcopy(repo_params)
    raw["detect"]["folds"] = folds
    if ok:
        assert core_params.detect_folds(raw) == folds
    else:
        with pytest.raises(UserError, match=r"^detect\.folds"):
            core_params.detect_folds(raw)


def test_forward_transition_sources() -> None:
    assert loss_settings.validate_loss_params("forward", {"T": "estimated"})["T"] == "estimated"
    assert loss_settings.validate_loss_params("forward", {"T": True})["T"] == "true"
    with pytest.raises(UserError, match=r"^train\.loss_params\.forward\.T = 'anchor'"):
        loss_settings.validate_loss_params("forward", {"T": "anchor"})


def test_noise_labels_only_with_given_and_absolute(repo_params: dict[str, Any]) -> None:
    raw = copy.deepcopy(repo_params)
    raw["noise_labels"] = "/data/worse_label.csv"
    with pytest.raises(UserError, match=r"^noise_labels = .*only used with noise_type = given"):
        core_params.noise_params(raw)
    raw["noise_type"] = "given"
    assert core_params.noise_params(raw).labels_file == "/data/worse_label.csv"
    for bad in (None, "relative/labels.csv", 3):
        raw["noise_labels"] = bad
        with pytest.raises(UserError, match=r"^noise_labels = .*absolute path"):
            core_params.noise_params(raw)


# Issue 23: every variant's grid (train.tune), the selection score, detect's L2 strengths.


def test_every_loss_of_the_repository_gets_a_grid_of_the_same_size(repo_params: dict[str, Any]) -> None:
    raw = with_value(repo_params, "train.losses", list(loss_settings.LOSS_NAMES))
    settings = loss_settings.train_params(raw)
    sizes = {loss: len(settings.grid(loss)) for loss in loss_settings.LOSS_NAMES}
    assert set(sizes.values()) == {10}, sizes
    gce = settings.grid("gce")
    assert {(point.l2, point.loss_params["q"]) for point in gce} == {
        (l2, q) for l2 in raw["train"]["tune"]["gce"]["l2"] for q in raw["train"]["tune"]["gce"]["q"]
    }
    assert gce[0].tuned == {"l2": gce[0].l2, "q": gce[0].loss_params["q"]}
    # Values not tuned come from loss_params: sce's beta, bootstrap's mode.
    assert {point.loss_params["beta"] for point in settings.grid("sce")} == {1.0}
    assert {point.loss_params["mode"] for point in settings.grid("bootstrap")} == {"soft"}
    assert settings.select_score == "noisy"


@pytest.mark.parametrize(
    ("tune", "match"),
    [
        ({"bce": {"l2": [0.1, 0.2]}, "l1": {"l2": [0.1]}}, r"^train\.tune: the grids differ in size \(bce 2, l1 1\)"),
        ({"bce": {"l2": [0.1]}}, r"^train\.tune has no entry for l1"),
        ({"bce": {"l2": [0.1]}, "l1": {"l2": [-1]}}, r"^train\.tune\.l1\.l2 = \[-1\]"),
        ({"bce": {"l2": [0.1, 0.1]}, "l1": {"l2": [0.1]}}, r"^train\.tune\.bce\.l2 = \[0\.1, 0\.1\]: .*distinct"),
        ({"bce": {"l2": [0.1], "q": [0.5]}, "l1": {"l2": [0.1]}}, r"^train\.tune\.bce = .*own params \(none\)"),
        ({"bce": {"q": [0.5]}, "l1": {"l2": [0.1]}}, r"^train\.tune\.bce = .*must set l2"),
        ({"focal": {"l2": [0.1]}}, r"^train\.tune: unknown loss 'focal'"),
    ],
)
def test_bad_grids_are_user_errors(repo_params: dict[str, Any], tune: dict, match: str) -> None:
    raw = with_value(repo_params, "train.tune", tune)
    with pytest.raises(UserError, match=match):
        loss_settings.train_params(raw)


def test_a_param_tuned_and_fixed_at_once_is_refused(repo_params: dict[str, Any]) -> None:
    raw = with_value(repo_params, "train.loss_params", {"gce": {"q": 0.5}})
    with pytest.raises(UserError, match=r"^train\.loss_params\.gce\.q and train\.tune\.gce\.q are both set"):
        loss_settings.train_params(raw)


def test_select_score_choices_and_no_grid_without_a_validation_set(repo_params: dict[str, Any]) -> None:
    for score in core_params.SELECT_SCORES:
        assert loss_settings.train_params(with_value(repo_params, "train.select_score", score)).select_score == score
    with pytest.raises(UserError, match=r"^train\.select_score = 'oracle': must be one of noisy"):
        loss_settings.train_params(with_value(repo_params, "train.select_score", "oracle"))
    # Without a validation set nothing can choose: one untuned point, l2 0 and loss_params' values.
    (point,) = loss_settings.train_params(with_value(repo_params, "train.losses", ["gce"])).grid(
        "gce", validating=False
    )
    assert point.l2 is None and point.loss_params == {"q": 0.7} and point.tuned == {}  # λ 1/N: stages.lib.train.head


def test_detect_l2(repo_params: dict[str, Any]) -> None:
    assert core_params.detect_l2(repo_params) == tuple(repo_params["detect"]["l2"])
    raw = copy.deepcopy(repo_params)
    del raw["detect"]["l2"]
    assert core_params.detect_l2(raw) == core_params.DEFAULT_DETECT_L2
    for bad in ([0.0, 1.0], [], "1", [True]):
        raw["detect"]["l2"] = bad
        with pytest.raises(UserError, match=r"^detect\.l2 = "):
            core_params.detect_l2(raw)


def test_a_positive_class_written_as_a_number_is_the_folder_of_that_name() -> None:
    # The README's `dvc exp run -S data.positive_class=8` writes the integer 8: the digits folder is named `8`.
    raw = core_params.load_params()
    raw["data"]["positive_class"] = 8
    assert core_params.data_params(raw).positive_class == "8"
    raw["data"]["positive_class"] = True
    with pytest.raises(UserError, match=r"^data.positive_class = True: must be a non-empty string$"):
        core_params.data_params(raw)


def test_a_key_set_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """Issue 30 case 8: PyYAML keeps the last of two `noise:` lines without a word (DVC's parser refuses them)."""
    twice = tmp_path / "params.yaml"
    twice.write_text("seed: 0\nnoise: 0.5\ndata:\n  image_size: 32\nnoise: 0.3\n")
    with pytest.raises(UserError) as caught:
        core_params.load_params(twice)
    assert str(caught.value) == f"{twice}: noise is set twice, on lines 2 and 5; delete one of them"
    nested = tmp_path / "nested.yaml"
    nested.write_text("data:\n  image_size: 32\n  image_size: 64\n")
    with pytest.raises(UserError, match="image_size is set twice, on lines 2 and 3"):
        core_params.load_params(nested)
    merged = tmp_path / "merged.yaml"  # a merge key overridden is not a duplicate
    merged.write_text("base: &base {a: 1, b: 2}\nother:\n  <<: *base\n  b: 3\n")
    assert core_params.load_params(merged)["other"] == {"a": 1, "b": 3}
