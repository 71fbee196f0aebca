"""Unit tests for stages.lib.train.head: heads fit to the optimum of their regularised objective, checked against
scikit-learn's logistic regression, central differences and the stationarity of what they return."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from stages.lib.core.params import GridPoint
from stages.lib.core.variants import targets
from stages.lib.losses import LOSS_NAMES, logit_gradient, make_loss
from stages.lib.losses.settings import validate_loss_params
from stages.lib.train.head import (
    GRADIENT_TOLERANCE,
    Coordinates,
    fit_head_grid,
    objective,
    path_history,
    prior_log_odds,
)
from stages.lib.train.linear_head import LinearHead

DIM = 12


def data(n: int, k: int, seed: int = 0, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    """Features far from zero mean (as pooled ResNet features are) whose first k dims carry the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    x = rng.gamma(2.0, 3.0, size=(n, dim)) + np.arange(dim) * 10
    x[np.arange(n), labels] += 8.0
    return x.astype(np.float32), labels


def point(loss: str, l2: float | None, **params) -> GridPoint:
    return GridPoint(l2, validate_loss_params(loss, params), {"l2": l2, **params} if l2 is not None else {})


def flipped(labels: np.ndarray, k: int, count: int, seed: int = 0) -> np.ndarray:
    out = labels.copy()
    flip = np.random.default_rng(seed).choice(len(out), size=count, replace=False)
    out[flip] = (out[flip] + 1) % k
    return out


def forward_transition(k: int, rate: float) -> np.ndarray:
    return (1 - rate) * np.eye(k) + rate * np.roll(np.eye(k), 1, axis=1)


def sklearn_head(x: np.ndarray, labels: np.ndarray, l2: float) -> LogisticRegression:
    """scikit-learn's L2 logistic regression on the standardised features: its objective, sum of log-losses +
    1/(2C)·|w|², is N times ours at C = 1/(λN)."""
    c = Coordinates.of(x)
    standardised = (x.astype(np.float64) - c.mean) / c.std
    return LogisticRegression(C=1.0 / (l2 * len(x)), tol=1e-12, max_iter=10_000).fit(standardised, labels)


@pytest.mark.parametrize(("rows", "dim"), [(120, DIM), (40, 100)])  # more rows than features, and fewer
@pytest.mark.parametrize("l2", [0.01, 1.0])
def test_a_cross_entropy_head_is_scikit_learns_logistic_regression(rows: int, dim: int, l2: float) -> None:
    """The binary CE head at λ is the optimum scikit-learn's lbfgs finds for C = 1/(λN), in the features' own
    axes or (fewer rows than features) in the rows' span."""
    x, labels = data(rows, 2, dim=dim)
    labels = flipped(labels, 2, rows // 5)
    grid = fit_head_grid(x, targets(labels, "binary", 2), task="binary", loss="bce", grid=[point("bce", l2)])
    reference = sklearn_head(x, labels, l2)
    head = grid.head(0)
    np.testing.assert_allclose(head.kernel[:, 0], reference.coef_[0], atol=2e-4 * np.abs(reference.coef_).max())
    np.testing.assert_allclose(head.bias, reference.intercept_, atol=2e-4 * max(1.0, abs(reference.intercept_[0])))
    tx, _ = data(30, 2, seed=5, dim=dim)
    standardised = (tx.astype(np.float64) - grid.coordinates.mean) / grid.coordinates.std
    np.testing.assert_allclose(head.predict_proba(tx), reference.predict_proba(standardised)[:, 1], atol=1e-4)


def test_a_multiclass_head_is_scikit_learns_multinomial_regression() -> None:
    x, labels = data(150, 3)
    grid = fit_head_grid(x, targets(labels, "multiclass", 3), task="multiclass", loss="bce", grid=[point("bce", 0.1)])
    reference = sklearn_head(x, labels, 0.1)
    tx, _ = data(30, 3, seed=5)
    standardised = (tx.astype(np.float64) - grid.coordinates.mean) / grid.coordinates.std
    ours = grid.head(0).predict_proba(tx)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(ours, reference.predict_proba(standardised), atol=1e-4)


def objective_of(loss: str, task: str, params: dict, x: np.ndarray, y: np.ndarray, l2: float, transition=None):
    return objective(
        x,
        y,
        make_loss(loss, task, params, backend="numpy", transition=transition, dtype="float64"),
        logit_gradient(loss, task, params, transition=transition, dtype="float64"),
        l2,
    )


@pytest.mark.parametrize(("task", "k"), [("binary", 2), ("multiclass", 3)])
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_the_objective_s_gradient_matches_central_differences(task: str, k: int, loss: str) -> None:
    """The gradient the optimiser follows is that of mean loss + λ/2·|kernel|² (the bias unpenalised)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(15, 4))
    y = targets(rng.integers(0, k, size=15), task, k).astype(np.float64)
    units = y.shape[1]
    transition = forward_transition(k, 0.2) if loss == "forward" else None
    function = objective_of(loss, task, validate_loss_params(loss, {}), x, y, 0.3, transition)
    theta = rng.normal(scale=0.5, size=4 * units + units)
    _, gradient = function(theta)
    step = 1e-6
    for index in range(len(theta)):
        up, down = theta.copy(), theta.copy()
        up[index] += step
        down[index] -= step
        numeric = (function(up)[0] - function(down)[0]) / (2 * step)
        assert gradient[index] == pytest.approx(numeric, rel=1e-5, abs=1e-7), (index, gradient[index], numeric)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_every_loss_s_head_ends_at_a_stationary_point_and_learns(loss: str) -> None:
    """Each head of a grid ends where its objective's gradient is below the tolerance (converged, recorded),
    and a separable task with 15 % flipped labels is learnt."""
    x, labels = data(120, 2)
    given = flipped(labels, 2, 18)
    transition = forward_transition(2, 0.15) if loss == "forward" else None
    params = {"q": 0.7} if loss == "gce" else {}
    grid = [point(loss, 0.05, **params), point(loss, 0.2, **params)]
    y = targets(given, "binary", 2)
    heads = fit_head_grid(x, y, task="binary", loss=loss, grid=grid, transition=transition)
    tx, tlabels = data(200, 2, seed=1)
    for index, fit in enumerate(heads.fits):
        assert fit.converged and fit.iterations > 0
        c = heads.coordinates
        function = objective_of(
            loss, "binary", grid[index].loss_params, c(x), y.astype(np.float64), grid[index].l2, transition
        )
        _, gradient = function(fit.solution)
        assert np.abs(gradient).max() <= GRADIENT_TOLERANCE
        assert fit.gradient_norm == pytest.approx(np.linalg.norm(gradient))
        accuracy = np.mean((heads.head(index).predict_proba(tx) >= 0.5) == tlabels)
        assert accuracy >= 0.85, (loss, index, accuracy)


def test_robust_losses_start_from_the_cross_entropy_optimum_and_move_from_it() -> None:
    """A non-convex loss starts where cross-entropy ends at the same λ (the same start whatever the seed) and
    descends its own objective from there: L1's head is not CE's."""
    x, labels = data(120, 2)
    y = targets(flipped(labels, 2, 30), "binary", 2)
    ce = fit_head_grid(x, y, task="binary", loss="bce", grid=[point("bce", 0.05)])
    l1 = fit_head_grid(x, y, task="binary", loss="l1", grid=[point("l1", 0.05)])
    np.testing.assert_array_equal(l1.fits[0].path[0], ce.fits[0].solution)
    assert np.abs(l1.fits[0].solution - ce.fits[0].solution).max() > 1e-2
    l1_objective = objective_of("l1", "binary", {}, l1.coordinates(x), y.astype(np.float64), 0.05)
    assert l1_objective(l1.fits[0].solution)[0] < l1_objective(ce.fits[0].solution)[0]


def test_a_head_is_a_function_of_its_labels_alone() -> None:
    """No seed enters: the same labels give the same head bit for bit, other labels another head."""
    x, labels = data(120, 2)
    grid = [point("gce", 0.1, q=0.7), point("gce", 1.0, q=0.7)]
    fit = lambda given: fit_head_grid(x, targets(given, "binary", 2), task="binary", loss="gce", grid=grid)  # noqa: E731
    first, again, other = fit(labels), fit(labels.copy()), fit(flipped(labels, 2, 10))
    for a, b, c in zip(first.fits, again.fits, other.fits, strict=True):
        np.testing.assert_array_equal(a.solution, b.solution)
        assert not np.allclose(a.solution, c.solution)


def test_with_uninformative_features_the_bias_is_the_prior_log_odds() -> None:
    """The failure the heads had (issue 28): a 10 % class whose bias, started at 0, had not reached its optimum.
    With noise for features and a strong penalty the kernel is ~0 and the head predicts the label share."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 20)).astype(np.float32)
    labels = (np.arange(300) < 30).astype(np.int64)
    y = targets(labels, "binary", 2)
    heads = fit_head_grid(x, y, task="binary", loss="bce", grid=[point("bce", 1000.0)])
    assert heads.fits[0].bias[0] == pytest.approx(prior_log_odds(y)[0], abs=0.01)
    assert heads.head(0).predict_proba(x).mean() == pytest.approx(0.1, abs=0.002)


def test_the_untuned_point_is_scikit_learns_default_c_1() -> None:
    """Without a validation set nothing chooses λ: the one point is λ = 1/N, LogisticRegression's C = 1."""
    x, labels = data(80, 2)
    labels = flipped(labels, 2, 10)
    heads = fit_head_grid(x, targets(labels, "binary", 2), task="binary", loss="bce", grid=[point("bce", None)])
    reference = sklearn_head(x, labels, 1.0 / len(x))
    np.testing.assert_allclose(
        heads.head(0).kernel[:, 0], reference.coef_[0], atol=2e-4 * np.abs(reference.coef_).max()
    )


def test_the_history_follows_the_optimiser_and_its_objective_falls() -> None:
    x, labels = data(120, 2)
    y = targets(flipped(labels, 2, 20), "binary", 2)
    tx, tlabels = data(40, 2, seed=1)
    heads = fit_head_grid(x, y, task="binary", loss="bce", grid=[point("bce", 0.1)])
    c = heads.coordinates
    history = path_history(heads, 0, c(x), y, c(tx), targets(tlabels, "binary", 2), loss="bce", loss_params={})
    steps = heads.fits[0].iterations + 1
    assert all(len(values) == steps for values in history.values())
    assert set(history) == {"loss", "accuracy", "test_loss", "test_accuracy"}
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] >= 0.75  # of labels 17 % flipped


@pytest.mark.parametrize(("task", "k"), [("binary", 2), ("multiclass", 3)])
def test_saved_head_predicts_the_same_after_loading(tmp_path: Path, task: str, k: int) -> None:
    x, labels = data(60, k)
    heads = fit_head_grid(x, targets(labels, task, k), task=task, loss="bce", grid=[point("bce", 0.1)])
    head = heads.head(0)
    path = tmp_path / "seed_0.npz"
    head.save(path)
    assert path.exists() and not list(tmp_path.glob("*.npz.npz"))
    loaded = LinearHead.load(path)
    assert loaded.task == task
    tx, _ = data(20, k, seed=3)
    np.testing.assert_array_equal(loaded.predict_proba(tx), head.predict_proba(tx))
    # The saved float32 model gives the grid's own float64 logits to float32 rounding.
    z = heads.logits(tx)[:, 0]
    expected = 1 / (1 + np.exp(-z[:, 0])) if task == "binary" else np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loaded.predict_proba(tx), expected, atol=1e-5)


def test_constant_feature_does_not_divide_by_zero() -> None:
    x, labels = data(40, 2)
    x[:, 3] = 7.0
    heads = fit_head_grid(x, targets(labels, "binary", 2), task="binary", loss="bce", grid=[point("bce", 0.1)])
    assert np.all(np.isfinite(heads.head(0).predict_proba(x)))


def test_training_a_head_does_not_load_tensorflow() -> None:
    code = (
        "import sys; from tests.unit.test_head import data, point; from stages.lib.train.head import fit_head_grid;"
        "from stages.lib.core.variants import targets; x, l = data(40, 2);"
        "fit_head_grid(x, targets(l, 'binary', 2), task='binary', loss='gce', grid=[point('gce', 0.1, q=0.7)]);"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def mean_entropy(p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))


def test_soft_bootstrap_trains_differently_from_cross_entropy() -> None:
    """Reed's soft bootstrap is CE plus (1 - beta) times the prediction's entropy: on the same noisy labels its
    optimum is elsewhere, and more confident."""
    x, labels = data(120, 2)
    y = targets(flipped(labels, 2, 30), "binary", 2)
    tx, _ = data(40, 2, seed=1)
    bce = fit_head_grid(x, y, task="binary", loss="bce", grid=[point("bce", 0.1)]).head(0)
    soft = fit_head_grid(
        x, y, task="binary", loss="bootstrap", grid=[point("bootstrap", 0.1, mode="soft", beta=0.8)]
    ).head(0)
    assert np.abs(soft.kernel - bce.kernel).max() > 1e-2
    assert np.abs(soft.predict_proba(tx) - bce.predict_proba(tx)).max() > 1e-2
    assert mean_entropy(soft.predict_proba(x)) < mean_entropy(bce.predict_proba(x))


def memorising_data(seed: int) -> tuple[np.ndarray, ...]:
    """More features (200) than training rows (100), the label in 10 of them, 30 % of the labels flipped:
    a weakly penalised linear head can fit every flip."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 2, size=100)
    x = rng.normal(size=(100, 200)).astype(np.float32)
    x[:, :10] += 1.5 * true[:, None]
    given = true.copy()
    given[rng.choice(100, size=30, replace=False)] ^= 1
    return x, true, given


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_stronger_penalty_fits_fewer_flipped_training_labels(seed: int) -> None:
    """λ is what keeps a head on fewer rows than features from memorising its flipped labels."""
    x, true, given = memorising_data(seed)
    heads = fit_head_grid(
        x, targets(given, "binary", 2), task="binary", loss="bce", grid=[point("bce", 1e-4), point("bce", 10.0)]
    )
    wrong = given != true

    def fitted_flips(index: int) -> float:
        predicted = heads.head(index).predict_proba(x) >= 0.5
        return float(np.mean(predicted[wrong] == given[wrong]))

    assert fitted_flips(0) == 1.0
    assert fitted_flips(1) <= 0.8
