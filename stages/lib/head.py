"""The head-mode classifier, trained in NumPy: standardise the features, then one Dense layer whose logits
give a sigmoid (binary) or softmax (multiclass) output, fit by mini-batch Adam.

It is the same model, optimiser and schedule as the Keras head of fine-tuning mode
(stages.lib.finetune.model.build_head: Normalization, Dense with Glorot-uniform kernel and zero bias,
Keras' Adam, shuffled mini-batches, the mean loss per batch), written out in NumPy because a head on
2,048 cached features trains in well under a second while loading TensorFlow takes 3-4 s: in head
mode, the train stage's processes (one per variant) never load it. The losses and their gradients (on
the logits) come from stages.lib.losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.lib.losses import logit_gradient, make_loss, probabilities
from stages.lib.metrics import predict_labels

# Keras' defaults: Normalization's floor on the standard deviation, Adam's betas and epsilon.
STD_FLOOR = 1e-7
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7


@dataclass
class LinearHead:
    """Standardisation (fitted on the training features) + Dense; float32 throughout."""

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    kernel: np.ndarray  # (D, units)
    bias: np.ndarray  # (units,)
    task: str

    @classmethod
    def initial(cls, train_features: np.ndarray, task: str, units: int, seed: int) -> LinearHead:
        """Standardisation fitted on train_features; Glorot-uniform kernel drawn from seed, zero bias."""
        features = np.asarray(train_features, dtype=np.float32)
        dim = features.shape[1]
        limit = np.sqrt(6.0 / (dim + units))
        kernel = np.random.default_rng(seed).uniform(-limit, limit, size=(dim, units)).astype(np.float32)
        return cls(
            mean=features.mean(axis=0),
            std=np.maximum(features.std(axis=0), STD_FLOOR).astype(np.float32),
            kernel=kernel,
            bias=np.zeros(units, dtype=np.float32),
            task=task,
        )

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float32) - self.mean) / self.std

    def logits(self, standardised: np.ndarray) -> np.ndarray:
        """The output unit(s) the loss sees, before the sigmoid / softmax: (N, 1) or (N, K), float32."""
        return (standardised @ self.kernel + self.bias).astype(np.float32)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(positive) as (N,) for binary, class probabilities (N, K) for multiclass; float64 (of float32)."""
        out = probabilities(self.logits(self.standardise(features)), self.task).astype(np.float64)
        return out[:, 0] if self.task == "binary" else out

    def save(self, path: Path) -> None:
        """One .npz file; `path` is written as given (no suffix appended)."""
        with open(path, "wb") as handle:
            np.savez(handle, mean=self.mean, std=self.std, kernel=self.kernel, bias=self.bias, task=self.task)

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        with np.load(path) as saved:
            return cls(
                mean=saved["mean"],
                std=saved["std"],
                kernel=saved["kernel"],
                bias=saved["bias"],
                task=str(saved["task"]),
            )


class Adam:
    """Keras 3's Adam update, for a list of float32 arrays updated in place."""

    def __init__(self, learning_rate: float, variables: list[np.ndarray]) -> None:
        self.learning_rate = learning_rate
        self.variables = variables
        self.m = [np.zeros_like(v) for v in variables]
        self.v = [np.zeros_like(v) for v in variables]
        self.iterations = 0

    def apply(self, gradients: list[np.ndarray]) -> None:
        self.iterations += 1
        t = self.iterations
        step = self.learning_rate * np.sqrt(1.0 - ADAM_BETA_2**t) / (1.0 - ADAM_BETA_1**t)
        for variable, gradient, m, v in zip(self.variables, gradients, self.m, self.v, strict=True):
            m += (1.0 - ADAM_BETA_1) * (gradient - m)
            v += (1.0 - ADAM_BETA_2) * (gradient * gradient - v)
            variable -= (step * m / (np.sqrt(v) + ADAM_EPSILON)).astype(np.float32)


def _accuracy(y: np.ndarray, logits: np.ndarray, task: str) -> np.ndarray:
    """Per-sample 1/0: the evaluate stage's rule (stages.lib.metrics.predict_labels) on the probabilities
    predict_proba gives, so training and test accuracy count a sample at exactly 0.5 the same way."""
    labels = (y[:, 0] > 0.5).astype(np.int64) if task == "binary" else y.argmax(axis=1)
    return (predict_labels(probabilities(logits, task), task) == labels).astype(np.float64)


EpochLog = Callable[[int, dict[str, float]], None]
# History key of the per-epoch accuracy on the validation labels (noisy for a `-noisy` variant): what
# `select_epoch="val"` maximises. Keras' `val_*` keys are the test set's here (monitoring only).
VALIDATION_ACCURACY = "validation_accuracy"
VALIDATION_ACCURACY_LOG = "validation/accuracy"  # its DVCLive metric name, the same for both trainers


def selected_epoch(history: dict[str, list[float]], select_epoch: str) -> int:
    """The 0-based epoch whose model is kept: the last, or (`val`) the first with the best validation accuracy."""
    if select_epoch == "val":
        return int(np.argmax(history[VALIDATION_ACCURACY]))  # argmax: ties go to the earliest epoch
    return len(history["loss"]) - 1


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
) -> tuple[LinearHead, dict[str, list[float]]]:
    """Fit a head from a seeded start; returns the head of the selected epoch and the history.

    `y`, `test_y`: what stages.lib.labels.targets gives ((N, 1) floats or one-hot (N, K)). The seed draws
    the kernel and each epoch's shuffle. History, as Keras' `History.history`: per epoch, `loss` and
    `accuracy` averaged over the epoch's batches as they were trained on (the labels fitted), `val_loss`
    and `val_accuracy` on the test set after the epoch. on_epoch(epoch, those four) is called after each.
    `transition`: the forward loss's noise transition matrix (stages.lib.losses.make_loss).
    `val_features`, `val_y`: the validation set and the labels the variant has for it (noisy for a noisy
    variant); with at least one row, the history gains `validation_accuracy` per epoch, and with
    `select_epoch="val"` the head returned is the one after the epoch that maximised it (`selected_epoch`);
    else the last epoch's. Training itself is the same either way.
    """
    loss_fn = make_loss(loss, task, loss_params, backend="numpy", transition=transition)
    gradient_fn = logit_gradient(loss, task, loss_params, transition=transition)
    y = np.asarray(y, dtype=np.float32)
    test_y = np.asarray(test_y, dtype=np.float32)
    rng = np.random.default_rng(seed)
    head = LinearHead.initial(features, task, units=y.shape[1], seed=int(rng.integers(2**31)))
    x, test_x = head.standardise(features), head.standardise(test_features)
    optimiser = Adam(learning_rate, [head.kernel, head.bias])
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    validating = val_features is not None and val_y is not None and len(val_y) > 0
    if select_epoch == "val" and not validating:
        raise ValueError("select_epoch='val' needs a non-empty validation set (val_features, val_y)")
    if validating:
        val_x, val_y = head.standardise(val_features), np.asarray(val_y, dtype=np.float32)
        history[VALIDATION_ACCURACY] = []
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        losses, hits = [], []
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            logits = head.logits(x[batch])
            losses.append(loss_fn(y[batch], logits))
            hits.append(_accuracy(y[batch], logits, task))
            # The batch's mean loss: each sample's gradient counts 1/len(batch).
            dz = gradient_fn(y[batch], logits) / len(batch)
            optimiser.apply([x[batch].T @ dz, dz.sum(axis=0)])
        test_logits = head.logits(test_x)
        values = {
            "loss": float(np.mean(np.concatenate(losses))),
            "accuracy": float(np.mean(np.concatenate(hits))),
            "val_loss": float(np.mean(loss_fn(test_y, test_logits))),
            "val_accuracy": float(np.mean(_accuracy(test_y, test_logits, task))),
        }
        if validating:
            values[VALIDATION_ACCURACY] = float(np.mean(_accuracy(val_y, head.logits(val_x), task)))
            if select_epoch == "val" and (best is None or values[VALIDATION_ACCURACY] > best[0]):
                best = (values[VALIDATION_ACCURACY], head.kernel.copy(), head.bias.copy())
        for key, value in values.items():
            history[key].append(value)
        if on_epoch is not None:
            on_epoch(epoch, values)
    if best is not None:
        # The optimiser updated these arrays in place: the selected epoch's weights go back into them.
        head.kernel[...], head.bias[...] = best[1], best[2]
    return head, history
