"""Every bad params.yaml a user might write, in one table: each is refused by the check the first stage of
`dvc repro` runs (stages/fingerprint.py: every param, the losses' own, and the files data.source and
model.weights name), in-process, with ONE line that names the param, its value and what is allowed; params.yaml
is left as the user wrote it and nothing is written.

The command-line contract of those messages (exit status 2, the one `<stage>: error: ...` line, no traceback),
once per stage, and the checks that need the prepared data: tests/e2e/test_validation_cli.py. Arbitrary values
anywhere: tests/unit/test_params_properties.py; each section function: tests/unit/test_params.py.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stages import fingerprint
from stages.lib.core.errors import UserError, one_line
from toolkit.project import PROJECT_ROOT, SMALL_PARAMS, deep_update
from toolkit.synthetic import make_flower_folder

DELETE = object()  # in an update: remove that key from params.yaml

BAD_PARAMS = {
    # wrong types
    "noise is text": ({"noise": "lots"}, ["noise = 'lots'", "must be a number"]),
    "noise is a bool": ({"noise": True}, ["noise = True", "must be a number"]),
    "noise is nan": ({"noise": float("nan")}, ["noise = nan", "must be a number"]),
    "noise infinite": ({"noise": float("inf")}, ["noise = inf", "must be a number"]),
    "seed is a float": ({"seed": 1.5}, ["seed = 1.5", "must be an integer"]),
    "image_size is text": ({"data": {"image_size": "large"}}, ["data.image_size = 'large'", "must be an integer"]),
    "seeds is a string": ({"train": {"seeds": "0,1"}}, ["train.seeds = '0,1'"]),
    "losses is a string": ({"train": {"losses": "bce"}}, ["train.losses = 'bce'", "non-empty list"]),
    "fine_tune is text": ({"model": {"fine_tune": "yes"}}, ["model.fine_tune = 'yes'", "true or false"]),
    "gce q is a bool": (
        {"train": {"losses": ["bce", "gce"], "loss_params": {"gce": {"q": True}}}},
        ["train.loss_params.gce.q = True", "finite number"],
    ),
    "a section is a string": ({"data": "flowers"}, ["data = 'flowers'", "must be a mapping"]),
    "class rates a list": (
        {"noise_type": "asymmetric", "noise_class_rates": [0.1]},
        ["noise_class_rates = [0.1]", "mapping of class name to rate"],
    ),
    "labels hold a list": ({"train": {"labels": [["clean"]]}}, ["train.labels: unknown label set ['clean']"]),
    "source is a number": ({"data": {"source": 5}}, ["data.source = 5", "non-empty string"]),
    "source is empty": ({"data": {"source": ""}}, ["data.source = ''", "non-empty string"]),
    # out of range
    "noise above 1": ({"noise": 1.5}, ["noise = 1.5", "in [0.0, 1.0]"]),
    "noise below 0": ({"noise": -0.1}, ["noise = -0.1", "in [0.0, 1.0]"]),
    "noise a huge integer": ({"noise": 10**400}, ["noise = 1000", "in [0.0, 1.0]"]),
    "a class rate above 1": (
        {"noise_type": "asymmetric", "noise_class_rates": {"sunflowers": 1.2}},
        ["noise_class_rates.sunflowers = 1.2", "in [0, 1]"],
    ),
    "learning rate 0": ({"train": {"learning_rate": 0}}, ["train.learning_rate = 0", "(0.0, 10.0]"]),
    "gce q 2": (
        {"train": {"losses": ["bce", "gce"], "loss_params": {"gce": {"q": 2}}}},
        ["train.loss_params.gce.q = 2.0", "in (0, 1]"],
    ),
    "gce q a huge integer": (
        {"train": {"loss_params": {"gce": {"q": 10**400}}}},
        ["train.loss_params.gce.q = 1000", "finite number"],
    ),
    "epochs 0": ({"train": {"epochs": 0}}, ["train.epochs = 0", ">= 1"]),
    "image_size 16": ({"data": {"image_size": 16}}, ["data.image_size = 16", "in [32, 1024]"]),
    "train_size 0": ({"data": {"train_size": 0}}, ["data.train_size = 0", ">= 1"]),
    "negative val_size": ({"data": {"val_size": -5}}, ["data.val_size = -5", ">= 0"]),
    "trainable_blocks 17": ({"model": {"trainable_blocks": 17}}, ["model.trainable_blocks = 17", "[0, 16]"]),
    "folds 1": ({"detect": {"folds": 1}}, ["detect.folds = 1", "in [2, 100]"]),
    "smoothing 1": (
        {"train": {"loss_params": {"ls": {"smoothing": 1.0}}}},
        ["train.loss_params.ls.smoothing = 1.0", "in [0, 1)"],
    ),
    "seed -1": ({"seed": -1}, ["seed = -1", "[0, 2147483647]"]),
    "seed 2**31": ({"seed": 2**31}, ["seed = 2147483648", "[0, 2147483647]"]),
    "embed batch 0": ({"model": {"embed_batch_size": 0}}, ["model.embed_batch_size = 0", "in [1, 4096]"]),
    # missing, unknown keys and choices
    "epochs missing": ({"train": {"epochs": DELETE}}, ["train.epochs is missing from params.yaml"]),
    "typo at the top": ({"nosie": 0.5}, ["nosie: unknown param in params.yaml", "did you mean noise?"]),
    "typo in a section": ({"train": {"epoch": 5}}, ["train.epoch: unknown param", "did you mean train.epochs?"]),
    "unknown loss's params": ({"train": {"loss_params": {"focal": {}}}}, ["train.loss_params: unknown loss 'focal'"]),
    "unknown gce param": (
        {"train": {"loss_params": {"gce": {"qq": 1}}}},
        ["train.loss_params.gce.qq: unknown parameter", "allowed: q"],
    ),
    "loss param keys of two types": (
        {"train": {"loss_params": {"ls": {"smoothing": 0.1, 1: 2, "x": 3}}}},
        ["train.loss_params.ls.1: unknown parameter"],
    ),
    "unknown noise_type": (
        {"noise_type": "uniform"},
        ["noise_type = 'uniform'", "symmetric, asymmetric, notebook, given"],
    ),
    "unknown task": ({"task": "regression"}, ["task = 'regression'", "binary, multiclass"]),
    "unknown loss": (
        {"train": {"losses": ["bce", "focal"]}},
        ["train.losses: unknown loss 'focal'", "allowed: bce, l1, gce"],
    ),
    "unknown label set": ({"train": {"labels": ["clean", "dirty"]}}, ["unknown label set 'dirty'"]),
    "unknown select_epoch": (
        {"train": {"select_epoch": "best"}},
        ["train.select_epoch = 'best'", "must be one of last, val"],
    ),
    "unknown select_score": (
        {"train": {"select_score": "oracle"}},
        ["train.select_score = 'oracle'", "noisy, corrected_true"],
    ),
    "unknown metric": ({"evaluate": {"metric": "f1"}}, ["evaluate.metric = 'f1'", "balanced_accuracy"]),
    "unknown bootstrap mode": (
        {"train": {"loss_params": {"bootstrap": {"mode": "medium"}}}},
        ["train.loss_params.bootstrap.mode = 'medium'", "soft, hard"],
    ),
    "unknown forward T": (
        {"train": {"loss_params": {"forward": {"T": "guessed"}}}},
        ["train.loss_params.forward.T = 'guessed'", "true, estimated"],
    ),
    "unknown mixed_precision": ({"train": {"mixed_precision": "fp16"}}, ["train.mixed_precision = 'fp16'"]),
    "grids of two sizes": (
        {"train": {"tune": {"bce": {"l2": [0.1]}}}},
        ["train.tune: the grids differ in size (bce 1, l1 10)"],
    ),
    # empty and duplicate lists
    "no losses": ({"train": {"losses": []}}, ["train.losses = []", "non-empty list"]),
    "no label sets": ({"train": {"labels": []}}, ["train.labels = []", "non-empty list"]),
    "no seeds": ({"train": {"seeds": []}}, ["train.seeds = []", "non-empty list"]),
    "a loss twice": ({"train": {"losses": ["bce", "bce"]}}, ["train.losses = ['bce', 'bce']", "once"]),
    "a label set twice": ({"train": {"labels": ["noisy", "noisy"]}}, ["train.labels = ['noisy', 'noisy']"]),
    "a seed twice": ({"train": {"seeds": [0, 0]}}, ["train.seeds = [0, 0]", "distinct integers"]),
    # impossible combinations
    "select on val without val": (
        {"data": {"val_size": 0}, "model": {"fine_tune": True}},
        ["train.select_epoch = val needs a validation set", "data.val_size = 0"],
    ),
    "class rates with symmetric": (
        {"noise_class_rates": {"sunflowers": 0.4}},
        ["noise_class_rates = {'sunflowers': 0.4}", "only used with noise_type = asymmetric"],
    ),
    "rate of an unknown class": (
        {"noise_type": "asymmetric", "noise_class_rates": {"orchids": 0.2}},
        ["noise_class_rates: unknown class 'orchids'", "allowed: not_sunflowers, sunflowers"],
    ),
    "given without a file": ({"noise_type": "given"}, ["noise_labels = None", "noise_type = given needs"]),
    "a file without given": ({"noise_labels": "/tmp/labels.csv"}, ["noise_labels = '/tmp/labels.csv'"]),
    "macro_f1 on binary": ({"evaluate": {"metric": "macro_f1"}}, ["evaluate.metric = macro_f1", "multiclass"]),
    "augment without fine-tuning": ({"train": {"augment": True}}, ["train.augment = true", "fine_tune"]),
    # the files params name
    "weights not there": ({"model": {"weights": "/nonexistent/w.h5"}}, ["model.weights = '/nonexistent/w.h5'"]),
    "source not there": ({"data": {"source": "/nonexistent/flowers"}}, ["data.source = '/nonexistent/flowers'"]),
}
# Whole files that are not a params file at all.
BAD_PARAMS_FILES = {
    "not YAML": (b"noise: [0.3\nseed: 0\n", ["params.yaml is not valid YAML"]),
    "not UTF-8": ("noise: 0.3  # réglé\n".encode("latin-1"), ["params.yaml is not UTF-8 text"]),
    "a list": (b"- noise\n- seed\n", ["params.yaml must hold a mapping of params, found list"]),
    "empty": (b"", ["params.yaml must hold a mapping of params, found NoneType"]),
    "an integer too long": (b"seed: " + b"9" * 5000 + b"\n", ["params.yaml is not valid YAML"]),
    "a key twice": (b"seed: 0\nnoise: 0.3\nnoise: 0.5\n", ["params.yaml: noise is set twice, on lines 2 and 3"]),
}


def apply(params: dict, updates: dict) -> dict:
    """params with updates merged in (DELETE removes a key), a copy."""
    params = deep_update(copy.deepcopy(params), updates)

    def prune(node: dict) -> None:
        for key in [k for k, v in node.items() if v is DELETE]:
            del node[key]
        for value in node.values():
            if isinstance(value, dict):
                prune(value)

    prune(params)
    return params


@pytest.fixture(scope="module")
def good_params(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The project's params.yaml as the e2e tests set it up (tests/e2e, toolkit.project.SMALL_PARAMS), reading
    a small folder of images: the check accepts it."""
    folder = make_flower_folder(tmp_path_factory.mktemp("images") / "flower_photos", per_class=2, size=32)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    return deep_update(deep_update(params, SMALL_PARAMS), {"data": {"source": str(folder)}})


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project root to run the check in: params.yaml goes here, nothing else may appear."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]  # no fingerprint written


def refused_in_one_line(workdir: Path, content: bytes, expected: list[str]) -> None:
    params_file = workdir / "params.yaml"
    params_file.write_bytes(content)
    with pytest.raises(UserError) as refused:
        fingerprint.main()
    message = one_line(refused.value)  # the line the stage prints (stages.lib.core.errors.run_stage)
    for text in expected:
        assert text in message, message
    assert params_file.read_bytes() == content  # as the user wrote it


def test_the_good_params_pass(workdir: Path, good_params: dict[str, Any]) -> None:
    (workdir / "params.yaml").write_text(yaml.safe_dump(good_params, sort_keys=False))
    fingerprint.main()
    assert (workdir / "data/fingerprints/source.json").is_file()
    shutil.rmtree(workdir / "data")  # what a good run writes; the fixture checks that bad ones write nothing


@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_bad_param(workdir: Path, good_params: dict[str, Any], case: str) -> None:
    updates, expected = BAD_PARAMS[case]
    content = yaml.safe_dump(apply(good_params, updates), sort_keys=False).encode()
    refused_in_one_line(workdir, content, expected)


@pytest.mark.parametrize("case", list(BAD_PARAMS_FILES))
def test_bad_params_file(workdir: Path, case: str) -> None:
    content, expected = BAD_PARAMS_FILES[case]
    refused_in_one_line(workdir, content, expected)
