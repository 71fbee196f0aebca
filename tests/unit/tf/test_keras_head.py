"""Unit tests for the Keras head of fine-tuning (stages.lib.train.finetune.model.build_head), and that it is the
head mode's model: a fitted head's weights give the same outputs in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stages.lib.core.variants import MODEL_FILE, num_outputs, targets
from stages.lib.evaluate.metrics import predict_labels
from stages.lib.losses import make_loss
from stages.lib.train.finetune.model import accuracy_metric, build_head
from stages.lib.train.head import fit_head_grid
from tests.unit.test_head import data, point

keras = pytest.importorskip("keras")

FEATURE_DIM = 16


# Each feature's own offset, as pooled ResNet features have: far from zero mean and unit variance.
OFFSETS = np.random.default_rng(99).uniform(0, 50, size=FEATURE_DIM)


def features(n: int, seed: int = 0) -> np.ndarray:
    """n rows from one fixed, non-negative, skewed feature distribution; seed picks the rows."""
    rng = np.random.default_rng(seed)
    return (rng.gamma(2.0, 3.0, size=(n, FEATURE_DIM)) + OFFSETS).astype(np.float32)


def test_binary_head_gives_one_logit_per_row() -> None:
    train = features(40)
    model = build_head(train, "binary", num_classes=2)
    output = np.asarray(model(train[:7], training=False))
    assert output.shape == (7, 1)
    assert output.dtype == np.float32
    assert (output < 0).any() and (output > 0).any()  # logits, not probabilities
    dense = model.get_layer("head")
    np.testing.assert_allclose(
        output, np.asarray(model.get_layer("standardise")(train[:7])) @ dense.kernel + dense.bias, rtol=1e-5, atol=1e-5
    )


def test_multiclass_head_gives_logits_per_class() -> None:
    train = features(40)
    model = build_head(train, "multiclass", num_classes=5)
    output = np.asarray(model(train[:7], training=False))
    assert output.shape == (7, 5)
    assert (output < 0).any()
    assert not np.allclose(output.sum(axis=1), 1.0)


def test_head_standardises_with_the_training_features() -> None:
    train = features(200)
    model = build_head(train, "binary", num_classes=2)
    standardised = np.asarray(model.get_layer("standardise")(train))
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(standardised.std(axis=0), 1.0, atol=1e-3)
    # Other data goes through the same fitted transform, not its own statistics.
    shifted = np.asarray(model.get_layer("standardise")(train + 10.0))
    assert (shifted.mean(axis=0) > 0.5).all()


def test_head_starts_away_from_saturation() -> None:
    # Standardised inputs keep the initial logits of order 1 (raw features of ~50 would give logits in the
    # tens): the sigmoid is not saturated before training, so the L1 loss's gradient p(1-p) is alive.
    keras.utils.set_random_seed(0)
    model = build_head(features(200), "binary", num_classes=2)
    logits = np.asarray(model(features(100, seed=1), training=False), dtype=np.float64)[:, 0]
    assert np.mean(np.abs(logits)) < 3.0


@pytest.mark.parametrize(("task", "num_classes"), [("binary", 2), ("multiclass", 3)])
def test_saved_head_predicts_the_same_after_loading(tmp_path: Path, task: str, num_classes: int) -> None:
    train = features(60)
    labels = np.random.default_rng(0).integers(0, num_classes, size=60)
    model = build_head(train, task, num_classes)
    loss = keras.losses.BinaryCrossentropy if task == "binary" else keras.losses.CategoricalCrossentropy
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss(from_logits=True), metrics=[accuracy_metric(task)])
    model.fit(train, targets(labels, task, num_classes), epochs=2, batch_size=16, verbose=0)
    test = features(25, seed=1)
    before = np.asarray(model(test, training=False))
    path = tmp_path / MODEL_FILE.format(seed=0)
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    after = np.asarray(loaded(test, training=False))
    assert after.shape == (25, num_outputs(task, num_classes))
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-7)
    # The fitted standardisation travels inside the file.
    np.testing.assert_allclose(np.asarray(loaded.get_layer("standardise")(train)).mean(axis=0), 0.0, atol=1e-3)


@pytest.mark.parametrize(("task", "k", "loss"), [("binary", 2, "l1"), ("multiclass", 3, "sce")])
def test_a_fitted_head_s_weights_give_the_same_outputs_in_the_keras_head(task: str, k: int, loss: str) -> None:
    """The head mode's model (stages.lib.train.linear_head) is the Keras head: the same standardisation fitted on the
    same features, then Dense; the fitted kernel and bias set into it give the same probabilities."""
    x, labels = data(120, k)
    head = fit_head_grid(x, targets(labels, task, k), task=task, loss=loss, grid=[point(loss, 0.1)]).head(0)
    model = build_head(x, task, k)
    model.get_layer("head").set_weights([head.kernel, head.bias])
    logits = model(x, training=False)  # the Keras head outputs logits
    want = np.asarray(keras.ops.sigmoid(logits) if task == "binary" else keras.ops.softmax(logits), dtype=np.float64)
    np.testing.assert_allclose(head.predict_proba(x), want[:, 0] if task == "binary" else want, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(make_loss(loss, task)(targets(labels, task, k), logits)).mean(),
        make_loss(loss, task, backend="numpy")(targets(labels, task, k), head.logits(head.standardise(x))).mean(),
        rtol=1e-4,
    )


@pytest.mark.parametrize(("task", "num_classes"), [("binary", 2), ("multiclass", 3)])
def test_training_accuracy_is_the_evaluation_rule_on_logits(task: str, num_classes: int) -> None:
    """The Keras accuracy metric (fine-tuning) counts what stages.lib.evaluate.metrics.predict_labels does on the
    probabilities, a logit of exactly 0 (p = 0.5) as positive; Keras' own BinaryAccuracy would not."""
    rng = np.random.default_rng(3)
    if task == "binary":
        logits = np.concatenate([[[0.0], [0.0], [-1e-3], [2.0]], rng.normal(size=(20, 1))]).astype(np.float32)
        scores = 1 / (1 + np.exp(-logits[:, 0].astype(np.float64)))
    else:
        logits = rng.normal(size=(24, 3)).astype(np.float32)
        scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, num_classes, size=len(logits))
    labels[:2] = [1, 0] if task == "binary" else labels[:2]
    metric = accuracy_metric(task)
    metric.update_state(targets(labels, task, num_classes), logits)
    want = float(np.mean(predict_labels(scores, task) == labels))
    assert float(metric.result()) == pytest.approx(want)
    if task == "binary":
        single = accuracy_metric(task)
        single.update_state(np.array([[1.0]], np.float32), np.array([[0.0]], np.float32))
        assert float(single.result()) == 1.0
