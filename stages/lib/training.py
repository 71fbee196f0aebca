"""Training one variant seed by seed: the interface both trainers share, DVCLive as a context manager,
the head trainer, and the per-epoch means over seeds that `dvc plots` draws.

A *trainer* is built from a `Setup` (what every seed of one variant shares) and is a function
`(y, seed, live, transition, val_y) -> Trained`: it trains one model from a seeded start on the targets `y`
(stages.lib.labels.targets), with the forward loss's noise transition matrix (None for other losses),
scores each epoch on the validation set's labels `val_y` (the variant's own: noisy for a noisy variant),
logs each epoch to the DVCLive logger `live`, and returns the model of the epoch `train.select_epoch`
picks (the last, or the best on the validation labels), its test-set scores, its per-epoch history and
how to save it. The head trainer is below; the fine-tuning
one is stages.lib.finetune.trainer. docs/fine-tuning.md says when each runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.head import VALIDATION_ACCURACY, VALIDATION_ACCURACY_LOG, fit_linear_head, selected_epoch
from stages.lib.labels import HEAD_FILE
from stages.lib.params import ModelParams, TrainParams

CURVE_METRICS = ("loss", "accuracy")
History = dict[str, list[float]]  # as Keras' History.history: loss, accuracy, val_loss, val_accuracy per epoch


@dataclass(frozen=True)
class Setup:
    """What every seed of one variant shares: its inputs (features, or images when fine-tuning), the test
    set's targets, the task, the loss, the settings, and the global seed."""

    variant: str
    inputs: np.ndarray
    val_inputs: np.ndarray  # the validation set (0 rows when data.val_size is 0)
    test_inputs: np.ndarray
    test_y: np.ndarray
    task: str
    num_classes: int
    loss: str
    settings: TrainParams
    model: ModelParams
    seed: int


@dataclass(frozen=True)
class Trained:
    """One trained model: its test-set scores (P(positive) (N,) or class probabilities (N, K)), its
    per-epoch history, and how to save it (`file_name`, a pattern with `{seed}`, names the file)."""

    scores: np.ndarray
    history: History
    save: Callable[[Path], None]
    file_name: str
    epoch: int  # the epoch of the model kept, from 1
    val_accuracy: float | None  # its accuracy on the validation labels (None without a validation set)

    @classmethod
    def selected(
        cls, scores: np.ndarray, history: History, save: Callable[[Path], None], file_name: str, select_epoch: str
    ) -> Trained:
        """A Trained whose epoch and validation accuracy are those of the epoch select_epoch picked."""
        epoch = selected_epoch(history, select_epoch)
        val = history.get(VALIDATION_ACCURACY)
        return cls(scores, history, save, file_name, epoch + 1, float(val[epoch]) if val else None)


Trainer = Callable[..., Trained]  # (y, seed, live, transition=None, val_y=None) -> Trained


@contextmanager
def live_log(log_dir: Path) -> Iterator[Any]:
    """A DVCLive logger writing into log_dir only (dvc.yaml declares the plots itself); ended on exit,
    also when training raises."""
    from dvclive import Live

    class FilesOnlyLive(Live):
        # dvc.yaml declares the logs as stage outputs: DVCLive's DVC setup (experiment names, saving
        # experiments) has nothing to do, and in dvclive 3.49.1 it asks git for HEAD before checking that
        # there is a commit, which kills a first `dvc repro` before the first commit (dvclive#522).
        def _init_dvc(self) -> None:
            self._dvc_file = "dvc.yaml"  # what DVCLive's setup sets with dvcyaml=False; never written

    with FilesOnlyLive(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        yield live


def log_epoch(live: Any, epoch: int, epochs: int, values: dict[str, float]) -> None:
    """One epoch's values, under the names DVCLive's Keras callback uses in fine-tuning (train/loss, ...)."""
    from dvclive.utils import standardize_metric_name

    for name, value in values.items():
        key = VALIDATION_ACCURACY_LOG if name == VALIDATION_ACCURACY else standardize_metric_name(name, "dvclive.keras")
        live.log_metric(key, value)
    live.next_step()
    print(f"epoch {epoch + 1}/{epochs}: " + " ".join(f"{k} {v:.4f}" for k, v in values.items()))


def head_trainer(setup: Setup) -> Trainer:
    """Heads on the cached features, trained in NumPy (stages.lib.head): TensorFlow is never loaded."""
    print(f"train {setup.variant}: a head on the cached features; NumPy on the CPU; float32", file=sys.stderr)
    settings = setup.settings

    def train(
        y: np.ndarray, seed: int, live: Any, transition: np.ndarray | None = None, val_y: np.ndarray | None = None
    ) -> Trained:
        head, history = fit_linear_head(
            setup.inputs,
            y,
            setup.test_inputs,
            setup.test_y,
            task=setup.task,
            loss=setup.loss,
            loss_params=settings.loss_params[setup.loss],
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=seed,
            on_epoch=lambda epoch, values: log_epoch(live, epoch, settings.epochs, values),
            transition=transition,
            val_features=setup.val_inputs,
            val_y=val_y,
            select_epoch=settings.select_epoch,
        )
        scores = head.predict_proba(setup.test_inputs)
        return Trained.selected(scores, history, head.save, HEAD_FILE, settings.select_epoch)

    return train


def mean_curves(histories: Sequence[History]) -> dict[str, pd.DataFrame]:
    """Per metric, the per-epoch mean over seeds of the training value and of the test value.

    `histories` are Keras `History.history` dicts (`loss`, `val_loss`, ...), one per seed. Columns:
    epoch (from 1), train, test, and their sample standard deviations over seeds (0 for one seed).
    """
    curves = {}
    for metric in CURVE_METRICS:
        columns = {"epoch": np.arange(1, len(histories[0][metric]) + 1)}
        for split, key in (("train", metric), ("test", f"val_{metric}")):
            values = np.array([history[key] for history in histories], dtype=np.float64)
            columns[split] = values.mean(axis=0)
            columns[f"{split}_std"] = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
        curves[metric] = pd.DataFrame(columns)
    return curves
