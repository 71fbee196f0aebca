"""Tests for stages.lib.losses: hand-computed values, identities, gradients against autodiff, Keras training."""

from math import log

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib.losses import (
    DEFAULT_LOSS_PARAMS,
    LOSS_NAMES,
    LossConfigError,
    log_transition,
    logit_gradient,
    logits_from_probabilities,
    make_loss,
    mean_loss,
    probabilities,
    validate_loss_params,
)

# Binary: labels and sigmoid outputs, shape (N, 1); the losses take the logits ZB.
YB = np.array([[1.0], [0.0], [1.0]], dtype=np.float32)
PB = np.array([[0.8], [0.3], [0.4]], dtype=np.float32)
ZB = np.log(PB / (1 - PB))
# Multiclass: one-hot labels and softmax outputs, K = 3; log p is a logit vector with softmax p.
YM = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
PM = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]], dtype=np.float32)
ZM = np.log(PM)
# Row-stochastic noise transition matrices T[clean, noisy] for the forward loss.
TB = np.array([[0.8, 0.2], [0.3, 0.7]])
TM = np.array([[0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.0, 0.5, 0.5]])


def transition_for(name, task, k=3):
    """The forward loss's matrix (a fixed, non-trivial one), None for every other loss."""
    if name != "forward":
        return None
    if task == "binary":
        return TB
    if k == 3:
        return TM
    rng = np.random.default_rng(k)
    t = np.eye(k) * 2 + rng.uniform(size=(k, k))
    return t / t.sum(axis=1, keepdims=True)


def loss_np(name, task, y, z, **params):
    k = np.shape(y)[-1]
    return np.asarray(make_loss(name, task, params, transition=transition_for(name, task, k))(y, z))


def gce_hand(p_y, q):
    return (1 - p_y**q) / q


# Expected values written out by hand for the samples above. For binary,
# p_y = p if y = 1 else 1 - p, i.e. (0.8, 0.7, 0.4); for multiclass p_y = (0.7, 0.2).
HAND = {
    ("bce", "binary", ()): [-log(0.8), -log(0.7), -log(0.4)],
    ("bce", "multiclass", ()): [-log(0.7), -log(0.2)],
    ("l1", "binary", ()): [0.2, 0.3, 0.6],
    ("l1", "multiclass", ()): [0.3 + 0.2 + 0.1, 0.5 + 0.3 + 0.8],
    ("gce", "binary", ()): [gce_hand(0.8, 0.7), gce_hand(0.7, 0.7), gce_hand(0.4, 0.7)],
    ("gce", "multiclass", ()): [gce_hand(0.7, 0.7), gce_hand(0.2, 0.7)],
    ("gce", "multiclass", (("q", 0.5),)): [
        2 * (1 - 0.7**0.5),
        2 * (1 - 0.2**0.5),
    ],
    # alpha CE + beta * 4 * (1 - p_y), alpha = 0.1, beta = 1.
    ("sce", "binary", ()): [
        0.1 * -log(0.8) + 4 * 0.2,
        0.1 * -log(0.7) + 4 * 0.3,
        0.1 * -log(0.4) + 4 * 0.6,
    ],
    ("sce", "multiclass", ()): [
        0.1 * -log(0.7) + 4 * (0.2 + 0.1),
        0.1 * -log(0.2) + 4 * (0.5 + 0.3),
    ],
    ("sce", "multiclass", (("alpha", 1.0), ("beta", 0.5))): [
        -log(0.7) + 0.5 * 4 * 0.3,
        -log(0.2) + 0.5 * 4 * 0.8,
    ],
    # soft, beta = 0.95: t = 0.95 y + 0.05 p.
    ("bootstrap", "binary", ()): [
        -(0.99 * log(0.8) + 0.01 * log(0.2)),  # t1 = .95 + .05 * .8
        -(0.985 * log(0.7) + 0.015 * log(0.3)),  # t0 = .95 + .05 * .7
        -(0.97 * log(0.4) + 0.03 * log(0.6)),  # t1 = .95 + .05 * .4
    ],
    ("bootstrap", "multiclass", ()): [
        -(0.985 * log(0.7) + 0.01 * log(0.2) + 0.005 * log(0.1)),
        -(0.025 * log(0.5) + 0.015 * log(0.3) + 0.96 * log(0.2)),
    ],
    # hard, beta = 0.8: t = 0.8 y + 0.2 onehot(argmax p).
    ("bootstrap", "binary", (("mode", "hard"),)): [
        -log(0.8),  # prediction agrees with label
        -log(0.7),
        -(0.8 * log(0.4) + 0.2 * log(0.6)),  # predicts 0, label 1
    ],
    ("bootstrap", "multiclass", (("mode", "hard"),)): [
        -log(0.7),
        -(0.2 * log(0.5) + 0.8 * log(0.2)),
    ],
    ("bootstrap", "binary", (("mode", "hard"), ("beta", 0.5))): [
        -log(0.8),
        -log(0.7),
        -(0.5 * log(0.4) + 0.5 * log(0.6)),
    ],
    # -log (T^T p)_y. Binary, TB: P(noisy 1) = 0.2 (1 - s) + 0.7 s, P(noisy 0) = 0.8 (1 - s) + 0.3 s.
    ("forward", "binary", ()): [
        -log(0.2 * 0.2 + 0.7 * 0.8),
        -log(0.8 * 0.7 + 0.3 * 0.3),
        -log(0.2 * 0.6 + 0.7 * 0.4),
    ],
    # TM: (T^T p)_0 = .6 p0 + .1 p1 + 0 p2; (T^T p)_2 = .2 p0 + .1 p1 + .5 p2.
    ("forward", "multiclass", ()): [
        -log(0.6 * 0.7 + 0.1 * 0.2),
        -log(0.2 * 0.5 + 0.1 * 0.3 + 0.5 * 0.2),
    ],
    # smoothing 0.1: binary t = (0.95, 0.05); multiclass t = 0.9 y + 1/30.
    ("ls", "binary", ()): [
        -(0.95 * log(0.8) + 0.05 * log(0.2)),
        -(0.95 * log(0.7) + 0.05 * log(0.3)),
        -(0.95 * log(0.4) + 0.05 * log(0.6)),
    ],
    ("ls", "multiclass", ()): [
        -((0.9 + 1 / 30) * log(0.7) + (1 / 30) * log(0.2) + (1 / 30) * log(0.1)),
        -((1 / 30) * log(0.5) + (1 / 30) * log(0.3) + (0.9 + 1 / 30) * log(0.2)),
    ],
}


@pytest.mark.parametrize("name,task,params", list(HAND), ids=lambda v: str(v) if v else "default")
def test_hand_computed_values(name, task, params):
    y, z = (YB, ZB) if task == "binary" else (YM, ZM)
    got = loss_np(name, task, y, z, **dict(params))
    assert got.shape == (len(y),)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, HAND[(name, task, params)], rtol=1e-5, atol=1e-6)


def test_every_loss_and_task_has_hand_values():
    covered = {(n, t) for n, t, _ in HAND}
    assert covered == {(n, t) for n in LOSS_NAMES for t in ("binary", "multiclass")}


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_binary_accepts_flat_shapes(name):
    want = loss_np(name, "binary", YB, ZB)
    np.testing.assert_allclose(loss_np(name, "binary", YB[:, 0], ZB[:, 0]), want)
    np.testing.assert_allclose(loss_np(name, "binary", YB[:, 0], ZB), want)


def test_binary_rejects_two_column_logits():
    with pytest.raises(ValueError, match="binary"):
        loss_np("bce", "binary", YM[:, :2], ZM[:, :2])


def random_binary(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    z = rng.normal(scale=3.0, size=(n, 1)).astype(np.float32)
    return y, z


def random_multiclass(n=64, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.eye(k, dtype=np.float32)[rng.integers(0, k, size=n)]
    z = (rng.normal(size=(n, k)) * 2).astype(np.float32)
    return y, z


def test_bce_matches_keras():
    y, z = random_binary()
    want = np.asarray(keras.losses.binary_crossentropy(y, z, from_logits=True))
    # log-softmax of (0, z) in float32: absolute error about one ulp of z.
    np.testing.assert_allclose(loss_np("bce", "binary", y, z), want, rtol=1e-5, atol=1e-6)
    y, z = random_multiclass()
    want = np.asarray(keras.losses.categorical_crossentropy(y, z, from_logits=True))
    np.testing.assert_allclose(loss_np("bce", "multiclass", y, z), want, rtol=1e-5, atol=1e-6)


def test_gce_q1_is_mae():
    # q = 1: 1 - p_y. Binary 1 - p_y = |y - p| = l1; multiclass l1 = 2 (1 - p_y).
    y, z = random_binary()
    np.testing.assert_allclose(loss_np("gce", "binary", y, z, q=1.0), loss_np("l1", "binary", y, z), atol=1e-6)
    y, z = random_multiclass()
    np.testing.assert_allclose(
        loss_np("gce", "multiclass", y, z, q=1.0),
        loss_np("l1", "multiclass", y, z) / 2,
        atol=1e-6,
    )


def test_gce_small_q_approaches_ce():
    y, z = random_multiclass()
    np.testing.assert_allclose(
        loss_np("gce", "multiclass", y, z, q=1e-3),
        loss_np("bce", "multiclass", y, z),
        rtol=1e-2,  # (1 - p^q)/q = -log p - q log(p)^2 / 2 + ...
        atol=1e-3,  # float32 cancellation in 1 - p^q
    )


@pytest.mark.parametrize(
    "name,params",
    [
        ("ls", {"smoothing": 0.0}),
        ("bootstrap", {"beta": 1.0}),
        ("bootstrap", {"mode": "hard", "beta": 1.0}),
        ("sce", {"alpha": 1.0, "beta": 0.0}),
    ],
)
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_reduces_to_bce(name, params, task):
    y, z = random_binary() if task == "binary" else random_multiclass()
    np.testing.assert_allclose(loss_np(name, task, y, z, **params), loss_np("bce", task, y, z), rtol=1e-6)


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


@pytest.mark.parametrize(
    "task,transition,match",
    [
        ("binary", [[0.8, 0.3], [0.3, 0.7]], "rows must sum to 1"),
        ("binary", [[1.2, -0.2], [0.0, 1.0]], r"in \[0, 1\]"),
        ("binary", [[0.5, np.nan], [0.0, 1.0]], r"in \[0, 1\]"),
        ("binary", np.eye(3), r"shape \(3, 3\), the binary task needs \(2, 2\)"),
        ("multiclass", np.ones((3, 2)) / 2, r"shape \(3, 2\)"),
        ("multiclass", [0.5, 0.5], r"shape \(2,\)"),
    ],
)
def test_forward_rejects_a_bad_transition_matrix(task, transition, match):
    with pytest.raises(ValueError, match=match):
        make_loss("forward", task, transition=transition)
    with pytest.raises(ValueError, match=match):
        logit_gradient("forward", task, transition=transition)


def test_forward_transition_must_fit_the_classes_and_the_loss():
    y, z = random_multiclass(k=4)
    for backend in ("numpy", "keras"):
        with pytest.raises(ValueError, match=r"transition matrix \(3, 3\) for 4 classes"):
            make_loss("forward", "multiclass", backend=backend, transition=TM)(y, z)
    with pytest.raises(ValueError, match="needs the noise transition matrix"):
        make_loss("forward", "binary")
    with pytest.raises(ValueError, match="takes no transition matrix"):
        make_loss("bce", "binary", transition=TB)


def test_log_transition_is_minus_infinity_at_zero():
    got = log_transition(TM, "multiclass")
    assert got.dtype == np.float32 and got[2, 0] == -np.inf
    np.testing.assert_allclose(np.exp(got), TM, rtol=1e-6)


def test_l1_is_symmetric():
    # Ghosh et al. 2017: sum over all labels of L(label, p) is a constant.
    z = np.linspace(-4.0, 4.0, 11, dtype=np.float32)[:, None]
    total = loss_np("l1", "binary", np.zeros_like(z), z) + loss_np("l1", "binary", np.ones_like(z), z)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    _, zm = random_multiclass(k=4)
    total = sum(loss_np("l1", "multiclass", np.tile(np.eye(4, dtype=np.float32)[k], (64, 1)), zm) for k in range(4))
    np.testing.assert_allclose(total, 2 * (4 - 1), atol=1e-5)  # 2 (K - 1)


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


def test_soft_bootstrap_by_hand_binary():
    # L = beta CE + (1 - beta) H; at s = 0.8, y = 1: dL/dz = beta (s - 1) - (1 - beta) s (1 - s) log(s / (1 - s)).
    z = np.array([[log(0.8 / 0.2)]], dtype=np.float32)
    want = 0.95 * (0.8 - 1) - 0.05 * 0.8 * 0.2 * log(4.0)
    np.testing.assert_allclose(logit_gradient("bootstrap")(np.ones((1, 1), np.float32), z), [[want]], rtol=1e-5)


def test_hard_bootstrap_gradient_ignores_argmax():
    # Hand: t = (0.2, 0, 0.8) held fixed; dL/dz = p - t.
    got = keras_logit_gradient("bootstrap", "multiclass", {"mode": "hard"}, YM, ZM)
    np.testing.assert_allclose(got[1], PM[1] - [0.2, 0.0, 0.8], rtol=1e-5, atol=1e-6)


def test_hard_bootstrap_binary_target_at_zero_logit_is_positive():
    # z = 0 (p = 0.5) is predicted positive, the rule of stages.lib.metrics.predict_labels: for y = 0 the
    # target is 0.8 * 0 + 0.2 * 1, so dL/dz = s - 0.2 = 0.3.
    y, z = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)
    np.testing.assert_allclose(logit_gradient("bootstrap", params={"mode": "hard"})(y, z), [[0.3]], rtol=1e-6)
    np.testing.assert_allclose(keras_logit_gradient("bootstrap", "binary", {"mode": "hard"}, y, z), [[0.3]], rtol=1e-6)


def test_sce_log_zero_is_minus_four():
    # RCE for one-hot y: -A * (1 - p_y) with A = -4.
    loss = loss_np("sce", "multiclass", YM, ZM, alpha=0.0, beta=1.0)
    np.testing.assert_allclose(loss, [4 * 0.3, 4 * 0.8], rtol=1e-5)


# The cross-entropy family, whose gradient must not vanish on confidently wrong samples.
CE_FAMILY = [
    ("bce", {}),
    ("ls", {}),
    ("sce", {"alpha": 1.0, "beta": 1.0}),
    ("bootstrap", {"mode": "soft"}),
    ("bootstrap", {"mode": "hard"}),
    ("forward", {}),
]


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


def test_function_name_is_loss_name():
    for name in LOSS_NAMES:
        assert make_loss(name, transition=transition_for(name, "binary")).__name__ == name


def test_mean_loss_takes_probabilities():
    got = mean_loss("bce", "binary", None, YB, PB)
    assert isinstance(got, float)
    assert got == pytest.approx((-log(0.8) - log(0.7) - log(0.4)) / 3, rel=1e-5)
    assert mean_loss("bce", "multiclass", None, YM, PM) == pytest.approx((-log(0.7) - log(0.2)) / 2, rel=1e-5)
    # Saved float32 scores can be exactly 0 or 1: clipped to [1e-7, 1 - 1e-7], the loss stays finite.
    assert mean_loss("bce", "binary", None, np.array([1.0]), np.array([0.0])) == pytest.approx(-log(1e-7), rel=1e-4)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_probabilities_and_logits_round_trip(task):
    _, z = random_binary() if task == "binary" else random_multiclass()
    p = probabilities(z, task)
    assert p.dtype == np.float32
    if task == "binary":
        np.testing.assert_allclose(p, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-6)
    else:
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probabilities(logits_from_probabilities(p, task), task), p, rtol=1e-5, atol=1e-7)
    assert probabilities(np.array([-200.0, 200.0]), "binary").tolist() == [0.0, 1.0]


def test_validate_merges_defaults():
    assert validate_loss_params("gce", None) == {"q": 0.7}
    assert validate_loss_params("gce", {"q": 1}) == {"q": 1.0}
    assert validate_loss_params("sce", {"beta": 0.5}) == {"alpha": 0.1, "beta": 0.5}
    assert validate_loss_params("bootstrap", {}) == {"mode": "soft", "beta": 0.95}
    assert validate_loss_params("bootstrap", {"mode": "hard"}) == {
        "mode": "hard",
        "beta": 0.8,
    }
    assert validate_loss_params("bce", {}) == {}
    assert validate_loss_params("forward", {}) == {"T": "estimated"}
    assert validate_loss_params("forward", {"T": "true"}) == {"T": "true"}
    assert set(DEFAULT_LOSS_PARAMS) == set(LOSS_NAMES)
    # The defaults table itself must not be mutated.
    assert DEFAULT_LOSS_PARAMS["bootstrap"]["beta"] is None


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
        ("forward", {"T": "oracle"}, r"train\.loss_params\.forward\.T = 'oracle': must be one of estimated, true"),
    ],
)
def test_bad_config_raises(name, params, match):
    with pytest.raises(LossConfigError, match=match):
        validate_loss_params(name, params)
    with pytest.raises(LossConfigError, match=match):
        make_loss(name, "binary", params)


def test_bad_task_raises():
    with pytest.raises(LossConfigError, match=r"task = 'regression'.*binary, multiclass"):
        make_loss("bce", "regression")


def test_config_error_is_value_error_and_one_line():
    with pytest.raises(ValueError) as info:
        make_loss("nope")
    assert "\n" not in str(info.value)


# --- the NumPy backend and the logit gradients the NumPy head trainer uses ------------------------

# (name, params): every loss, and the non-default modes / values whose formulas differ.
GRADIENT_CASES = [(name, {}) for name in LOSS_NAMES] + [
    ("gce", {"q": 0.3}),
    ("sce", {"alpha": 1.0, "beta": 0.5}),
    ("bootstrap", {"mode": "hard"}),
    ("bootstrap", {"mode": "soft", "beta": 0.6}),
    ("ls", {"smoothing": 0.3}),
]


def logits_and_targets(task: str, k: int = 4, n: int = 64):
    rng = np.random.default_rng(7)
    if task == "binary":
        z = rng.normal(scale=3.0, size=(n, 1)).astype(np.float32)
        y = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    else:
        z = rng.normal(scale=3.0, size=(n, k)).astype(np.float32)
        y = np.eye(k, dtype=np.float32)[rng.integers(0, k, size=n)]
    return z, y


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
def test_numpy_backend_values_equal_keras(name, params, task):
    z, y = logits_and_targets(task)
    transition = transition_for(name, task, y.shape[1])
    want = np.asarray(make_loss(name, task, params, transition=transition)(y, z))
    got = make_loss(name, task, params, backend="numpy", transition=transition)(y, z)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize(("name", "params"), GRADIENT_CASES)
def test_logit_gradient_equals_tensorflow_autodiff(name, params, task):
    z, y = logits_and_targets(task)
    want = keras_logit_gradient(name, task, params, y, z)
    got = logit_gradient(name, task, params, transition=transition_for(name, task, y.shape[1]))(y, z)
    assert got.shape == z.shape
    assert np.abs(want).max() > 0.1  # a real gradient to compare
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-5)


def test_logit_gradient_by_hand_binary_bce_and_l1():
    # BCE on a sigmoid: dL/dz = s - y. Binary l1 = |y - s|: dL/dz = -sign(y - s) s (1 - s).
    s = np.array([[0.8], [0.3]], dtype=np.float32)
    z = np.log(s / (1 - s))
    y = np.array([[1.0], [1.0]], dtype=np.float32)
    np.testing.assert_allclose(logit_gradient("bce")(y, z), s - y, rtol=1e-5)
    np.testing.assert_allclose(logit_gradient("l1")(y, z), -s * (1 - s), rtol=1e-5)


def test_forward_gradient_by_hand_binary():
    # L = -log m, m = 0.2 (1 - s) + 0.7 s for y = 1: dL/dz = -(0.7 - 0.2) s (1 - s) / m.
    s = 0.8
    z = np.array([[log(s / (1 - s))]], dtype=np.float32)
    want = -(0.5 * s * (1 - s)) / (0.2 * (1 - s) + 0.7 * s)
    got = logit_gradient("forward", transition=TB)(np.ones((1, 1), np.float32), z)
    np.testing.assert_allclose(got, [[want]], rtol=1e-5)


def test_numpy_backend_does_not_load_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from stages.lib.losses import make_loss, logit_gradient, mean_loss;"
        "y = np.array([[1.0]], dtype=np.float32); z = np.array([[0.6]], dtype=np.float32);"
        "make_loss('gce', backend='numpy')(y, z); logit_gradient('sce')(y, z); mean_loss('l1', 'binary', None, y, z);"
        "logit_gradient('forward', transition=np.eye(2))(y, z);"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
