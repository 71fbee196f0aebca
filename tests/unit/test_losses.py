"""Tests for stages.lib.losses on the NumPy backend: hand-computed values, identities, logit gradients.

The Keras backend, autodiff and training with Keras: tests/unit/tf/test_losses_keras.py.
"""

from math import log

import numpy as np
import pytest

from stages.lib.losses import logit_gradient, make_loss, mean_loss
from stages.lib.params import LOSS_NAMES

# Binary: labels and sigmoid outputs, shape (N, 1).
YB = np.array([[1.0], [0.0], [1.0]], dtype=np.float32)


PB = np.array([[0.8], [0.3], [0.4]], dtype=np.float32)


# Multiclass: one-hot labels and softmax outputs, K = 3.
YM = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)


PM = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]], dtype=np.float32)


def loss_np(name, task, y, p, backend="numpy", **params):
    return np.asarray(make_loss(name, task, params, backend=backend)(y, p))


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


def test_sce_log_zero_is_minus_four():
    # RCE for one-hot y: -A * (1 - p_y) with A = -4.
    loss = loss_np("sce", "multiclass", YM, PM, alpha=0.0, beta=1.0)
    np.testing.assert_allclose(loss, [4 * 0.3, 4 * 0.8], rtol=1e-5)


def test_function_name_is_loss_name():
    for name in LOSS_NAMES:
        assert make_loss(name).__name__ == name


def test_mean_loss():
    got = mean_loss("bce", "binary", None, YB, PB)
    assert isinstance(got, float)
    assert got == pytest.approx((-log(0.8) - log(0.7) - log(0.4)) / 3, rel=1e-5)


def test_bad_task_is_a_programming_error():
    # Users' values are checked in stages.lib.params; an unknown task here can only be a bug.
    with pytest.raises(ValueError, match=r"task 'regression'.*binary.*multiclass"):
        make_loss("bce", "regression")


def test_unknown_loss_is_a_one_line_value_error():
    with pytest.raises(ValueError) as info:
        make_loss("nope")
    assert "\n" not in str(info.value)


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
