"""Training one variant seed by seed: the interface both trainers share, DVCLive as a context manager,
the head trainer, and the per-step means over seeds that `dvc plots` draws.

A *trainer* is built from a `Setup` (what every seed of one variant shares) and is a function
`(y, seed, live, transition, val_y, progress=None) -> Trained`: it trains on the targets `y`
(stages.lib.core.variants.targets), with the forward loss's noise transition matrix (None for other losses), chooses
on the validation set's labels `val_y` (the variant's own: noisy for a noisy variant), logs each step to the
DVCLive logger `live` (and nowhere else: the terminal shows a progress bar and one `summary_line` per seed),
and returns the model kept, its test-set scores, its per-step history and how to save it. The head trainer is
below: per seed a grid of heads, each fit to its optimum (stages.lib.train.head), one chosen with its threshold
(stages.lib.train.selection; it also takes `val_transition`, the T that corrects the selection's metric, and
`oracle_val_y` and `oracle_y`, the true validation and training labels that choose the oracle twin of a noisy
variant: docs/losses.md "Tuning"). The fine-tuning one is stages.lib.train.finetune.trainer: per seed a grid of
fine-tunings (train.fine_tune_grid), each from the variant's head fit here on the starting features
(`linear_probe`, LP-FT) or from a fresh head, the epoch and grid point and threshold chosen by the same rule
(`select_on_validation`). docs/fine-tuning.md says when each runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.params import DEFAULT_VERDICT_METRIC, ModelParams, TrainParams
from stages.lib.core.variants import HEAD_FILE, parse_variant
from stages.lib.evaluate.metrics import DECISION_THRESHOLD, predict_labels
from stages.lib.losses import probabilities
from stages.lib.train.head import (
    LOG_NAMES,
    Coordinates,
    HeadGrid,
    fit_head_grid,
    fit_in_coordinates,
    logits_at,
    out_of_fold_logits,
    path_history,
)
from stages.lib.train.linear_head import LinearHead
from stages.lib.train.selection import Selection, pooled_threshold, select

CURVE_METRICS = ("loss", "accuracy")
# Per step (an iterate of a head's optimiser, an epoch of fine-tuning): loss, accuracy, test_loss,
# test_accuracy, and for fine-tuning val_accuracy (stages.lib.train.head).
History = dict[str, list[float]]


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
    per-step history, and how to save it (`file_name`, a pattern with `{seed}`, names the file)."""

    scores: np.ndarray
    history: History
    save: Callable[[Path], None]
    file_name: str
    epoch: int | None  # fine-tuning: the epoch of the model kept, from 1; a head: None (fit to its optimum)
    val_accuracy: float | None  # its accuracy on the validation labels (None without a validation set)
    threshold: float = DECISION_THRESHOLD  # binary: P(positive) from which it predicts positive
    # What selection chose: the tuned values, the scores and how they were computed, and (a head) how the
    # optimiser ended, (fine-tuning) where it started.
    chosen: dict[str, Any] = field(default_factory=dict)
    # A noisy variant's head: the same grid chosen on the clean validation labels (the oracle twin).
    oracle: Trained | None = None


Trainer = Callable[..., Trained]  # (y, seed, live, transition=None, val_y=None, progress=None) -> Trained
Progress = Callable[[int], object]  # called with the number of epochs just finished (a tqdm bar's update)


def class_labels(y: np.ndarray, task: str) -> np.ndarray:
    """Class indices (N,) of targets (stages.lib.core.variants.targets): (N, 1) floats or one-hot (N, K)."""
    return y[:, 0].astype(np.int64) if task == "binary" else y.argmax(axis=1)


def select_on_validation(
    val_logits: np.ndarray,
    val_y: np.ndarray,
    *,
    task: str,
    metric: str,
    settings: TrainParams,
    transition: np.ndarray | None,
    select_epoch: str = "last",
) -> Selection:
    """The rule every trainer chooses by, on a variant's validation targets `val_y`: the (epoch, grid point) by
    train.select_by and the binary threshold by train.threshold, aimed at `metric` (evaluate.metric), a
    confusion metric corrected through `transition` where train.select_score asks (stages.lib.train.selection).
    `val_logits`: (N, E, G) binary log-odds or (N, E, G, K); a head has one "epoch" (its optimum)."""
    return select(
        val_logits,
        class_labels(val_y, task),
        task=task,
        metric=metric,
        transition=transition,
        select_by=settings.select_by,
        threshold_rule=settings.threshold,
        select_epoch=select_epoch,
    )


def linear_probe(
    features: np.ndarray,
    y: np.ndarray,
    val_features: np.ndarray,
    val_y: np.ndarray,
    *,
    task: str,
    loss: str,
    metric: str,
    settings: TrainParams,
    transition: np.ndarray | None = None,
    val_transition: np.ndarray | None = None,
) -> tuple[LinearHead, dict[str, float]]:
    """The variant's head on `features` as the head trainer fits and chooses it: its grid (train.tune), each
    head at its optimum, the grid point by select_on_validation on the validation features and targets (all
    of it without a validation set: its one untuned point). What LP-FT fine-tunes from; returns the head
    and the values its grid point tuned. No threshold: fine-tuning chooses its own."""
    from threadpoolctl import threadpool_limits

    validating = len(val_y) > 0
    grid = settings.grid(loss, validating=validating)
    with threadpool_limits(limits=1):  # as head_trainer fits: the same numbers
        heads = fit_head_grid(features, y, task=task, loss=loss, grid=grid, transition=transition)
        point = 0
        if validating:
            logits = heads.logits(val_features)
            logits = logits[..., 0] if task == "binary" else logits
            chosen = select_on_validation(
                logits[:, None], val_y, task=task, metric=metric, settings=settings, transition=val_transition
            )
            point = chosen.point
    return heads.head(point), dict(grid[point].tuned)


# How train.select_score's value reads in a line about the score it chose with.
SCORE_CORRECTIONS = {
    "corrected_true": "corrected with the realised T",
    "corrected_estimated": "corrected with detect's T",
}


def summary_line(variant: str, repeat: int, trained: Trained, epochs: int) -> str:
    """One seed's outcome in one line: what was kept (the epoch, or the grid point and how its optimiser
    ended), what chose it on which validation labels, and the threshold; the per-step numbers are in
    DVCLive's files."""
    chosen = trained.chosen
    parts = [] if trained.epoch is None else [f"epoch {trained.epoch}/{epochs}"]
    tuned = chosen.get("hyper_parameters") or {}
    if tuned:
        point = ", ".join(f"{name} {value:g}" for name, value in tuned.items())
        parts.append(f"{point} (best of {chosen['grid_size']} grid points)")
    if "iterations" in chosen:
        state = "converged" if chosen["converged"] else "NOT converged"
        parts.append(f"{state} in {chosen['iterations']} iterations (|gradient| {chosen['gradient_norm']:.1e})")
    if "val_score" in chosen:
        # A variant validates on labels like its training labels: the clean ones for a clean control.
        labels = "clean" if parse_variant(variant)[1] == "clean" else "noisy"
        how = f", {SCORE_CORRECTIONS[chosen['select_score']]}" if chosen.get("corrected") else ""
        parts.append(
            f"by val {chosen['select_by']} on {labels} labels; val {chosen['metric']} {chosen['val_metric']:.4f}{how}"
        )
    elif trained.val_accuracy is not None:
        parts.append(f"val accuracy {trained.val_accuracy:.4f}")
    else:
        parts.append("no validation set: nothing chosen")
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


def trained_by_seed(
    work: Callable[[int], Trained], seeds: Sequence[int], jobs: int, key: Callable[[int], bytes] | None = None
) -> Iterator[tuple[int, Trained]]:
    """(seed, work(seed)) in seed order, the seeds trained by up to `jobs` forked processes at once.

    A head's seeds are independent and each keeps one BLAS thread, so on C cores they train about C times
    as fast and give the same numbers as one after the other; what `work` returns comes back pickled, and
    an error in a worker is raised here. With `key`, seeds whose keys are equal are trained once: the first
    of them, its result given to each (for work that depends on nothing else)."""
    global _SEED_WORK
    first = {}
    for repeat in seeds:
        first.setdefault(key(repeat) if key is not None else repeat, repeat)
    runs = list(first.values())
    owner = {repeat: first[key(repeat) if key is not None else repeat] for repeat in seeds}
    # fork is safe on Linux only (macOS' system libraries may crash in a forked child).
    jobs = min(jobs, len(runs)) if sys.platform == "linux" else 1
    if jobs <= 1:
        results = (work(repeat) for repeat in runs)
    else:
        import multiprocessing

        _SEED_WORK = work
        # fork: the workers start with the features and the imports already in memory.
        pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_ignore_interrupts)
        results = pool.imap(_run_seed_work, runs)
    try:
        done: dict[int, Trained] = {}
        for repeat in seeds:
            while owner[repeat] not in done:
                done[runs[len(done)]] = next(results)
            yield repeat, done[owner[repeat]]
    finally:
        if jobs > 1:
            pool.terminate()
            pool.join()
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
    """One epoch's values under their DVCLive names (stages.lib.train.head.LOG_NAMES: train/loss, test/accuracy,
    val/accuracy, ...)."""
    for name, value in values.items():
        live.log_metric(LOG_NAMES.get(name, name), value)
    live.next_step()


def head_trainer(setup: Setup) -> Trainer:
    """Heads on the cached features, fit in NumPy/SciPy (stages.lib.train.head): TensorFlow is never loaded.

    Per seed, the variant's whole grid (train.tune) is fit, each head to its optimum; one grid point and its
    threshold are chosen on the validation labels (stages.lib.train.selection: train.select_by, train.threshold,
    train.select_score, evaluate.metric). A noisy variant's grid is chosen a second time, by the same rule with
    the true labels: the oracle twin, which separates what noisy selection costs from what noisy training
    labels cost. The seed plays no part: a head is a function of its labels and grid point."""
    settings = setup.settings
    grid = settings.grid(setup.loss, validating=len(setup.val_inputs) > 0)
    # The same features for every seed: their coordinates once (stages.lib.train.head.Coordinates).
    coordinates = Coordinates.of(setup.inputs)
    train_x, val_x, test_x = (coordinates(inputs) for inputs in (setup.inputs, setup.val_inputs, setup.test_inputs))
    print(
        f"train {setup.variant}: a grid of {len(grid)} heads on the cached features, each fit to its optimum",
        file=sys.stderr,
    )

    def train(
        y: np.ndarray,
        seed: int,
        live: Any,
        transition: np.ndarray | None = None,
        val_y: np.ndarray | None = None,
        val_transition: np.ndarray | None = None,
        oracle_val_y: np.ndarray | None = None,
        oracle_y: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> Trained:
        from threadpoolctl import threadpool_limits

        # Matrices of a few hundred rows: BLAS threads gain little and, on a busy machine, cost several
        # times the work (benchmarks/README.md, "Heads"); the stage runs seeds on every core instead.
        with threadpool_limits(limits=1):
            trained = fit_and_select(y, live, transition, val_y, val_transition, oracle_val_y, oracle_y)
        if progress is not None:
            progress(1)
        return trained

    def chosen_on(val_logits: np.ndarray, val_y: np.ndarray, val_transition: np.ndarray | None) -> Selection:
        return select_on_validation(
            val_logits[:, None],  # one "epoch": each head is at its optimum
            val_y,
            task=setup.task,
            metric=setup.metric,
            settings=settings,
            transition=val_transition,
        )

    def kept(
        heads: HeadGrid,
        y: np.ndarray,
        transition: np.ndarray | None,
        point: int,
        threshold: float,
        selection: dict[str, Any],
    ) -> Trained:
        fit = heads.fits[point]
        history = path_history(
            heads,
            point,
            train_x,
            y,
            test_x,
            setup.test_y,
            loss=setup.loss,
            loss_params=grid[point].loss_params,
            transition=transition,
        )
        head = heads.head(point)
        details: dict[str, Any] = {
            "hyper_parameters": dict(grid[point].tuned),
            "grid_size": len(grid),
            "iterations": fit.iterations,
            "gradient_norm": fit.gradient_norm,
            "converged": fit.converged,
            **selection,
        }
        val_accuracy = selection.get("val_accuracy")
        scores = head.predict_proba(setup.test_inputs)  # as the saved model predicts
        return Trained(scores, history, head.save, HEAD_FILE, None, val_accuracy, threshold, details)

    # The binary threshold from the validation labels together with the training pool's (train.threshold_folds).
    pooling = setup.task == "binary" and settings.threshold_folds > 0 and setup.metric != "auc"

    def fit_and_select(
        y: np.ndarray,
        live: Any,
        transition: np.ndarray | None,
        val_y: np.ndarray | None,
        val_transition: np.ndarray | None,
        oracle_val_y: np.ndarray | None,
        clean_y: np.ndarray | None,
    ) -> Trained:
        fits = fit_in_coordinates(train_x, y, task=setup.task, loss=setup.loss, grid=grid, transition=transition)
        heads = HeadGrid(coordinates, fits, setup.task)
        if val_y is None or len(val_y) == 0:  # nothing to choose with (data.val_size 0): the one untuned point
            trained = kept(heads, y, transition, 0, DECISION_THRESHOLD, {})
        else:
            val_logits = logits_at(fits, val_x)
            val_logits = val_logits[..., 0] if setup.task == "binary" else val_logits
            # The oracle twin chooses with the same rule and data, every label its true one.
            choices = [("given", y, val_y, val_transition)]
            if oracle_val_y is not None:
                choices.append(("clean", clean_y, oracle_val_y, None))
            models, out_of_fold = [], {}
            for which, pool_y, labels_y, correcting in choices:
                chosen = chosen_on(val_logits, labels_y, correcting)
                labels = class_labels(labels_y, setup.task)
                threshold, metric_value, threshold_data = chosen.threshold, chosen.metric_value, "validation"
                if pooling:
                    if chosen.point not in out_of_fold:
                        out_of_fold[chosen.point] = out_of_fold_logits(
                            train_x,
                            y,
                            task=setup.task,
                            loss=setup.loss,
                            point=grid[chosen.point],
                            folds=settings.threshold_folds,
                            transition=transition,
                        )
                    extra = out_of_fold[chosen.point]
                    if extra is not None:
                        threshold, metric_value = pooled_threshold(
                            extra[:, 0],
                            class_labels(pool_y, setup.task),
                            val_logits[:, chosen.point],
                            labels,
                            metric=setup.metric,
                            transition=correcting,
                            rule=settings.threshold,
                        )
                        threshold_data = f"validation and {settings.threshold_folds}-fold out-of-fold training"
                probability = probabilities(val_logits[:, chosen.point], setup.task).astype(np.float64)
                predicted = predict_labels(probability, setup.task, threshold)
                selection = {
                    "select_by": settings.select_by,
                    "threshold_rule": settings.threshold,
                    "threshold_data": threshold_data,
                    "select_score": settings.select_score,
                    "val_labels": which,
                    "metric": setup.metric,
                    "val_score": chosen.score,
                    "val_metric": metric_value,
                    "val_accuracy": float(np.mean(predicted == labels)),
                    "corrected": chosen.corrected,
                }
                models.append(kept(heads, y, transition, chosen.point, threshold, selection))
            trained = replace(models[0], oracle=models[1]) if len(models) > 1 else models[0]
        if live is not None:  # None: the caller logs the history (trained_by_seed's caller)
            log_history(live, trained.history)
        return trained

    return train


def mean_curves(histories: Sequence[History]) -> dict[str, pd.DataFrame]:
    """Per metric, the per-step mean over seeds of the training value and of the test value.

    `histories` are per-step histories (`loss`, `test_loss`, ...), one per seed; a shorter one (a head whose
    optimiser stopped sooner) is carried at its last value to the longest. Columns: step (from 1), train,
    test, and their sample standard deviations over seeds (0 for one seed).
    """
    curves = {}
    steps = max(len(history["loss"]) for history in histories)
    for metric in CURVE_METRICS:
        columns = {"step": np.arange(1, steps + 1)}
        for split, key in (("train", metric), ("test", f"test_{metric}")):
            values = np.array(
                [np.pad(history[key], (0, steps - len(history[key])), mode="edge") for history in histories],
                dtype=np.float64,
            )
            columns[split] = values.mean(axis=0)
            columns[f"{split}_std"] = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(steps)
        curves[metric] = pd.DataFrame(columns)
    return curves
