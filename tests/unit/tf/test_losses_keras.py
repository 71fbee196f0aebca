"""stages.lib.losses on the Keras backend: values equal the NumPy backend's, the logit gradients equal
TensorFlow's autodiff (soft bootstrap against Reed et al.'s loss written out here), confidently wrong samples
keep their gradient, float16 logits, and a Keras model trains with each loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib.losses import logit_gradient, make_loss
from stages.lib.losses.settings import LOSS_NAMES
from tests.unit.test_losses import (
    CE_FAMILY,
    GRADIENT_CASES,
    PM,
    TB,
    TM,
    YM,
    ZM,
    logits_and_targets,
    loss_np,
    random_binary,
    random_multiclass,
    transition_for,
)


def test_bce_matches_keras():
    y, z = random_binary()
    want = np.asarray(keras.losses.binary_crossentropy(y, z, from_logits=True))
    # log-softmax of (0, z) in float32: absolute error about one ulp of z.
    np.testing.assert_allclose(loss_np("bce", "binary", y, z), want, rtol=1e-5, atol=1e-6)
    y, z = random_multiclass()
    want = np.asarray(keras.losses.categorical_crossentropy(y, z, from_logits=True))
    np.testing.assert_allclose(loss_np("bce", "multiclass", y, z), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_forward_with_identity_is_exactly_cross_entropy(task):
    y, z = random_binary() if task == "binary" else random_multiclass()
    z[:4] *= 20  # saturated samples too
    identity = np.eye(2 if task == "binary" else y.shape[1])
    bce = make_loss("bce", task)
    forward = make_loss("forward", task, {"T": "true"}, transition=identity)
    np.testing.assert_array_equal(np.asarray(forward(y, tf.constant(z))), np.asarray(bce(y, tf.constant(z))))
    numpy_forward = make_loss("forward", task, {"T": "true"}, backend="numpy", transition=identity)
    np.testing.assert_array_equal(numpy_forward(y, z), make_loss("bce", task, backend="numpy")(y, z))
    want = logit_gradient("bce", task)(y, z)
    np.testing.assert_array_equal(logit_gradient("forward", task, {"T": "true"}, transition=identity)(y, z), want)
    # TensorFlow's autodiff takes another path through logsumexp: equal up to float32 rounding.
    np.testing.assert_allclose(
        keras_logit_gradient("forward", task, {}, y, z, identity),
        keras_logit_gradient("bce", task, {}, y, z),
        atol=1e-7,
    )


def reed_soft_bootstrap(y, z, beta, task):
    """Reed et al. 2015, soft bootstrapping, written out with TensorFlow: -sum_k [beta t_k + (1 - beta) q_k]
    log q_k, q the model's distribution, the gradient flowing through both q's."""
    if task == "binary":
        q1 = tf.sigmoid(z[:, 0])
        q = tf.stack([1.0 - q1, q1], axis=1)
        y = tf.concat([1.0 - y, y], axis=1)
    else:
        q = tf.nn.softmax(z)
    return -tf.reduce_sum((beta * y + (1.0 - beta) * q) * tf.math.log(q), axis=1)


@pytest.mark.parametrize("beta", [0.95, 0.5])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_soft_bootstrap_gradient_is_reeds(task, beta):
    y, z = random_binary() if task == "binary" else random_multiclass(k=4)
    zv = tf.Variable(z)
    with tf.GradientTape() as tape:
        loss = reed_soft_bootstrap(tf.constant(y), zv, beta, task)
        total = tf.reduce_sum(loss)
    want = tape.gradient(total, zv).numpy()
    params = {"mode": "soft", "beta": beta}
    np.testing.assert_allclose(loss_np("bootstrap", task, y, z, **params), loss.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logit_gradient("bootstrap", task, params)(y, z), want, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(keras_logit_gradient("bootstrap", task, params, y, z), want, rtol=1e-3, atol=1e-5)
    # Not cross-entropy rescaled: beta (p - y) (the gradient with the target's p held constant) is far off.
    rescaled_ce = beta * logit_gradient("bce", task)(y, z)
    assert np.abs(logit_gradient("bootstrap", task, params)(y, z) - rescaled_ce).max() > 0.01


def test_hard_bootstrap_gradient_ignores_argmax():
    # Hand: t = (0.2, 0, 0.8) held fixed; dL/dz = p - t.
    got = keras_logit_gradient("bootstrap", "multiclass", {"mode": "hard"}, YM, ZM)
    np.testing.assert_allclose(got[1], PM[1] - [0.2, 0.0, 0.8], rtol=1e-5, atol=1e-6)


def test_hard_bootstrap_binary_target_at_zero_logit_is_positive():
    # z = 0 (p = 0.5) is predicted positive, the rule of stages.lib.evaluate.metrics.predict_labels: for y = 0 the
    # target is 0.8 * 0 + 0.2 * 1, so dL/dz = s - 0.2 = 0.3.
    y, z = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)
    np.testing.assert_allclose(logit_gradient("bootstrap", params={"mode": "hard"})(y, z), [[0.3]], rtol=1e-6)
    np.testing.assert_allclose(keras_logit_gradient("bootstrap", "binary", {"mode": "hard"}, y, z), [[0.3]], rtol=1e-6)


@pytest.mark.parametrize(("name", "params"), CE_FAMILY)
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_confidently_wrong_samples_keep_their_gradient(name, params, task):
    """At logits of +-40 (p = 1 - 4e-18), clipping probabilities would give a zero gradient. From logits, the
    gradient is the CE part's p - t for its target t (the entropy and RCE terms vanish at saturation)."""
    if task == "binary":
        y = np.array([[1.0], [0.0]], dtype=np.float32)
        z = np.array([[-40.0], [40.0]], dtype=np.float32)
        y2, predicted = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    else:
        y = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32)
        z = np.array([[40.0, 0.0, -40.0], [-40.0, 0.0, 40.0]], dtype=np.float32)
        y2, predicted = y, np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    k = y2.shape[1]
    target = {
        "ls": 0.9 * y2 + 0.1 / k,
        "bootstrap": 0.8 * y2 + 0.2 * predicted if params.get("mode") == "hard" else y2,
    }.get(name, y2)
    weight = 0.95 if params.get("mode") == "soft" else 1.0
    expected = weight * (predicted - target)
    expected = expected[:, 1:] if task == "binary" else expected
    transition = np.eye(k) if name == "forward" else None
    got = logit_gradient(name, task, params, transition=transition)(y, z)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        keras_logit_gradient(name, task, params, y, z, transition), expected, rtol=1e-5, atol=1e-6
    )
    assert np.abs(got).max() > 0.75
    values = np.asarray(make_loss(name, task, params, transition=transition)(y, z))
    assert np.all(np.isfinite(values)) and np.all(values > 25)  # about 40 times the CE part's weight


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_float16_logits_give_finite_float32(name, task):
    if task == "binary":
        y = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float16)
        z = np.array([[300.0], [300.0], [-300.0], [0.0]], dtype=np.float16)  # saturated
    else:
        y = np.eye(3, dtype=np.float16)
        z = np.array([[300, -300, 0], [300, 0, 0], [0.5, 0.5, -300]], dtype=np.float16)
    transition = transition_for(name, task)
    got = make_loss(name, task, transition=transition)(y, tf.constant(z))
    assert got.dtype == tf.float32
    assert np.all(np.isfinite(np.asarray(got)))
    assert np.all(np.isfinite(logit_gradient(name, task, transition=transition)(y, z)))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_fit_one_step_binary(name):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])  # logits
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=make_loss(name, transition=transition_for(name, "binary")))
    hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_fit_one_step_multiclass():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.argmax(x[:, :3], axis=1)]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer="sgd",
        loss=make_loss("bootstrap", "multiclass", {"mode": "hard"}),
    )
    hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def keras_logit_gradient(name, task, params, y, z, transition=None):
    """dL/dz through the Keras path (make_loss on the logits) by TensorFlow's autodiff."""
    if transition is None:
        transition = transition_for(name, task, np.shape(y)[-1])
    zv = tf.Variable(z)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(make_loss(name, task, params, transition=transition)(tf.constant(y), zv))
    return tape.gradient(loss, zv).numpy()


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize(("name", "params"), GRADIENT_CASES)
def test_logit_gradient_equals_tensorflow_autodiff(name, params, task):
    z, y = logits_and_targets(task)
    want = keras_logit_gradient(name, task, params, y, z)
    got = logit_gradient(name, task, params, transition=transition_for(name, task, y.shape[1]))(y, z)
    assert got.shape == z.shape
    assert np.abs(want).max() > 0.1  # a real gradient to compare
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-5)


def test_forward_transition_must_fit_the_classes_and_the_loss():
    y, z = random_multiclass(k=4)
    for backend in ("numpy", "keras"):
        with pytest.raises(ValueError, match=r"transition matrix \(3, 3\) for 4 classes"):
            make_loss("forward", "multiclass", backend=backend, transition=TM)(y, z)
    with pytest.raises(ValueError, match="needs the noise transition matrix"):
        make_loss("forward", "binary")
    with pytest.raises(ValueError, match="takes no transition matrix"):
        make_loss("bce", "binary", transition=TB)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize(("name", "params"), GRADIENT_CASES)
def test_numpy_backend_values_equal_keras(name, params, task):
    z, y = logits_and_targets(task)
    transition = transition_for(name, task, y.shape[1])
    want = np.asarray(make_loss(name, task, params, transition=transition)(y, z))
    got = make_loss(name, task, params, backend="numpy", transition=transition)(y, z)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
