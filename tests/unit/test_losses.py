"""Tests for stages.lib.losses: hand-computed values, identities, Keras training."""

from math import log

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib.losses import (
    DEFAULT_LOSS_PARAMS,
    LOSS_NAMES,
    LossConfigError,
    logit_gradient,
    make_loss,
    mean_loss,
    validate_loss_params,
)

# Binary: labels and sigmoid outputs, shape (N, 1).
YB = np.array([[1.0], [0.0], [1.0]], dtype=np.float32)
PB = np.array([[0.8], [0.3], [0.4]], dtype=np.float32)
# Multiclass: one-hot labels and softmax outputs, K = 3.
YM = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
PM = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]], dtype=np.float32)


def loss_np(name, task, y, p, **params):
    return np.asarray(make_loss(name, task, params)(y, p))


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
    y, p = (YB, PB) if task == "binary" else (YM, PM)
    got = loss_np(name, task, y, p, **dict(params))
    assert got.shape == (len(y),)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, HAND[(name, task, params)], rtol=1e-5, atol=1e-6)


def test_every_loss_and_task_has_hand_values():
    covered = {(n, t) for n, t, _ in HAND}
    assert covered == {(n, t) for n in LOSS_NAMES for t in ("binary", "multiclass")}


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_binary_accepts_flat_shapes(name):
    want = loss_np(name, "binary", YB, PB)
    np.testing.assert_allclose(loss_np(name, "binary", YB[:, 0], PB[:, 0]), want)
    np.testing.assert_allclose(loss_np(name, "binary", YB[:, 0], PB), want)


def test_binary_rejects_two_column_predictions():
    with pytest.raises(ValueError, match="binary"):
        loss_np("bce", "binary", YM[:, :2], PM[:, :2])


def random_binary(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    p = rng.uniform(0.01, 0.99, size=(n, 1)).astype(np.float32)
    return y, p


def random_multiclass(n=64, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.eye(k, dtype=np.float32)[rng.integers(0, k, size=n)]
    logits = rng.normal(size=(n, k)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p.astype(np.float32)


def test_bce_matches_keras():
    y, p = random_binary()
    want = np.asarray(keras.losses.binary_crossentropy(y, p))
    np.testing.assert_allclose(loss_np("bce", "binary", y, p), want, rtol=1e-5)
    y, p = random_multiclass()
    want = np.asarray(keras.losses.categorical_crossentropy(y, p))
    np.testing.assert_allclose(loss_np("bce", "multiclass", y, p), want, rtol=1e-5)


def test_gce_q1_is_mae():
    # q = 1: 1 - p_y. Binary 1 - p_y = |y - p| = l1; multiclass l1 = 2 (1 - p_y).
    y, p = random_binary()
    np.testing.assert_allclose(loss_np("gce", "binary", y, p, q=1.0), loss_np("l1", "binary", y, p), atol=1e-6)
    y, p = random_multiclass()
    np.testing.assert_allclose(
        loss_np("gce", "multiclass", y, p, q=1.0),
        loss_np("l1", "multiclass", y, p) / 2,
        atol=1e-6,
    )


def test_gce_small_q_approaches_ce():
    y, p = random_multiclass()
    np.testing.assert_allclose(
        loss_np("gce", "multiclass", y, p, q=1e-3),
        loss_np("bce", "multiclass", y, p),
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
    y, p = random_binary() if task == "binary" else random_multiclass()
    np.testing.assert_allclose(loss_np(name, task, y, p, **params), loss_np("bce", task, y, p), rtol=1e-6)


def test_l1_is_symmetric():
    # Ghosh et al. 2017: sum over all labels of L(label, p) is a constant.
    p = np.linspace(0.01, 0.99, 11, dtype=np.float32)[:, None]
    total = loss_np("l1", "binary", np.zeros_like(p), p) + loss_np("l1", "binary", np.ones_like(p), p)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    _, pm = random_multiclass(k=4)
    total = sum(loss_np("l1", "multiclass", np.tile(np.eye(4, dtype=np.float32)[k], (64, 1)), pm) for k in range(4))
    np.testing.assert_allclose(total, 2 * (4 - 1), atol=1e-5)  # 2 (K - 1)


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


def test_sce_log_zero_is_minus_four():
    # RCE for one-hot y: -A * (1 - p_y) with A = -4.
    loss = loss_np("sce", "multiclass", YM, PM, alpha=0.0, beta=1.0)
    np.testing.assert_allclose(loss, [4 * 0.3, 4 * 0.8], rtol=1e-5)


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


def test_function_name_is_loss_name():
    for name in LOSS_NAMES:
        assert make_loss(name).__name__ == name


def test_mean_loss():
    got = mean_loss("bce", "binary", None, YB, PB)
    assert isinstance(got, float)
    assert got == pytest.approx((-log(0.8) - log(0.7) - log(0.4)) / 3, rel=1e-5)


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


def test_logit_gradient_by_hand_binary_bce_and_l1():
    # BCE on a sigmoid: dL/dz = s - y. Binary l1 = |y - s|: dL/dz = -sign(y - s) s (1 - s).
    s = np.array([[0.8], [0.3]], dtype=np.float32)
    y = np.array([[1.0], [1.0]], dtype=np.float32)
    np.testing.assert_allclose(logit_gradient("bce")(y, s), s - y, rtol=1e-5)
    np.testing.assert_allclose(logit_gradient("l1")(y, s), -s * (1 - s), rtol=1e-5)


def test_saturated_outputs_pass_no_gradient():
    # Clipped to [EPS, 1 - EPS] as in the Keras path, where clip has zero gradient outside.
    y = np.array([[1.0], [0.0]], dtype=np.float32)
    s = np.array([[0.0], [1.0]], dtype=np.float32)
    np.testing.assert_array_equal(logit_gradient("bce")(y, s), 0.0)


def test_numpy_backend_does_not_load_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from stages.lib.losses import make_loss, logit_gradient, mean_loss;"
        "y = np.array([[1.0]], dtype=np.float32); p = np.array([[0.6]], dtype=np.float32);"
        "make_loss('gce', backend='numpy')(y, p); logit_gradient('sce')(y, p); mean_loss('l1', 'binary', None, y, p);"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
