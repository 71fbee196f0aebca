"""Tests for stages.lib.losses on the Keras backend: against Keras' own losses, TensorFlow's autodiff, training."""

from math import log

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib.losses import logit_gradient, make_loss
from stages.lib.params import LOSS_NAMES
from tests.unit.test_losses import (
    GRADIENT_CASES,
    HAND,
    PB,
    PM,
    YB,
    YM,
    logits_and_targets,
    loss_np,
    random_binary,
    random_multiclass,
)


@pytest.mark.parametrize("name,task,params", list(HAND), ids=lambda v: str(v) if v else "default")
def test_hand_computed_values_on_the_keras_backend(name, task, params):
    y, p = (YB, PB) if task == "binary" else (YM, PM)
    got = loss_np(name, task, y, p, backend="keras", **dict(params))
    assert got.shape == (len(y),)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, HAND[(name, task, params)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_binary_accepts_flat_shapes_on_the_keras_backend(name):
    want = loss_np(name, "binary", YB, PB, backend="keras")
    np.testing.assert_allclose(loss_np(name, "binary", YB[:, 0], PB[:, 0], backend="keras"), want)


def test_bce_matches_keras():
    y, p = random_binary()
    want = np.asarray(keras.losses.binary_crossentropy(y, p))
    np.testing.assert_allclose(loss_np("bce", "binary", y, p, backend="keras"), want, rtol=1e-5)
    y, p = random_multiclass()
    want = np.asarray(keras.losses.categorical_crossentropy(y, p))
    np.testing.assert_allclose(loss_np("bce", "multiclass", y, p, backend="keras"), want, rtol=1e-5)


def grad_wrt_p(fn, y, p):
    p = tf.Variable(p)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fn(tf.constant(y), p))
    return tape.gradient(loss, p).numpy()


def test_soft_bootstrap_target_is_constant():
    y = np.array([[1.0]], dtype=np.float32)
    p = np.array([[0.8]], dtype=np.float32)
    got = grad_wrt_p(make_loss("bootstrap", "binary", {"beta": 0.95}), y, p)
    # t = 0.99 held fixed: d/dp -(t log p + (1 - t) log(1 - p)) = -(t/p - (1 - t)/(1 - p)).
    want = -(0.99 / 0.8 - 0.01 / 0.2)
    np.testing.assert_allclose(got, [[want]], rtol=1e-5)
    # If the gradient flowed through t it would gain -(1 - beta) log(p / (1 - p)).
    full = want - 0.05 * log(0.8 / 0.2)
    assert abs(got[0, 0] - full) > 0.05


def test_hard_bootstrap_gradient_ignores_argmax():
    # Hand: t = (0.2, 0, 0.8) held fixed; dL/dp_k = -t_k / p_k.
    got = grad_wrt_p(make_loss("bootstrap", "multiclass", {"mode": "hard"}), YM, PM)
    np.testing.assert_allclose(got[1], [-0.2 / 0.5, 0.0, -0.8 / 0.2], rtol=1e-5)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_float16_predictions_give_finite_float32(name, task):
    if task == "binary":
        y = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float16)
        p = np.array([[1.0], [1.0], [0.0], [0.0]], dtype=np.float16)  # saturated
    else:
        y = np.eye(3, dtype=np.float16)
        p = np.array([[1, 0, 0], [1, 0, 0], [0.5, 0.5, 0]], dtype=np.float16)
    got = make_loss(name, task)(y, tf.constant(p))
    assert got.dtype == tf.float32
    assert np.all(np.isfinite(np.asarray(got)))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_fit_one_step_binary(name):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, "sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=make_loss(name))
    hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_fit_one_step_multiclass():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.argmax(x[:, :3], axis=1)]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "softmax")])
    model.compile(
        optimizer="sgd",
        loss=make_loss("bootstrap", "multiclass", {"mode": "hard"}),
    )
    hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def keras_logit_gradient(name, task, params, y, z):
    """dL/dz through the Keras path: sigmoid/softmax, then make_loss, by TensorFlow's autodiff."""
    zv = tf.Variable(z)
    with tf.GradientTape() as tape:
        out = tf.sigmoid(zv) if task == "binary" else tf.nn.softmax(zv)
        loss = tf.reduce_sum(make_loss(name, task, params)(tf.constant(y), out))
    return tape.gradient(loss, zv).numpy(), out.numpy()


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize(("name", "params"), GRADIENT_CASES)
def test_numpy_backend_values_equal_keras(name, params, task):
    z, y = logits_and_targets(task)
    _, out = keras_logit_gradient(name, task, params, y, z)
    want = np.asarray(make_loss(name, task, params)(y, out))
    got = make_loss(name, task, params, backend="numpy")(y, out)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize(("name", "params"), GRADIENT_CASES)
def test_logit_gradient_equals_tensorflow_autodiff(name, params, task):
    z, y = logits_and_targets(task)
    want, out = keras_logit_gradient(name, task, params, y, z)
    got = logit_gradient(name, task, params)(y, out)
    assert got.shape == z.shape
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-5)
