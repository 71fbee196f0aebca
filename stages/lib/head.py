"""The head-mode classifier, trained in NumPy: standardise the features, then one Dense layer whose logits
give a sigmoid (binary) or softmax (multiclass) output, fit by mini-batch Adam.

It is the same model, optimiser and schedule as the Keras head of fine-tuning mode
(stages.lib.finetune.model.build_head: Normalization, Dense with Glorot-uniform kernel and zero bias,
Keras' Adam, shuffled mini-batches, the mean loss per batch), written out in NumPy because a head on
2,048 cached features trains in well under a second while loading TensorFlow takes 3-4 s: in head
mode, the train stage's processes (one per variant) never load it. The losses and their gradients (on
the logits) come from stages.lib.losses.

A *grid* of heads trains at once (`fit_head_grid`): one start, one batch order, one Adam per head, and
per head its own L2 strength λ (the objective is the batch-mean loss + λ/2·|kernel|², the bias unpenalised,
as scikit-learn's LogisticRegression) and its own loss params; the heads' kernels sit side by side in one
matrix, so a step costs one matrix product for all of them. It returns every head after every epoch; what
to keep is chosen elsewhere (stages.lib.selection).

Names: `loss` and `accuracy` are on the training labels (as trained on), `test_*` on the test set's true
labels, `val_*` on the validation labels the variant has (noisy for a noisy variant).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stages.lib.adam import Adam
from stages.lib.linear_head import LinearHead
from stages.lib.losses import logit_gradient, make_loss, probabilities
from stages.lib.losses import registry as loss_registry
from stages.lib.params import GridPoint


def _accuracy(y: np.ndarray, logits: np.ndarray, task: str) -> np.ndarray:
    """Per sample and head, 1/0: the evaluate stage's rule (stages.lib.metrics.predict_labels, threshold 0.5)
    on the probabilities. `y` (N, K); `logits` (N, G, K) for G heads; returns (N, G)."""
    labels = (y[:, 0] > 0.5).astype(np.int64) if task == "binary" else y.argmax(axis=1)
    p = probabilities(logits, task)
    predicted = (p[..., 0] >= 0.5).astype(np.int64) if task == "binary" else p.argmax(axis=-1)
    return (predicted == labels[:, None]).astype(np.float64)


EpochLog = Callable[[int, dict[str, float]], None]
# History keys (docs/losses.md): on the training labels `loss`, `accuracy`; on the test set `test_loss`,
# `test_accuracy` (monitoring only); on the validation labels `val_accuracy` (at threshold 0.5) and
# `val_score`, the selection score (stages.lib.selection).
TEST_LOSS, TEST_ACCURACY, VAL_ACCURACY, VAL_SCORE = "test_loss", "test_accuracy", "val_accuracy", "val_score"
# Their DVCLive metric names, the same for both trainers (fine-tuning logs no val_score).
LOG_NAMES = {
    "loss": "train/loss",
    "accuracy": "train/accuracy",
    TEST_LOSS: "test/loss",
    TEST_ACCURACY: "test/accuracy",
    VAL_ACCURACY: "val/accuracy",
    VAL_SCORE: "val/score",
}


def selected_epoch(history: dict[str, list[float]], select_epoch: str) -> int:
    """The 0-based epoch whose model is kept: the last, or (`val`) the first with the best validation accuracy."""
    if select_epoch == "val":
        return int(np.argmax(history[VAL_ACCURACY]))  # argmax: ties go to the earliest epoch
    return len(history["loss"]) - 1


@dataclass
class HeadGrid:
    """A grid of heads after every epoch: one standardisation, per epoch e and head g a kernel and a bias,
    and the logits each head gave each training sample as it was trained on (for the training curves: a
    loss per head and step would cost as much as the step's gradient)."""

    start: LinearHead  # the standardisation and the initial weights every head shares
    kernels: np.ndarray  # (E, G, D, K) float32
    biases: np.ndarray  # (E, G, K)
    targets: np.ndarray  # (N, K) the training targets
    orders: np.ndarray  # (E, N) each epoch's sample order
    trained_logits: np.ndarray  # (E, N, G, K) the logits of orders[e][i] in its batch, before its step

    def head(self, epoch: int, point: int) -> LinearHead:
        """Head `point` after epoch `epoch` (0-based)."""
        s = self.start
        return LinearHead(s.mean, s.std, self.kernels[epoch, point].copy(), self.biases[epoch, point].copy(), s.task)

    def logits(self, features: np.ndarray, point: int | None = None) -> np.ndarray:
        """Every epoch's (and head's) logits on `features`: (N, E, G, K), or (N, E, K) for one `point`; one
        matrix product."""
        x = self.start.standardise(features)
        kernels = self.kernels if point is None else self.kernels[:, point : point + 1]
        biases = self.biases if point is None else self.biases[:, point : point + 1]
        e, g, d, k = kernels.shape
        flat = np.moveaxis(kernels, 2, 0).reshape(d, e * g * k)
        out = (x @ flat).reshape(len(x), e, g, k) + biases[None]
        return out[:, :, 0] if point is not None else out


def _loss_groups(grid: Sequence[GridPoint]) -> list[tuple[dict, np.ndarray]]:
    """The grid's heads grouped by loss params (heads that differ only in λ share one loss call)."""
    groups: dict[str, tuple[dict, list[int]]] = {}
    for index, point in enumerate(grid):
        groups.setdefault(repr(sorted(point.loss_params.items())), (point.loss_params, []))[1].append(index)
    return [(params, np.array(indices)) for params, indices in groups.values()]


LossGroup = tuple[Callable, Callable, np.ndarray]  # (per-sample loss, its logit gradient, the heads using them)


def penalised_gradients(
    xb: np.ndarray,
    yb: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray,
    groups: Sequence[LossGroup],
    l2: np.ndarray | None,
    with_loss: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, list[np.ndarray]]:
    """One batch for every head: the summed loss per head (G,; None without `with_loss`), the logits
    (n, G, K), and the gradients of each head's objective, the batch-mean loss + λ_g/2·|kernel_g|², with
    respect to the kernel (D, G·K) and the bias (G·K,). `l2`: λ per column (G·K,), or None for no penalty."""
    n, units = yb.shape
    heads = kernel.shape[1] // units
    logits = (xb @ kernel + bias).astype(np.float32).reshape(n, heads, units)
    losses = np.zeros(heads) if with_loss else None
    dz = np.empty_like(logits)
    for loss_fn, gradient_fn, idx in groups:
        # The group's heads stacked as rows: (heads_in_group * n, K), one loss call for them all.
        z = logits[:, idx].transpose(1, 0, 2).reshape(-1, units)
        targets_ = np.tile(yb, (len(idx), 1))
        if losses is not None:
            losses[idx] = loss_fn(targets_, z).reshape(len(idx), n).sum(axis=1)
        # The batch's mean loss: each sample's gradient counts 1/n.
        dz[:, idx] = (gradient_fn(targets_, z) / n).reshape(len(idx), n, units).transpose(1, 0, 2)
    dz = dz.reshape(n, heads * units)
    kernel_gradient = xb.T @ dz
    if l2 is not None:
        kernel_gradient += l2 * kernel
    return losses, logits, [kernel_gradient, dz.sum(axis=0)]


def loss_groups(
    loss: str, task: str, grid: Sequence[GridPoint], transition: np.ndarray | None = None
) -> list[LossGroup]:
    """The grid's heads grouped by loss params, each group with its NumPy loss and logit gradient (heads
    that differ only in λ share one loss call per batch)."""
    return [
        (
            make_loss(loss, task, params, backend="numpy", transition=transition),
            logit_gradient(loss, task, params, transition=transition),
            indices,
        )
        for params, indices in _loss_groups(grid)
    ]


def fit_head_grid(
    features: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    loss: str,
    grid: Sequence[GridPoint],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    transition: np.ndarray | None = None,
) -> HeadGrid:
    """Train every head of `grid` from one seeded start on one batch order; keep each after every epoch.

    `y`: what stages.lib.labels.targets gives ((N, 1) floats or one-hot (N, K)). The seed draws the kernel
    and each epoch's shuffle, as for a single head: a one-point grid with λ = 0 is the unregularised head.
    `transition`: the forward loss's noise transition matrix (stages.lib.losses.make_loss).
    """
    y = np.asarray(y, dtype=np.float32)
    rng = np.random.default_rng(seed)
    units, heads = y.shape[1], len(grid)
    start = LinearHead.initial(features, task, units=units, seed=int(rng.integers(2**31)))
    x = start.standardise(features)
    dim = x.shape[1]
    groups = loss_groups(loss, task, grid, transition)
    # The heads side by side: column g * K + k is head g's unit k.
    kernel = np.tile(start.kernel, (1, heads))
    bias = np.tile(start.bias, heads)
    l2 = np.repeat(np.array([p.l2 for p in grid], dtype=np.float32), units)
    penalised = bool(np.any(l2 > 0))
    optimiser = Adam(learning_rate, [kernel, bias])
    kernels = np.empty((epochs, heads, dim, units), dtype=np.float32)
    biases = np.empty((epochs, heads, units), dtype=np.float32)
    orders = np.empty((epochs, len(x)), dtype=np.int64)
    trained_logits = np.empty((epochs, len(x), heads, units), dtype=np.float32)
    for epoch in range(epochs):
        order = orders[epoch] = rng.permutation(len(x))
        for begin in range(0, len(order), batch_size):
            batch = order[begin : begin + batch_size]
            _, logits, gradients = penalised_gradients(
                x[batch], y[batch], kernel, bias, groups, l2 if penalised else None, with_loss=False
            )
            trained_logits[epoch, begin : begin + len(batch)] = logits
            optimiser.apply(gradients)
        kernels[epoch] = kernel.reshape(dim, heads, units).transpose(1, 0, 2)
        biases[epoch] = bias.reshape(heads, units)
    return HeadGrid(start, kernels, biases, y, orders, trained_logits)


def grid_history(
    grid: HeadGrid,
    point: int,
    test_features: np.ndarray,
    test_y: np.ndarray,
    *,
    task: str,
    loss: str,
    loss_params: dict | None,
    transition: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """One head's per-epoch history: `loss`, `accuracy` (training labels, as trained on: the epoch's mean
    over its samples of the logits they had in their batch, as Keras logs it) and `test_loss`,
    `test_accuracy` (the test set, after each epoch; the head's own loss)."""
    test_y = np.asarray(test_y, dtype=np.float32)
    logits = grid.logits(test_features, point)  # (N, E, K)
    n, e, k = logits.shape
    loss_fn = make_loss(loss, task, loss_params, backend="numpy", transition=transition)
    test_loss = loss_fn(np.tile(test_y, (e, 1)), logits.transpose(1, 0, 2).reshape(-1, k)).reshape(e, n).mean(axis=1)
    test_accuracy = _accuracy(test_y, logits, task).mean(axis=0)
    epochs, rows = grid.orders.shape
    trained = grid.trained_logits[:, :, point].reshape(epochs * rows, k)
    trained_y = grid.targets[grid.orders.reshape(-1)]
    train_loss = loss_fn(trained_y, trained).reshape(epochs, rows).mean(axis=1)
    train_accuracy = _accuracy(trained_y, trained[:, None], task).reshape(epochs, rows).mean(axis=1)
    return {
        "loss": [float(v) for v in train_loss],
        "accuracy": [float(v) for v in train_accuracy],
        TEST_LOSS: [float(v) for v in test_loss],
        TEST_ACCURACY: [float(v) for v in test_accuracy],
    }


def fit_linear_head(
    features: np.ndarray,
    y: np.ndarray,
    test_features: np.ndarray,
    test_y: np.ndarray,
    *,
    task: str,
    loss: str,
    loss_params: dict | None,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    on_epoch: EpochLog | None = None,
    transition: np.ndarray | None = None,
    val_features: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    select_epoch: str = "last",
    l2: float = 0.0,
) -> tuple[LinearHead, dict[str, list[float]]]:
    """Fit one head (a one-point grid) from a seeded start; returns the head of the selected epoch and its history.

    History: per epoch `loss`, `accuracy` (training labels), `test_loss`, `test_accuracy` (the test set), and
    with a non-empty validation set `val_accuracy` (the validation labels, threshold 0.5); with
    `select_epoch="val"` the head returned is the one after the epoch that maximised it (`selected_epoch`),
    else the last epoch's. on_epoch(epoch, that epoch's values) is called for each epoch after training.
    """
    validating = val_features is not None and val_y is not None and len(val_y) > 0
    if select_epoch == "val" and not validating:
        raise ValueError("select_epoch='val' needs a non-empty validation set (val_features, val_y)")
    # Params come checked; those left out get the loss's defaults.
    point = GridPoint(float(l2), loss_registry.get(loss).complete(loss_params), {"l2": float(l2)})
    grid = fit_head_grid(
        features,
        y,
        task=task,
        loss=loss,
        grid=[point],
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        transition=transition,
    )
    history = grid_history(
        grid, 0, test_features, test_y, task=task, loss=loss, loss_params=loss_params, transition=transition
    )
    if validating:
        val_y = np.asarray(val_y, dtype=np.float32)
        history[VAL_ACCURACY] = _accuracy(val_y, grid.logits(val_features, 0), task).mean(axis=0).tolist()
    if on_epoch is not None:
        for epoch in range(epochs):
            on_epoch(epoch, {key: values[epoch] for key, values in history.items()})
    if epochs == 0:
        return grid.start, history
    return grid.head(selected_epoch(history, select_epoch), 0), history
