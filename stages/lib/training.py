"""Training one variant seed by seed: the interface both trainers share, DVCLive as a context manager,
the head trainer, and the per-epoch means over seeds that `dvc plots` draws.

A *trainer* is built from a `Setup` (what every seed of one variant shares) and is a function
`(y, seed, live, transition, val_y, progress=None) -> Trained`: it trains one model from a seeded start on the
targets `y` (stages.lib.labels.targets), with the forward loss's noise transition matrix (None for other
losses), scores each epoch on the validation set's labels `val_y` (the variant's own: noisy for a noisy
variant), logs each epoch to the DVCLive logger `live` (and nowhere else: the terminal shows a progress bar,
`progress(epochs done)`, and one `summary_line` per seed), and returns the model of the epoch `train.select_epoch`
picks (the last, or the best on the validation labels), its test-set scores, its per-epoch history and
how to save it. The head trainer is below (it also takes `val_transition`, the T that corrects the
selection score, and tunes a grid: docs/losses.md "Tuning"); the fine-tuning one is
stages.lib.finetune.trainer (one model, threshold 0.5). docs/fine-tuning.md says when each runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.head import (
    LOG_NAMES,
    VAL_ACCURACY,
    VAL_SCORE,
    fit_head_grid,
    grid_history,
    selected_epoch,
)
from stages.lib.labels import HEAD_FILE, parse_variant
from stages.lib.losses import probabilities
from stages.lib.metrics import DECISION_THRESHOLD, predict_labels
from stages.lib.params import DEFAULT_VERDICT_METRIC, ModelParams, TrainParams
from stages.lib.selection import select

CURVE_METRICS = ("loss", "accuracy")
History = dict[str, list[float]]  # per epoch: loss, accuracy, test_loss, test_accuracy, val_accuracy (stages.lib.head)


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
    metric: str = DEFAULT_VERDICT_METRIC  # evaluate.metric: what selection aims at


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
    threshold: float = DECISION_THRESHOLD  # binary: P(positive) from which it predicts positive
    # What selection chose beyond the epoch (head mode): the tuned values, the score and how it was computed.
    chosen: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def selected(
        cls, scores: np.ndarray, history: History, save: Callable[[Path], None], file_name: str, select_epoch: str
    ) -> Trained:
        """A Trained whose epoch and validation accuracy are those of the epoch select_epoch picked."""
        epoch = selected_epoch(history, select_epoch)
        val = history.get(VAL_ACCURACY)
        return cls(scores, history, save, file_name, epoch + 1, float(val[epoch]) if val else None)


Trainer = Callable[..., Trained]  # (y, seed, live, transition=None, val_y=None, progress=None) -> Trained
Progress = Callable[[int], object]  # called with the number of epochs just finished (a tqdm bar's update)


# How train.select_score's value reads in a line about the score it chose with.
SCORE_CORRECTIONS = {
    "corrected_true": "corrected with the realised T",
    "corrected_estimated": "corrected with detect's T",
}


def summary_line(variant: str, repeat: int, trained: Trained, epochs: int) -> str:
    """One seed's outcome in one line: the epoch kept, its validation score and on which labels, and what else
    was chosen on them (the grid point, the threshold); the per-epoch numbers are in DVCLive's files."""
    chosen = trained.chosen
    parts = [f"epoch {trained.epoch}/{epochs}"]
    if "val_score" in chosen:
        # A variant validates on labels like its training labels: the clean ones for a clean control.
        labels = "clean" if parse_variant(variant)[1] == "clean" else "noisy"
        how = f", {SCORE_CORRECTIONS[chosen['select_score']]}" if chosen.get("corrected") else ""
        parts.append(f"val {chosen['metric']} {chosen['val_score']:.4f} on {labels} labels{how}")
    if trained.val_accuracy is not None:
        parts.append(f"val accuracy {trained.val_accuracy:.4f}")
    else:
        parts.append("no validation set: the last epoch")
    tuned = chosen.get("hyper_parameters") or {}
    if tuned:
        point = ", ".join(f"{name} {value:g}" for name, value in tuned.items())
        parts.append(f"{point} (best of {chosen['grid_size']} grid points)")
    parts.append(f"threshold {trained.threshold:.3f}")
    return f"train {variant}: seed {repeat}: " + "; ".join(parts)


# What a forked worker of trained_by_seed runs: set before the fork, so the closure needs no pickling.
_SEED_WORK: Callable[[int], Trained] | None = None


def _run_seed_work(repeat: int) -> Trained:
    assert _SEED_WORK is not None
    return _SEED_WORK(repeat)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the stage handles it and ends the pool; a worker killed by it
    # could die holding the pool's queue lock and hang that ending.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def trained_by_seed(work: Callable[[int], Trained], seeds: Sequence[int], jobs: int) -> Iterator[tuple[int, Trained]]:
    """(seed, work(seed)) in seed order, the seeds trained by up to `jobs` forked processes at once.

    A head's seeds are independent and each keeps one BLAS thread, so on C cores they train about C times
    as fast and give the same numbers as one after the other; what `work` returns comes back pickled, and
    an error in a worker is raised here."""
    global _SEED_WORK
    # fork is safe on Linux only (macOS' system libraries may crash in a forked child).
    jobs = min(jobs, len(seeds)) if sys.platform == "linux" else 1
    if jobs <= 1:
        for repeat in seeds:
            yield repeat, work(repeat)
        return
    import multiprocessing

    _SEED_WORK = work
    try:
        # fork: the workers start with the features and the imports already in memory.
        with multiprocessing.get_context("fork").Pool(jobs, initializer=_ignore_interrupts) as pool:
            yield from zip(seeds, pool.imap(_run_seed_work, seeds), strict=True)
    finally:
        _SEED_WORK = None


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

        # DVCLive 3.49.1 gathers the data for Studio on every step even when no Studio is set up (it then
        # drops it): it re-reads every metric file so far, quadratic in the epochs, 35 % of a head's train
        # stage at the defaults (benchmarks/README.md). Without Studio there is nothing to gather.
        def post_data_to_studio(self) -> None:
            if "data" not in getattr(self, "_studio_events_to_skip", ()):
                super().post_data_to_studio()

    with FilesOnlyLive(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        yield live


def log_history(live: Any, history: History) -> None:
    """A whole training's per-epoch values, epoch by epoch, as log_epoch logs them."""
    for epoch in range(len(history["loss"])):
        log_epoch(live, {key: values[epoch] for key, values in history.items()})


def log_epoch(live: Any, values: dict[str, float]) -> None:
    """One epoch's values under their DVCLive names (stages.lib.head.LOG_NAMES: train/loss, test/accuracy,
    val/accuracy, ...)."""
    for name, value in values.items():
        live.log_metric(LOG_NAMES.get(name, name), value)
    live.next_step()


def head_trainer(setup: Setup) -> Trainer:
    """Heads on the cached features, trained in NumPy (stages.lib.head): TensorFlow is never loaded.

    Per seed, the variant's whole grid (train.tune) trains at once; its epoch, grid point and threshold are
    chosen on the validation labels (stages.lib.selection, train.select_score, evaluate.metric)."""
    settings = setup.settings
    grid = settings.grid(setup.loss, validating=len(setup.val_inputs) > 0)
    print(
        f"train {setup.variant}: a grid of {len(grid)} heads on the cached features; NumPy on the CPU; float32",
        file=sys.stderr,
    )

    def train(
        y: np.ndarray,
        seed: int,
        live: Any,
        transition: np.ndarray | None = None,
        val_y: np.ndarray | None = None,
        val_transition: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> Trained:
        from threadpoolctl import threadpool_limits

        # Matrices of a few thousand rows: BLAS threads gain little and, on a busy machine, cost several
        # times the work (benchmarks/README.md, "Heads").
        with threadpool_limits(limits=1):
            trained = fit_and_select(y, seed, live, transition, val_y, val_transition)
        if progress is not None:
            progress(settings.epochs)  # a grid trains in a second or two: the bar moves a seed at a time
        return trained

    def fit_and_select(
        y: np.ndarray,
        seed: int,
        live: Any,
        transition: np.ndarray | None,
        val_y: np.ndarray | None,
        val_transition: np.ndarray | None,
    ) -> Trained:
        heads = fit_head_grid(
            setup.inputs,
            y,
            task=setup.task,
            loss=setup.loss,
            grid=grid,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=seed,
            transition=transition,
        )
        validating = val_y is not None and len(val_y) > 0
        if validating:
            val_labels = val_y[:, 0].astype(np.int64) if setup.task == "binary" else val_y.argmax(axis=1)
            val_probabilities = probabilities(heads.logits(setup.val_inputs), setup.task).astype(np.float64)
            if setup.task == "binary":
                val_probabilities = val_probabilities[..., 0]
            chosen = select(
                val_probabilities,
                val_labels,
                task=setup.task,
                metric=setup.metric,
                transition=val_transition,
                select_epoch=settings.select_epoch,
            )
            point, epoch, threshold = chosen.point, chosen.epoch, chosen.threshold
        else:  # nothing to choose with (data.val_size 0: an untuned one-point grid): the last epoch
            point, epoch, threshold = 0, settings.epochs - 1, DECISION_THRESHOLD
        history = grid_history(
            heads,
            point,
            setup.test_inputs,
            setup.test_y,
            task=setup.task,
            loss=setup.loss,
            loss_params=grid[point].loss_params,
            transition=transition,
        )
        details: dict[str, Any] = {"hyper_parameters": dict(grid[point].tuned), "grid_size": len(grid)}
        val_accuracy = None
        if validating:
            point_probabilities = val_probabilities[:, :, point]
            history[VAL_ACCURACY] = [
                float(np.mean(predict_labels(point_probabilities[:, e], setup.task) == val_labels))
                for e in range(settings.epochs)
            ]
            history[VAL_SCORE] = [float(v) for v in chosen.scores_by_epoch]
            kept = predict_labels(point_probabilities[:, epoch], setup.task, threshold)
            val_accuracy = float(np.mean(kept == val_labels))
            details.update(
                select_score=settings.select_score,
                metric=setup.metric,
                val_score=chosen.score,
                corrected=chosen.corrected,
            )
        if live is not None:  # None: the caller logs the history (trained_by_seed's caller)
            log_history(live, history)
        head = heads.head(epoch, point)
        scores = head.predict_proba(setup.test_inputs)
        return Trained(scores, history, head.save, HEAD_FILE, epoch + 1, val_accuracy, threshold, details)

    return train


def mean_curves(histories: Sequence[History]) -> dict[str, pd.DataFrame]:
    """Per metric, the per-epoch mean over seeds of the training value and of the test value.

    `histories` are per-epoch histories (`loss`, `test_loss`, ...), one per seed. Columns:
    epoch (from 1), train, test, and their sample standard deviations over seeds (0 for one seed).
    """
    curves = {}
    for metric in CURVE_METRICS:
        columns = {"epoch": np.arange(1, len(histories[0][metric]) + 1)}
        for split, key in (("train", metric), ("test", f"test_{metric}")):
            values = np.array([history[key] for history in histories], dtype=np.float64)
            columns[split] = values.mean(axis=0)
            columns[f"{split}_std"] = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
        curves[metric] = pd.DataFrame(columns)
    return curves
