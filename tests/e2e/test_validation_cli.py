"""Bad params and bad inputs, through the real command line: `python -m stages.<name>` must fail at once
with exit status 2 and ONE line on stderr, `<stage>: error: ...`, naming the param, its value and what
is allowed — no traceback, no TensorFlow chatter, no progress bar (so no work was started).
"""

from __future__ import annotations

import copy
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from toolkit.project import deep_update, make_project, params_kept, run

DELETE = object()  # in an update: remove that key from params.yaml
TRAIN = ("train", "--loss", "bce", "--labels", "clean")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, flower_folder: Path) -> Path:
    """A project copy with data/raw and data/prepared made from good params (60 train, 60 test, 32 px)."""
    repo = make_project(tmp_path_factory.mktemp("validation") / "project", flower_folder)
    run(repo, sys.executable, "-m", "stages.download")
    run(repo, sys.executable, "-m", "stages.subsample")
    return repo


@pytest.fixture
def base_params(workspace: Path) -> Any:
    """The workspace's good params; restored after each test, whatever the test wrote."""
    with params_kept(workspace) as params:
        yield params


def apply(params: dict, updates: dict) -> dict:
    params = deep_update(copy.deepcopy(params), updates)

    def prune(node: dict) -> None:
        for key in [k for k, v in node.items() if v is DELETE]:
            del node[key]
        for value in node.values():
            if isinstance(value, dict):
                prune(value)

    prune(params)
    return params


def run_stage(repo: Path, stage: str | tuple[str, ...]) -> Any:
    args = (stage,) if isinstance(stage, str) else stage
    return run(repo, sys.executable, "-m", f"stages.{args[0]}", *args[1:], check=False)


def fails_in_one_line(repo: Path, stage: str | tuple[str, ...]) -> str:
    """Run the stage; assert exit status 2 and a single `<stage>: error:` line on stderr; return it."""
    name = stage if isinstance(stage, str) else stage[0]
    result = run_stage(repo, stage)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith(f"{name}: error: "), lines[0]
    return lines[0]


def write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


BAD_PARAMS = [
    # (stage, params.yaml updates, text the error line must contain)
    ("corrupt", {"noise": 1.5}, ["noise = 1.5", "in [0.0, 1.0]"]),
    ("corrupt", {"noise": -0.1}, ["noise = -0.1", "in [0.0, 1.0]"]),
    ("corrupt", {"noise": "lots"}, ["noise = 'lots'", "must be a number"]),
    ("corrupt", {"noise": True}, ["noise = True", "must be a number"]),
    ("corrupt", {"noise": float("nan")}, ["noise = nan", "must be a number"]),
    ("corrupt", {"noise_type": "uniform"}, ["noise_type = 'uniform'", "symmetric, asymmetric, notebook, given"]),
    (
        "corrupt",
        {"noise_class_rates": {"sunflowers": 0.4}},
        ["noise_class_rates = {'sunflowers': 0.4}", "only used with noise_type = asymmetric"],
    ),
    (
        "corrupt",
        {"noise_type": "asymmetric", "noise_class_rates": {"orchids": 0.2}},
        ["noise_class_rates: unknown class 'orchids'", "allowed: not_sunflowers, sunflowers"],
    ),
    (
        "corrupt",
        {"noise_type": "asymmetric", "noise_class_rates": {"sunflowers": 1.2}},
        ["noise_class_rates.sunflowers = 1.2", "in [0, 1]"],
    ),
    # Every stage checks every param: a bad noise fails the very first stage, not the third.
    ("download", {"noise": 2}, ["noise = 2", "in [0.0, 1.0]"]),
    (TRAIN, {"train": {"losses": ["bce", "focal"]}}, ["train.losses: unknown loss 'focal'", "allowed: bce, l1, gce"]),
    # The losses' own params: the stages that use a loss check them, the fingerprint stage (first on every
    # `dvc repro`) before all; download, subsample, corrupt and embed do not import the losses.
    ("fingerprint", {"train": {"losses": ["bce", "focal"]}}, ["unknown loss 'focal'"]),
    ("evaluate", {"train": {"losses": ["bce", "bce"]}}, ["train.losses = ['bce', 'bce']", "once"]),
    (
        TRAIN,
        {"train": {"losses": ["bce", "gce"], "loss_params": {"gce": {"q": 2}}}},
        ["train.loss_params.gce.q = 2.0", "in (0, 1]"],
    ),
    ("fingerprint", {"train": {"loss_params": {"gce": {"qq": 1}}}}, ["train.loss_params.gce.qq: unknown parameter"]),
    (TRAIN, {"train": {"epochs": 0}}, ["train.epochs = 0", ">= 1"]),
    (TRAIN, {"train": {"learning_rate": 0}}, ["train.learning_rate = 0", "(0.0, 10.0]"]),
    (TRAIN, {"train": {"seeds": [0, 0]}}, ["train.seeds = [0, 0]", "distinct integers"]),
    (TRAIN, {"train": {"epochs": DELETE}}, ["train.epochs is missing from params.yaml"]),
    (TRAIN, {"train": {"select_epoch": "best"}}, ["train.select_epoch = 'best'", "must be one of last, val"]),
    (TRAIN, {"train": {"tune": {"bce": {"l2": [0.1]}}}}, ["train.tune: the grids differ in size (bce 1, l1 10)"]),
    ("detect", {"train": {"select_score": "oracle"}}, ["train.select_score = 'oracle'", "noisy, corrected_true"]),
    (
        "subsample",
        {"data": {"val_size": 0}, "model": {"fine_tune": True}},
        ["train.select_epoch = val needs a validation set", "data.val_size = 0"],
    ),
    ("subsample", {"data": {"val_size": -5}}, ["data.val_size = -5", ">= 0"]),
    ("subsample", {"seed": -1}, ["seed = -1", "[0, 2147483647]"]),
    ("subsample", {"task": "regression"}, ["task = 'regression'", "binary, multiclass"]),
    # Data-dependent checks are made from the folder scan, before decoding (one line: no progress bar).
    (
        "subsample",
        {"data": {"positive_class": "orchids"}},
        ["data.positive_class = 'orchids'", "classes: daisy, dandelion, roses, sunflowers, tulips"],
    ),
    ("subsample", {"data": {"train_size": 500}}, ["data.train_size = 500", "120 image files"]),
    (
        "subsample",
        {"data": {"train_size": 60, "test_size": 100}},
        ["data.train_size = 60 + data.val_size = 20 + data.test_size = 100", "120 image files"],
    ),
    ("subsample", {"data": {"train_size": 0}}, ["data.train_size = 0", ">= 1"]),
    ("subsample", {"data": {"image_size": 16}}, ["data.image_size = 16", "in [32, 1024]"]),
    ("embed", {"data": {"image_size": "large"}}, ["data.image_size = 'large'", "must be an integer"]),
    ("download", {"data": {"source": "/nonexistent/flower_photos"}}, ["data.source = '/nonexistent/flower_photos'"]),
    ("download", {"data": {"source": ""}}, ["data.source = ''", "non-empty string"]),
    ("embed", {"model": {"weights": "/nonexistent/resnet50.h5"}}, ["model.weights = '/nonexistent/resnet50.h5'"]),
    ("embed", {"model": {"embed_batch_size": 0}}, ["model.embed_batch_size = 0", "in [1, 4096]"]),
    # Typos: a key no stage reads would otherwise be ignored, silently.
    ("download", {"nosie": 0.5}, ["nosie: unknown param in params.yaml", "did you mean noise?"]),
    ("corrupt", {"data": {"trainsize": 50}}, ["data.trainsize: unknown param", "did you mean data.train_size?"]),
    ("evaluate", {"train": "fast"}, ["train = 'fast'", "must be a mapping"]),
]


@pytest.mark.parametrize("stage,updates,expected", BAD_PARAMS)
def test_bad_param_fails_in_one_line(
    workspace: Path, base_params: dict, stage: str | tuple[str, ...], updates: dict, expected: list[str]
) -> None:
    write_params(workspace, apply(base_params, updates))
    line = fails_in_one_line(workspace, stage)
    for text in expected:
        assert text in line, line


def test_params_file_that_is_not_yaml(workspace: Path, base_params: dict) -> None:
    (workspace / "params.yaml").write_text("noise: [0.3\nseed: 0\n")
    assert "params.yaml is not valid YAML" in fails_in_one_line(workspace, "corrupt")


def test_positive_class_is_checked_before_decoding(workspace: Path, base_params: dict) -> None:
    write_params(workspace, apply(base_params, {"data": {"positive_class": "orchids"}}))
    result = run_stage(workspace, "subsample")
    assert "decode" not in result.stderr  # the progress bar never started


def test_task_other_than_the_prepared_data(workspace: Path, base_params: dict) -> None:
    write_params(workspace, apply(base_params, {"task": "multiclass"}))
    line = fails_in_one_line(workspace, TRAIN)
    assert "task = 'multiclass', but data/prepared was prepared for task 'binary'" in line


def test_hand_edited_labels_table(workspace: Path, base_params: dict) -> None:
    table = workspace / "data/prepared/labels.csv"
    original = table.read_text()
    try:
        lines = original.splitlines()
        header, first = lines[0].split(","), lines[1].split(",")
        first[header.index("label")] = "7"
        table.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
        line = fails_in_one_line(workspace, "corrupt")
    finally:
        table.write_text(original)
    assert "data/prepared/labels.csv: labels must be integers in [0, 1]" in line


@pytest.mark.parametrize("kind", ["empty folder", "no images", "empty archive", "not an archive"])
def test_source_without_images(workspace: Path, base_params: dict, tmp_path: Path, kind: str) -> None:
    source = tmp_path / "flower_photos"
    source.mkdir()
    if kind == "no images":
        (source / "LICENSE.txt").write_text("license\n")
        (source / "daisy").mkdir()
        (source / "daisy" / "notes.txt").write_text("not a photo\n")
    if kind == "empty archive":
        (source / "LICENSE.txt").write_text("license\n")
        with tarfile.open(tmp_path / "flowers.tgz", "w:gz") as tar:
            tar.add(source, arcname="flower_photos")
        source = tmp_path / "flowers.tgz"
    if kind == "not an archive":
        source = tmp_path / "flowers.tgz"
        source.write_text("this is not gzip\n")
    write_params(workspace, apply(base_params, {"data": {"source": str(source)}}))
    line = fails_in_one_line(workspace, "download")
    assert f"data.source = '{source}'" in line
    assert ("cannot unpack the archive" if kind == "not an archive" else "holds no images") in line
    assert (workspace / "data/raw/daisy").is_dir()  # the earlier download is untouched


def make_weights(path: Path, architecture: str) -> Path:
    """A Keras weights file: a ResNet50 no-top (with a seed the stage does not use) or a tiny other model."""
    import keras

    keras.utils.set_random_seed(12345)
    if architecture == "resnet50":
        model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    else:
        model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten()])
    model.save_weights(path)
    return path


def test_weights_file_that_does_not_fit(workspace: Path, base_params: dict, tmp_path: Path) -> None:
    weights = make_weights(tmp_path / "tiny.weights.h5", "tiny")
    shutil.rmtree(workspace / "data/features", ignore_errors=True)
    write_params(workspace, apply(base_params, {"model": {"weights": str(weights)}}))
    line = fails_in_one_line(workspace, "embed")
    assert f"model.weights = '{weights}': the file does not fit ResNet50 without its top" in line
    assert not (workspace / "data/features/train.npy").exists()


def test_weights_file_that_is_not_hdf5(workspace: Path, base_params: dict, tmp_path: Path) -> None:
    weights = tmp_path / "resnet50.weights.h5"
    weights.write_text("not an HDF5 file\n")
    write_params(workspace, apply(base_params, {"model": {"weights": str(weights)}}))
    assert "does not fit ResNet50" in fails_in_one_line(workspace, "embed")


def test_weights_file_that_fits_is_used(workspace: Path, base_params: dict, tmp_path: Path) -> None:
    """The stage's features are the ones the file's weights give, not those of a random init."""
    import keras

    from stages.lib.backbone import preprocess

    weights = make_weights(tmp_path / "resnet50.weights.h5", "resnet50")
    write_params(workspace, apply(base_params, {"model": {"weights": str(weights)}}))
    result = run_stage(workspace, "embed")
    assert result.returncode == 0, result.stderr
    features = np.load(workspace / "data/features/test.npy")
    images = np.load(workspace / "data/prepared/test_images.npy")
    model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    model.load_weights(weights)
    expected = np.asarray(model.predict_on_batch(preprocess(images)))
    assert features.shape == (40, 2048)  # 120 images: 60 train, 20 validate, 40 test
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
