"""stages.lib.losses on the NumPy backend (what the head trainer and evaluate use): hand-computed values,
identities, the forward loss's matrix checks and the logit gradients by hand. The Keras backend and the
gradients against TensorFlow's autodiff are in tests/unit/tf/test_losses_keras.py."""

from functools import partial
from math import log

import numpy as np
import pytest

from stages.lib import losses
from stages.lib.losses import (
    logit_gradient,
    logits_from_probabilities,
    mean_loss,
    probabilities,
)
from stages.lib.losses.settings import LOSS_NAMES
from stages.lib.noise.transition import log_transition

# These tests exercise the NumPy backend (no TensorFlow); a test that passes backend= still chooses.
make_loss = partial(losses.make_loss, backend="numpy")

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


def test_soft_bootstrap_by_hand_binary():
    # L = beta CE + (1 - beta) H; at s = 0.8, y = 1: dL/dz = beta (s - 1) - (1 - beta) s (1 - s) log(s / (1 - s)).
    z = np.array([[log(0.8 / 0.2)]], dtype=np.float32)
    want = 0.95 * (0.8 - 1) - 0.05 * 0.8 * 0.2 * log(4.0)
    np.testing.assert_allclose(logit_gradient("bootstrap")(np.ones((1, 1), np.float32), z), [[want]], rtol=1e-5)


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
