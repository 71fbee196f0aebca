"""The head-mode classifier, fit to its optimum: standardise the features, then one Dense layer whose logits
give a sigmoid (binary) or softmax (multiclass) output, minimising the mean loss + λ/2·|kernel|² (the bias
unpenalised, as scikit-learn's LogisticRegression) by full-batch L-BFGS to a stated gradient tolerance
(scipy.optimize, METHOD) on the gradients the losses derive (stages.lib.losses.logit_gradient), in float64.

Why not mini-batch SGD/Adam: a head stopped after a fixed number of steps is wherever the optimiser happened
to be — its bias still moving, its outputs no probabilities, and most of the spread between repeats the
optimiser's rather than the data's (docs/losses.md, "How a head trains"). A full-batch method reaches the
optimum of a convex objective to the stated tolerance in a few hundred iterations, well under a second.

Where it starts (deterministic, so a head is a function of its data and grid point alone):
- cross-entropy (`bce`): kernel 0 and the bias at the training labels' prior log-odds; its objective is
  strictly convex in the kernel, so the start only changes how fast it gets there. A grid's strengths are
  fit strongest first, each from the previous optimum.
- every other loss (several are not convex: l1, gce, sce, bootstrap, forward): the cross-entropy optimum at
  the same λ, from which the optimiser descends to a stationary point of the loss's own objective — the usual
  warm start of a robust loss from its convex surrogate, and the same start for every repeat.

The features are standardised with the training pool's statistics; when there are fewer training rows than
features, the optimisation runs in an orthonormal basis of the rows' span (an L2-penalised linear model's
kernel lies there at every stationary point: its gradient Xᵀg + λw vanishes only for w in the row space),
the same problem with fewer unknowns.

Names: `loss` and `accuracy` are on the training labels (as trained on), `test_*` on the test set's true
labels, `val_*` on the validation labels the variant has (noisy for a noisy variant).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from stages.lib.core.params import GridPoint
from stages.lib.losses import logit_gradient, make_loss, probabilities
from stages.lib.train.linear_head import LinearHead, standardisation

# The optimiser stops when no component of the objective's gradient (in the coordinates it optimises) exceeds this,
# or after MAX_ITERATIONS; the final gradient norm is recorded per seed and grid point either way.
GRADIENT_TOLERANCE = 1e-6
MAX_ITERATIONS = 2000
# scipy.optimize's L-BFGS-B (no bounds), 20 corrections, stopping on the gradient only (ftol 0): on the digits'
# features 3-10x faster than its nonlinear conjugate gradients to the same optimum (benchmarks/heads.py prints
# both), with one BLAS thread (with several, on a busy machine, its bookkeeping slowed it tenfold).
METHOD = "L-BFGS-B"
METHOD_OPTIONS = {"ftol": 0.0, "maxcor": 20}
# The loss whose optimum is every other loss's start (stages.lib.losses.bce: binary or categorical CE).
START_LOSS = "bce"

# History keys (docs/losses.md): on the training labels `loss`, `accuracy`; on the test set `test_loss`,
# `test_accuracy` (monitoring only); fine-tuning's per epoch, on the validation labels, `val_accuracy` (at
# threshold 0.5) and `val_score`, the selection score (train.select_by, stages.lib.train.selection).
TEST_LOSS, TEST_ACCURACY, VAL_ACCURACY, VAL_SCORE = "test_loss", "test_accuracy", "val_accuracy", "val_score"
# Their DVCLive metric names, the same for both trainers.
LOG_NAMES = {
    "loss": "train/loss",
    "accuracy": "train/accuracy",
    TEST_LOSS: "test/loss",
    TEST_ACCURACY: "test/accuracy",
    VAL_ACCURACY: "val/accuracy",
    VAL_SCORE: "val/score",
}


def _accuracy(y: np.ndarray, logits: np.ndarray, task: str) -> np.ndarray:
    """Per sample and model, 1/0: the evaluate stage's rule (stages.lib.evaluate.metrics.predict_labels, threshold 0.5)
    on the probabilities. `y` (N, K); `logits` (N, M, K) for M models; returns (N, M)."""
    labels = (y[:, 0] > 0.5).astype(np.int64) if task == "binary" else y.argmax(axis=1)
    p = probabilities(logits, task)
    predicted = (p[..., 0] >= 0.5).astype(np.int64) if task == "binary" else p.argmax(axis=-1)
    return (predicted == labels[:, None]).astype(np.float64)


@dataclass(frozen=True)
class Coordinates:
    """The training features standardised and, with fewer rows than features, in an orthonormal basis of
    their span: features -> (N, r) float64. `basis` (D, r) maps a kernel back (None: the features' own axes)."""

    mean: np.ndarray
    std: np.ndarray
    basis: np.ndarray | None

    @classmethod
    def of(cls, train_features: np.ndarray) -> Coordinates:
        mean, std = standardisation(train_features)
        x = (np.asarray(train_features, dtype=np.float64) - mean) / std
        if x.shape[0] >= x.shape[1]:
            return cls(mean, std, None)
        # x = U S Vᵀ from the Gram matrix x xᵀ = U S² Uᵀ (cheaper than an SVD of x): basis V = xᵀ U S⁻¹.
        eigenvalues, u = np.linalg.eigh(x @ x.T)
        keep = eigenvalues > eigenvalues.max() * 1e-10
        return cls(mean, std, (x.T @ u[:, keep]) / np.sqrt(eigenvalues[keep]))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return x if self.basis is None else x @ self.basis

    def kernel(self, weights: np.ndarray) -> np.ndarray:
        """A kernel in the features' axes (D, K) from one in these coordinates (r, K)."""
        return weights if self.basis is None else self.basis @ weights


@dataclass(frozen=True)
class Fit:
    """One head at its optimum, in a grid's coordinates: the kernel (r, K) and bias (K,), how the optimiser got there,
    and its iterates (each row the flattened kernel then the bias) for the training curves."""

    weights: np.ndarray
    bias: np.ndarray
    iterations: int
    gradient_norm: float  # the Euclidean norm of the objective's gradient at the end
    converged: bool  # the gradient met GRADIENT_TOLERANCE within MAX_ITERATIONS
    path: np.ndarray  # (iterations + 1, r·K + K), the start first

    @property
    def solution(self) -> np.ndarray:
        return np.concatenate([self.weights.ravel(), self.bias])


def objective(
    x: np.ndarray, y: np.ndarray, loss: Callable, gradient: Callable, l2: float
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """The head's objective on coordinates `x` (N, r) and targets `y` (N, K): θ (the flattened kernel, then the
    bias) -> (mean loss + λ/2·|kernel|², its gradient)."""
    n, r = x.shape
    units = y.shape[1]

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = theta[: r * units].reshape(r, units), theta[r * units :]
        logits = x @ weights + bias
        value = float(np.mean(loss(y, logits))) + 0.5 * l2 * float(np.sum(weights * weights))
        dz = gradient(y, logits) / n  # each sample counts 1/n in the mean
        return value, np.concatenate([(x.T @ dz + l2 * weights).ravel(), dz.sum(axis=0)])

    return value_and_gradient


def minimise(
    function: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, rows: int, units: int
) -> Fit:
    """METHOD from `start` to GRADIENT_TOLERANCE; `rows` × `units` is the kernel's shape."""
    path = [start.copy()]
    result = optimize.minimize(
        function,
        start,
        jac=True,
        method=METHOD,
        callback=lambda theta: path.append(np.array(theta)),
        options={"maxiter": MAX_ITERATIONS, "gtol": GRADIENT_TOLERANCE, **METHOD_OPTIONS},
    )
    _, final_gradient = function(result.x)
    return Fit(
        weights=result.x[: rows * units].reshape(rows, units),
        bias=result.x[rows * units :],
        iterations=int(result.nit),
        gradient_norm=float(np.linalg.norm(final_gradient)),
        converged=bool(np.abs(final_gradient).max() <= GRADIENT_TOLERANCE),
        path=np.array(path),
    )


def prior_log_odds(y: np.ndarray) -> np.ndarray:
    """The bias of a kernel-0 head that predicts the training labels' class shares: binary log(π / (1 − π)),
    multiclass the centred log shares (a share of 0 is floored at half a sample)."""
    shares = np.clip(y.mean(axis=0), 0.5 / len(y), 1 - 0.5 / len(y))
    if y.shape[1] == 1:
        return np.log(shares) - np.log1p(-shares)
    logs = np.log(shares)
    return logs - logs.mean()


@dataclass(frozen=True)
class HeadGrid:
    """A variant's grid of heads for one repeat, each at its optimum, in one set of coordinates."""

    coordinates: Coordinates
    fits: tuple[Fit, ...]
    task: str

    def head(self, point: int) -> LinearHead:
        """Head `point` as a model in the features' axes (float32, saved per repeat)."""
        fit, c = self.fits[point], self.coordinates
        return LinearHead(
            c.mean.astype(np.float32),
            c.std.astype(np.float32),
            c.kernel(fit.weights).astype(np.float32),
            fit.bias.astype(np.float32),
            self.task,
        )

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Every head's logits on `features`: (N, G, K), float64."""
        return logits_at(self.fits, self.coordinates(features))

    def path_logits(self, x: np.ndarray, point: int) -> np.ndarray:
        """Head `point`'s logits at each of its iterates, on rows `x` already in these coordinates:
        (N, iterations + 1, K)."""
        path = self.fits[point].path
        units = self.fits[point].bias.shape[0]
        weights = path[:, :-units].reshape(len(path), x.shape[1], units)
        return np.einsum("nr,irk->nik", x, weights) + path[None, :, -units:]


def logits_at(fits: Sequence[Fit], x: np.ndarray) -> np.ndarray:
    """Every head's logits on rows `x` already in their coordinates: (N, G, K), float64."""
    return np.stack([x @ fit.weights + fit.bias for fit in fits], axis=1)


def fit_head_grid(
    features: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    loss: str,
    grid: Sequence[GridPoint],
    transition: np.ndarray | None = None,
    coordinates: Coordinates | None = None,
) -> HeadGrid:
    """Every head of `grid` fit to its optimum on `features` and targets `y` (what stages.lib.core.variants.targets
    gives: (N, 1) floats or one-hot (N, K)). `transition`: the forward loss's noise transition matrix;
    `coordinates`: Coordinates.of(features), where the caller has them already."""
    coordinates = coordinates or Coordinates.of(features)
    fits = fit_in_coordinates(coordinates(features), y, task=task, loss=loss, grid=grid, transition=transition)
    return HeadGrid(coordinates, fits, task)


def fit_in_coordinates(
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    loss: str,
    grid: Sequence[GridPoint],
    transition: np.ndarray | None = None,
) -> tuple[Fit, ...]:
    """fit_head_grid's heads on rows `x` already in Coordinates (N, r)."""
    y = np.asarray(y, dtype=np.float64)
    rows, units = x.shape[1], y.shape[1]
    start_loss = (
        make_loss(START_LOSS, task, backend="numpy", dtype="float64"),
        logit_gradient(START_LOSS, task, dtype="float64"),
    )
    strengths = [point.l2 if point.l2 is not None else 1.0 / len(y) for point in grid]
    # The cross-entropy optimum per strength, strongest first, each from the previous one.
    start = np.concatenate([np.zeros(rows * units), prior_log_odds(y)])
    starts: dict[float, Fit] = {}
    for l2 in sorted(set(strengths), reverse=True):
        starts[l2] = minimise(objective(x, y, *start_loss, l2), start, rows, units)
        start = starts[l2].solution
    if loss == START_LOSS:
        return tuple(starts[l2] for l2 in strengths)
    fits = []
    for point, l2 in zip(grid, strengths, strict=True):
        own = (
            make_loss(loss, task, point.loss_params, backend="numpy", transition=transition, dtype="float64"),
            logit_gradient(loss, task, point.loss_params, transition=transition, dtype="float64"),
        )
        fits.append(minimise(objective(x, y, *own, l2), starts[l2].solution, rows, units))
    return tuple(fits)


def path_history(
    grid: HeadGrid,
    point: int,
    train_x: np.ndarray,
    y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    loss: str,
    loss_params: dict | None,
    transition: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """Head `point`'s values at each iterate of its optimiser (the start first): `loss` and `accuracy` on the
    training labels it was fit to, `test_loss` and `test_accuracy` on the test set (its own loss; threshold
    0.5). `train_x`, `test_x`: the rows in the grid's coordinates."""
    task = grid.task
    loss_fn = make_loss(loss, task, loss_params, backend="numpy", transition=transition, dtype="float64")
    history: dict[str, list[float]] = {}
    for (loss_key, accuracy_key), x, targets_ in (
        (("loss", "accuracy"), train_x, y),
        ((TEST_LOSS, TEST_ACCURACY), test_x, test_y),
    ):
        targets_ = np.asarray(targets_, dtype=np.float64)
        logits = grid.path_logits(x, point)  # (N, I, K)
        n, steps, k = logits.shape
        values = loss_fn(np.tile(targets_, (steps, 1)), logits.transpose(1, 0, 2).reshape(-1, k))
        history[loss_key] = [float(v) for v in values.reshape(steps, n).mean(axis=1)]
        history[accuracy_key] = [float(v) for v in _accuracy(targets_, logits, task).mean(axis=0)]
    return history


def out_of_fold_logits(
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    loss: str,
    point: GridPoint,
    folds: int,
    transition: np.ndarray | None = None,
) -> np.ndarray | None:
    """(N, K) logits of each training row from the head of `point` fit on the other folds (StratifiedKFold on
    the given labels, shuffled with a fixed seed: a head stays a function of its labels), or None where a
    class has fewer than `folds` rows. `x`: the training pool in its Coordinates, which the folds share (their
    standardisation uses every row's features, never a label; a fold's optimum lies in its rows' span, inside
    the pool's)."""
    # Here, not at the top: fine-tuning's LP-FT fits heads without folds, and the GPU kit carries no scikit-learn.
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(y)[:, 0].astype(np.int64) if y.shape[1] == 1 else np.asarray(y).argmax(axis=1)
    if np.bincount(labels, minlength=max(2, y.shape[1])).min() < folds:
        return None
    out = np.empty((len(labels), y.shape[1]))
    for rows, held_out in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, labels):
        fits = fit_in_coordinates(x[rows], y[rows], task=task, loss=loss, grid=[point], transition=transition)
        out[held_out] = logits_at(fits, x[held_out])[:, 0]
    return out
