"""Bad params and bad inputs through the stages, on a prepared project (tests/e2e/conftest.py: a copy of
`prepared_project`: the data, the noisy labels and the features made from good params).

- The command line, once per stage: `python -m stages.<name>` fails at once with exit status 2 and ONE line
  on stderr, `<stage>: error: ...`, naming the param — no traceback, no TensorFlow chatter, no progress bar
  (so no work was started). Every stage checks every param, not only its own.
- The checks that need the prepared data (the classes and image count found, the labels table, a class's
  size, the task the data was prepared for), in-process: each stage's main() raises the one-line UserError.
  The messages of the checks that need no data: tests/unit/test_bad_params.py.
- A weights file that does not fit ResNet50, or is no HDF5 file, fails in one line; one that fits is used.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stages.lib.core.errors import UserError, one_line
from toolkit.project import copy_project, params_kept, run, write_params

TRAIN_ARGS = ("--loss", "bce", "--labels", "clean")

# One case per stage: (params.yaml updates, what the error line names).
PER_STAGE = {
    "fingerprint": ({"data": {"source": "/nonexistent/flowers"}}, "data.source = '/nonexistent/flowers'"),
    "download": ({"noise": 2}, "noise = 2"),  # not a param download reads: every stage checks every param
    # From the folder scan, before decoding: a progress bar would be a second line.
    "subsample": ({"data": {"positive_class": "orchids"}}, "data.positive_class = 'orchids'"),
    "corrupt": ({"noise_type": "given", "noise_labels": "/nonexistent/labels.csv"}, "noise_labels = "),
    "embed": ({"model": {"embed_batch_size": 0}}, "model.embed_batch_size = 0"),  # before TensorFlow loads
    "detect_clean": ({"detect": {"folds": 1}}, "detect.folds = 1"),
    "detect": ({"train": {"select_score": "oracle"}}, "train.select_score = 'oracle'"),
    "train": ({"task": "multiclass"}, "prepared for task 'binary'"),
    "evaluate": ({"train": {"losses": ["bce", "bce"]}}, "train.losses = ['bce', 'bce']"),
}

# Checks that need the data, in the stage that reads it: (stage, updates, texts the message holds).
NEEDS_THE_DATA = {
    "positive class not in the data": (
        "subsample",
        {"data": {"positive_class": "orchids"}},
        ["data.positive_class = 'orchids'", "classes: daisy, dandelion, roses, sunflowers, tulips"],
    ),
    "more training images than there are": (
        "subsample",
        {"data": {"train_size": 500}},
        ["data.train_size = 500", "120 image files"],
    ),
    "the three sets more than there are": (
        "subsample",
        {"data": {"train_size": 60, "test_size": 100}},
        ["data.train_size = 60 + data.val_size = 20 + data.test_size = 100", "120 image files"],
    ),
    "given labels not there": (
        "corrupt",
        {"noise_type": "given", "noise_labels": "/nonexistent/labels.csv"},
        ["noise_labels = /nonexistent/labels.csv", "file not found"],
    ),
    "given labels not a CSV": (
        "corrupt",
        {"noise_type": "given", "noise_labels": "{binary}"},
        ["noise_labels = {binary}", "not a readable CSV"],
    ),
    "more folds than a class has": (
        "detect",
        {"detect": {"folds": 50}, "train": {"labels": ["clean", "noisy", "pruned"]}},
        ["detect.folds = 50", "a class has only"],
    ),
    "another task than prepared": (
        "train",
        {"task": "multiclass"},
        ["task = 'multiclass', but data/prepared was prepared for task 'binary'"],
    ),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, prepared_project: Path) -> Path:
    """A copy of the prepared project (120 images at 32 px: 60 train, 20 validate, 40 test), and beside it a
    file that is neither a CSV nor UTF-8."""
    repo = copy_project(prepared_project, tmp_path_factory.mktemp("validation") / "project")
    (repo.parent / "labels.bin").write_bytes(bytes(range(256)) * 4)
    return repo


@pytest.fixture
def base_params(workspace: Path) -> Iterator[dict]:
    """The workspace's good params; put back after each test, whatever the test wrote."""
    with params_kept(workspace) as params:
        yield params


def stage_args(stage: str) -> tuple[str, ...]:
    return TRAIN_ARGS if stage == "train" else ()


def fails_in_one_line(repo: Path, stage: str) -> str:
    """Run the stage's command; assert exit status 2, no traceback, a single `<stage>: error:` line on stderr
    and nothing on stdout; return the line."""
    result = run(repo, sys.executable, "-m", f"stages.{stage}", *stage_args(stage), check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr and not result.stdout.strip(), result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{result.stderr}"
    assert lines[0].startswith(f"{stage}: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("stage", list(PER_STAGE))
def test_each_stage_fails_in_one_line(workspace: Path, base_params: dict, stage: str) -> None:
    updates, named = PER_STAGE[stage]
    write_params(workspace, updates)
    written = (workspace / "params.yaml").read_bytes()
    assert named in fails_in_one_line(workspace, stage)
    assert (workspace / "params.yaml").read_bytes() == written


def refused(workspace: Path, stage: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the stage's main() in-process in the workspace; the UserError it raises, as the one line it prints."""
    monkeypatch.chdir(workspace)
    main = importlib.import_module(f"stages.{stage}").main
    with pytest.raises(UserError) as error:
        main(list(stage_args(stage))) if stage == "train" else main()
    return one_line(error.value)  # the line the stage prints (stages.lib.core.errors.run_stage)


@pytest.mark.parametrize("case", list(NEEDS_THE_DATA))
def test_a_check_that_needs_the_data(
    workspace: Path, base_params: dict, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    stage, updates, expected = NEEDS_THE_DATA[case]
    binary = str(workspace.parent / "labels.bin")
    updates = substitute(updates, {"{binary}": binary})
    write_params(workspace, updates)
    written = (workspace / "params.yaml").read_bytes()
    message = refused(workspace, stage, monkeypatch)
    for text in expected:
        assert text.replace("{binary}", binary) in message, message
    assert (workspace / "params.yaml").read_bytes() == written


def substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: substitute(value, values) for key, value in node.items()}
    return values.get(node, node) if isinstance(node, str) else node


def test_hand_edited_labels_table(workspace: Path, base_params: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    table = workspace / "data/prepared/labels.csv"
    original = table.read_text()
    try:
        lines = original.splitlines()
        header, first = lines[0].split(","), lines[1].split(",")
        first[header.index("label")] = "7"
        table.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
        message = refused(workspace, "corrupt", monkeypatch)
    finally:
        table.write_text(original)
    assert "data/prepared/labels.csv: labels must be integers in [0, 1]" in message


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


@pytest.fixture
def without_features(workspace: Path) -> Iterator[Path]:
    """The workspace with its features moved away (put back after the test): what embed writes, if anything."""
    features, kept = workspace / "data/features", workspace.parent / "features.kept"
    shutil.move(features, kept)
    try:
        yield workspace
    finally:
        shutil.rmtree(features, ignore_errors=True)
        shutil.move(kept, features)


def test_weights_file_that_does_not_fit(without_features: Path, base_params: dict, tmp_path: Path) -> None:
    workspace = without_features
    weights = make_weights(tmp_path / "tiny.weights.h5", "tiny")
    write_params(workspace, {"model": {"weights": str(weights)}})
    line = fails_in_one_line(workspace, "embed")
    assert f"model.weights = '{weights}': the file does not fit ResNet50 without its top" in line
    assert not (workspace / "data/features").exists()


def test_weights_file_that_is_not_hdf5(without_features: Path, base_params: dict, tmp_path: Path) -> None:
    workspace = without_features
    weights = tmp_path / "resnet50.weights.h5"
    weights.write_text("not an HDF5 file\n")
    write_params(workspace, {"model": {"weights": str(weights)}})
    assert "does not fit ResNet50" in fails_in_one_line(workspace, "embed")
    assert not (workspace / "data/features").exists()


def test_weights_file_that_fits_is_used(without_features: Path, base_params: dict, tmp_path: Path) -> None:
    """The stage's features are the ones the file's weights give, not those of a random init."""
    import keras

    from stages.lib.backbone.resnet import preprocess

    workspace = without_features
    weights = make_weights(tmp_path / "resnet50.weights.h5", "resnet50")
    write_params(workspace, {"model": {"weights": str(weights)}})
    result = run(workspace, sys.executable, "-m", "stages.embed", check=False)
    assert result.returncode == 0, result.stderr
    features = np.load(workspace / "data/features/test.npy")
    images = np.load(workspace / "data/prepared/test_images.npy")
    model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    model.load_weights(weights)
    expected = np.asarray(model.predict_on_batch(preprocess(images)))
    assert features.shape == (40, 2048)  # 120 images: 60 train, 20 validate, 40 test
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
