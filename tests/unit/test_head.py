"""Unit tests for stages.lib.head: the NumPy head and its Adam (parity with the Keras head: tests/unit/tf)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stages.lib.adam import Adam
from stages.lib.head import (
    fit_head_grid,
    fit_linear_head,
    loss_groups,
    penalised_gradients,
    selected_epoch,
)
from stages.lib.labels import targets
from stages.lib.linear_head import LinearHead
from stages.lib.losses import LOSS_NAMES, probabilities
from stages.lib.metrics import binary_metrics, predict_labels
from stages.lib.params import GridPoint
from stages.lib.params.loss_settings import validate_loss_params
from stages.lib.selection import select

DIM = 12


def data(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features far from zero mean (as pooled ResNet features are) whose first k dims carry the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    x = rng.gamma(2.0, 3.0, size=(n, DIM)) + np.arange(DIM) * 10
    x[np.arange(n), labels] += 25.0
    return x.astype(np.float32), labels


def fit(
    task: str,
    loss: str = "bce",
    *,
    k: int = 2,
    epochs: int = 5,
    seed: int = 0,
    batch_size: int = 16,
    flipped: int = 0,
    **kw,
):
    """Fit a head on data(120, k), `flipped` of its labels moved to the next class; test set data(40, k, seed=1)."""
    x, labels = data(120, k)
    flip = np.random.default_rng(0).choice(len(labels), size=flipped, replace=False)
    labels[flip] = (labels[flip] + 1) % k
    tx, tlabels = data(40, k, seed=1)
    if loss == "forward":  # the true transition of the flips (on average)
        rate = flipped / len(labels)
        kw["transition"] = (1 - rate) * np.eye(k) + rate * np.roll(np.eye(k), 1, axis=1)
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
    assert history["test_accuracy"][-1] >= 0.9
    assert history["loss"][-1] < history["loss"][0]


def test_multiclass_head_learns_and_outputs_distributions() -> None:
    head, history = fit("multiclass", "gce", k=4, epochs=10)
    assert history["test_accuracy"][-1] >= 0.9
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
        "test_loss": 3,
        "test_accuracy": 3,
    }
    assert seen == [(e, ["accuracy", "loss", "test_accuracy", "test_loss"]) for e in range(3)]


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


def mean_entropy(p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))


@pytest.mark.parametrize("seed", [0, 1])
def test_soft_bootstrap_trains_differently_from_cross_entropy(seed: int) -> None:
    """Reed's soft bootstrap is CE plus (1 - beta) times the prediction's entropy, minimised: from the same start
    on the same noisy labels it ends elsewhere, more confident. (With its prediction term held constant, its
    gradient was beta (p - y), which Adam rescales away: the two heads then differed by about 1e-6.)"""
    x, _ = data(120, 2)
    tx, _ = data(40, 2, seed=1)
    bce, _ = fit("binary", "bce", epochs=10, seed=seed, flipped=30)
    soft, _ = fit("binary", "bootstrap", epochs=10, seed=seed, flipped=30, loss_params={"mode": "soft"})
    assert np.abs(soft.kernel - bce.kernel).max() > 1e-3  # measured 0.01-0.02
    assert np.abs(soft.predict_proba(tx) - bce.predict_proba(tx)).max() > 1e-3  # measured 0.007
    assert mean_entropy(soft.predict_proba(x)) < mean_entropy(bce.predict_proba(x))


def test_training_and_evaluation_count_a_score_of_one_half_alike() -> None:
    """Constant features standardise to 0, so with a learning rate of 0 every logit is exactly 0 and every
    score exactly 0.5: training accuracy, test accuracy and the evaluate stage's metrics must all apply the
    same rule (positive iff p >= 0.5: 6 of these 8 labels are right; with p > 0.5, 2)."""
    x = np.full((8, DIM), 3.0, dtype=np.float32)
    y = targets(np.array([1, 1, 1, 0, 1, 1, 0, 1]), "binary", 2)
    head, history = fit_linear_head(
        x, y, x, y, task="binary", loss="bce", loss_params=None, epochs=1, batch_size=4, learning_rate=0.0, seed=0
    )
    scores = head.predict_proba(x)
    np.testing.assert_array_equal(scores, 0.5)
    assert history["accuracy"] == [0.75] and history["test_accuracy"] == [0.75]
    assert binary_metrics(y[:, 0], scores)["accuracy"] == 0.75
    np.testing.assert_array_equal(predict_labels(scores, "binary"), 1)


def test_forward_loss_trains_a_head() -> None:
    _, history = fit("binary", "forward", epochs=10, flipped=20, loss_params={"T": "true"})
    assert history["test_accuracy"][-1] >= 0.9
    assert history["loss"][-1] < history["loss"][0]


def noisy_validation(n: int = 40, k: int = 2, flipped: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A validation set (data(n, k, seed=2)) with `flipped` labels moved to the next class."""
    x, labels = data(n, k, seed=2)
    labels[:flipped] = (labels[:flipped] + 1) % k
    return x, labels


def test_select_epoch_val_keeps_the_epoch_with_the_best_validation_accuracy() -> None:
    vx, vlabels = noisy_validation()
    common = dict(
        flipped=30, epochs=25, seed=3, learning_rate=0.05, val_features=vx, val_y=targets(vlabels, "binary", 2)
    )
    last, last_history = fit("binary", **common)
    chosen, history = fit("binary", select_epoch="val", **common)
    assert history == last_history  # selecting changes what is kept, not how it trains
    scores = history["val_accuracy"]
    best = selected_epoch(history, "val")
    assert best == scores.index(max(scores)) and best < 24  # the first best, and not the last epoch here
    # The head kept is the one after epoch `best`: training for best + 1 epochs gives it exactly.
    again, _ = fit("binary", **{**common, "epochs": best + 1})
    np.testing.assert_array_equal(chosen.kernel, again.kernel)
    np.testing.assert_array_equal(chosen.bias, again.bias)
    assert not np.array_equal(chosen.kernel, last.kernel)
    accuracy = np.mean(predict_labels(chosen.predict_proba(vx), "binary") == vlabels)
    assert accuracy == pytest.approx(max(scores))
    assert selected_epoch(last_history, "last") == 24


def test_validation_ties_go_to_the_earliest_epoch() -> None:
    history = {"loss": [1.0] * 4, "val_accuracy": [0.5, 0.75, 0.75, 0.5]}
    assert selected_epoch(history, "val") == 1
    assert selected_epoch(history, "last") == 3


def test_select_epoch_val_without_a_validation_set_is_refused() -> None:
    with pytest.raises(ValueError, match="validation set"):
        fit("binary", select_epoch="val")
    with pytest.raises(ValueError, match="validation set"):
        fit("binary", select_epoch="val", val_features=np.empty((0, DIM)), val_y=np.empty((0, 1)))


# -- grids of heads (issue 23): L2 per head, the loss's own params, trained together ------------------------------


def point(loss: str, l2: float, **params) -> GridPoint:
    return GridPoint(l2, validate_loss_params(loss, params), {"l2": l2, **params})


@pytest.mark.parametrize(
    ("task", "k", "loss", "grid"),
    [
        ("binary", 2, "bce", [point("bce", 0.0), point("bce", 0.3), point("bce", 2.0)]),
        ("multiclass", 3, "gce", [point("gce", 0.1, q=0.4), point("gce", 0.5, q=0.4), point("gce", 0.1, q=0.9)]),
    ],
)
def test_penalised_gradients_match_finite_differences(task: str, k: int, loss: str, grid: list[GridPoint]) -> None:
    """Each head's objective is its batch-mean loss + λ/2·|kernel|² (bias unpenalised): the gradients the grid
    trains with match central differences of that objective, head by head (heads are columns side by side)."""
    rng = np.random.default_rng(0)
    units = 1 if task == "binary" else k
    xb = rng.normal(size=(10, 4)).astype(np.float32)
    yb = targets(rng.integers(0, k, size=10), task, k)
    kernel = rng.normal(scale=0.5, size=(4, len(grid) * units)).astype(np.float32)
    bias = rng.normal(scale=0.5, size=len(grid) * units).astype(np.float32)
    groups = loss_groups(loss, task, grid)
    l2 = np.repeat(np.array([p.l2 for p in grid], dtype=np.float32), units)

    def objectives(kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
        losses, _, _ = penalised_gradients(xb, yb, kernel, bias, groups, None)
        squares = (kernel.astype(np.float64) ** 2).reshape(4, len(grid), units).sum(axis=(0, 2))
        return losses / len(xb) + 0.5 * np.array([p.l2 for p in grid]) * squares

    _, _, (kernel_gradient, bias_gradient) = penalised_gradients(xb, yb, kernel, bias, groups, l2)
    step = 1e-2
    for variable, gradient in ((kernel, kernel_gradient), (bias, bias_gradient)):
        for index in np.ndindex(variable.shape):
            head = index[-1] // units
            up, down = variable.copy(), variable.copy()
            up[index] += step
            down[index] -= step
            pair = (
                (up, bias) if variable is kernel else (kernel, up),
                (down, bias) if variable is kernel else (kernel, down),
            )
            numeric = (objectives(*pair[0])[head] - objectives(*pair[1])[head]) / (2 * step)
            assert gradient[index] == pytest.approx(numeric, abs=2e-3), (index, gradient[index], numeric)


def test_a_grid_trains_each_head_as_it_would_alone() -> None:
    """Heads of a grid share the start and the batch order and nothing else: each ends as the same head trained
    alone with its λ (up to float32 rounding of a matrix product instead of a vector one)."""
    x, labels = data(120, 2)
    y = targets(labels, "binary", 2)
    strengths = [0.0, 0.05, 0.5]
    common = dict(task="binary", loss="gce", epochs=4, batch_size=16, learning_rate=0.01, seed=3)
    grid = fit_head_grid(x, y, grid=[point("gce", s, q=0.7) for s in strengths], **common)
    for index, strength in enumerate(strengths):
        alone, _ = fit_linear_head(x, y, x, y, loss_params={"q": 0.7}, l2=strength, **common)
        np.testing.assert_allclose(grid.kernels[-1, index], alone.kernel, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(grid.biases[-1, index], alone.bias, rtol=1e-4, atol=1e-5)
    assert not np.allclose(grid.kernels[-1, 0], grid.kernels[-1, 2], atol=1e-3)  # λ does change the head


def memorising_data(seed: int) -> tuple[np.ndarray, ...]:
    """More features (200) than training rows (100), the label in 10 of them, 30 % of the labels flipped, a
    validation set flipped alike: an unregularised linear head can fit every flip."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        true = rng.integers(0, 2, size=n)
        x = rng.normal(size=(n, 200)).astype(np.float32)
        x[:, :10] += 1.5 * true[:, None]
        given = true.copy()
        flip = rng.choice(n, size=round(0.3 * n), replace=False)
        given[flip] ^= 1
        return x, true, given

    return (*draw(100), *draw(200))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_chosen_l2_fits_fewer_flipped_training_labels_than_none(seed: int) -> None:
    """The L2 strength chosen on the noisy validation labels (balanced accuracy, as the train stage does) keeps
    the head from memorising: of the flipped training labels, the chosen head predicts the wrong (given) label
    for far fewer than the unregularised head trained the same way."""
    x, true, given, val_x, _, val_given = memorising_data(seed)
    y = targets(given, "binary", 2)
    strengths = [0.0, 0.01, 0.1, 1.0, 10.0]
    common = dict(task="binary", loss="bce", epochs=60, batch_size=16, learning_rate=0.01, seed=seed)
    grid = fit_head_grid(x, y, grid=[point("bce", s) for s in strengths], **common)
    val_scores = probabilities(grid.logits(val_x), "binary")[..., 0].astype(np.float64)
    chosen = select(
        val_scores, val_given, task="binary", metric="balanced_accuracy", transition=None, select_epoch="last"
    )
    flipped = given != true

    def fitted_flips(index: int) -> float:
        predicted = predict_labels(grid.head(-1, index).predict_proba(x), "binary")
        return float(np.mean(predicted[flipped] == given[flipped]))

    assert strengths[chosen.point] >= 1.0  # measured: 10, 10, 1 for seeds 0-2
    assert fitted_flips(0) == 1.0  # unregularised: it memorises every flip
    # With 200 dimensions for 100 rows each row's own term still sways its logit under strong L2 (the
    # ridge effect): measured 0.73, 0.60, 0.73 of the flips fitted.
    assert fitted_flips(chosen.point) <= 0.8
