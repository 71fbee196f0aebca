"""Unit tests for stages.lib.head: the NumPy head and its Adam (parity with the Keras head: tests/unit/tf)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stages.lib.head import Adam, LinearHead, fit_linear_head
from stages.lib.labels import targets
from stages.lib.losses import LOSS_NAMES

DIM = 12


def data(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features far from zero mean (as pooled ResNet features are) whose first k dims carry the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    x = rng.gamma(2.0, 3.0, size=(n, DIM)) + np.arange(DIM) * 10
    x[np.arange(n), labels] += 25.0
    return x.astype(np.float32), labels


def fit(task: str, loss: str = "bce", *, k: int = 2, epochs: int = 5, seed: int = 0, batch_size: int = 16, **kw):
    x, labels = data(120, k)
    tx, tlabels = data(40, k, seed=1)
    return fit_linear_head(
        x,
        targets(labels, task, k),
        tx,
        targets(tlabels, task, k),
        task=task,
        loss=loss,
        loss_params=kw.pop("loss_params", None),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=kw.pop("learning_rate", 0.01),
        seed=seed,
        **kw,
    )


def test_initial_head_standardises_and_draws_glorot_kernel() -> None:
    x, _ = data(200, 2)
    head = LinearHead.initial(x, "binary", units=1, seed=3)
    z = head.standardise(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-4)
    assert np.abs(head.kernel).max() <= np.sqrt(6 / (DIM + 1))
    assert head.kernel.dtype == np.float32 and (head.bias == 0).all()
    np.testing.assert_array_equal(LinearHead.initial(x, "binary", 1, seed=3).kernel, head.kernel)
    assert not np.array_equal(LinearHead.initial(x, "binary", 1, seed=4).kernel, head.kernel)


def test_constant_feature_does_not_divide_by_zero() -> None:
    x, _ = data(30, 2)
    x[:, 0] = 5.0
    head = LinearHead.initial(x, "binary", units=1, seed=0)
    assert np.isfinite(head.predict_proba(x)).all()


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_every_loss_learns_a_separable_binary_task(loss: str) -> None:
    _, history = fit("binary", loss, epochs=10)
    assert history["val_accuracy"][-1] >= 0.9
    assert history["loss"][-1] < history["loss"][0]


def test_multiclass_head_learns_and_outputs_distributions() -> None:
    head, history = fit("multiclass", "gce", k=4, epochs=10)
    assert history["val_accuracy"][-1] >= 0.9
    x, _ = data(10, 4, seed=5)
    proba = head.predict_proba(x)
    assert proba.shape == (10, 4) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_head_other_seed_other_head() -> None:
    a, history_a = fit("binary", seed=4)
    b, history_b = fit("binary", seed=4)
    c, _ = fit("binary", seed=5)
    np.testing.assert_array_equal(a.kernel, b.kernel)
    assert history_a == history_b
    assert not np.array_equal(a.kernel, c.kernel)


def test_variants_of_one_seed_start_from_the_same_weights() -> None:
    # Zero epochs: the initial head. The loss must not change it.
    bce, _ = fit("binary", "bce", epochs=0, seed=9)
    l1, _ = fit("binary", "l1", epochs=0, seed=9)
    np.testing.assert_array_equal(bce.kernel, l1.kernel)


def test_history_has_one_value_per_epoch_and_calls_back() -> None:
    seen = []
    _, history = fit("binary", epochs=3, on_epoch=lambda epoch, values: seen.append((epoch, sorted(values))))
    assert {key: len(values) for key, values in history.items()} == {
        "loss": 3,
        "accuracy": 3,
        "val_loss": 3,
        "val_accuracy": 3,
    }
    assert seen == [(e, ["accuracy", "loss", "val_accuracy", "val_loss"]) for e in range(3)]


def test_adam_first_step_moves_each_weight_by_the_learning_rate() -> None:
    # Adam's first update is lr * g / (|g| + eps): the sign of the gradient, scaled by lr.
    w = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    Adam(0.1, [w]).apply([np.array([3.0, -0.5, 0.1], dtype=np.float32)])
    np.testing.assert_allclose(w, [0.9, -1.9, 0.4], atol=1e-4)


@pytest.mark.parametrize(("task", "k"), [("binary", 2), ("multiclass", 3)])
def test_saved_head_predicts_the_same_after_loading(tmp_path: Path, task: str, k: int) -> None:
    head, _ = fit(task, k=k)
    path = tmp_path / "seed_0.npz"
    head.save(path)
    assert path.exists() and not list(tmp_path.glob("*.npz.npz"))
    loaded = LinearHead.load(path)
    assert loaded.task == task
    x, _ = data(20, k, seed=3)
    np.testing.assert_array_equal(loaded.predict_proba(x), head.predict_proba(x))


def test_training_a_head_does_not_load_tensorflow() -> None:
    code = (
        "import sys; from tests.unit.test_head import fit; fit('binary', 'gce');"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
