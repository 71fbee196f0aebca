"""The head trainer: per seed a grid of heads on the cached features, each fit to its optimum in NumPy/SciPy
(stages.lib.train.head; TensorFlow is never loaded), one grid point and its threshold chosen on the validation
labels (stages.lib.train.selection: train.select_by, train.threshold, train.select_score, evaluate.metric).

A noisy variant's grid is chosen a second time, by the same rule with the true labels: the oracle twin, which
separates what noisy selection costs from what noisy training labels cost (docs/losses.md "Tuning"). The seed
plays no part: a head is a function of its labels and grid point, so seeds with the same labels share one fit,
and the seeds run on every usable CPU (stages.lib.train.pool), their logs written as each finishes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.core.cpus import usable_cpus
from stages.lib.core.io import features_path
from stages.lib.core.params import TrainParams
from stages.lib.core.variants import HEAD_FILE
from stages.lib.evaluate.metrics import DECISION_THRESHOLD, predict_labels
from stages.lib.losses import probabilities
from stages.lib.train.head import (
    Coordinates,
    HeadGrid,
    fit_head_grid,
    fit_in_coordinates,
    logits_at,
    out_of_fold_logits,
    path_history,
)
from stages.lib.train.interface import Progress, SeedTargets, Setup, Trained, Trainer
from stages.lib.train.linear_head import LinearHead
from stages.lib.train.logs import live_log, log_history
from stages.lib.train.pool import trained_by_seed
from stages.lib.train.selection import Selection, class_labels, pooled_threshold, select_on_validation


class HeadTrainer(Trainer):
    """Heads on the cached features; the seeds forked on every usable CPU."""

    input_path = staticmethod(features_path)

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.settings = setup.settings
        self.grid = self.settings.grid(setup.loss, validating=len(setup.val_inputs) > 0)
        # The same features for every seed: their coordinates once (stages.lib.train.head.Coordinates).
        self.coordinates = Coordinates.of(setup.inputs)
        self.train_x, self.val_x, self.test_x = (
            self.coordinates(inputs) for inputs in (setup.inputs, setup.val_inputs, setup.test_inputs)
        )
        # The binary threshold from the validation labels with the training pool's (train.threshold_folds).
        self.pooling = setup.task == "binary" and self.settings.threshold_folds > 0 and setup.metric != "auc"
        print(
            f"train {setup.variant}: a grid of {len(self.grid)} heads on the cached features, each fit to its optimum",
            file=sys.stderr,
        )

    def fit(self, targets: SeedTargets, live: Any, progress: Progress | None = None) -> Trained:
        from threadpoolctl import threadpool_limits

        # Matrices of a few hundred rows: BLAS threads gain little and, on a busy machine, cost several
        # times the work (benchmarks/README.md, "Heads"); the stage runs seeds on every core instead.
        with threadpool_limits(limits=1):
            trained = self._fit_and_select(targets)
        if live is not None:  # None: the caller logs the history (trained_by_seed)
            log_history(live, trained.history)
        if progress is not None:
            progress(1)
        return trained

    @classmethod
    def trained_by_seed(
        cls,
        trainers: Mapping[int, Trainer],
        targets: Mapping[int, SeedTargets],
        log_root: Path,
        progress: Progress,
        key: Callable[[int], bytes],
    ) -> Iterator[tuple[int, Trained]]:
        def work(repeat: int) -> Trained:
            return trainers[repeat].fit(targets[repeat], None)

        for repeat, trained in trained_by_seed(work, list(targets), usable_cpus(), key=key):
            with live_log(log_root / f"seed_{repeat}") as live:
                log_history(live, trained.history)
            progress(1)
            yield repeat, trained

    def _chosen_on(self, val_logits: np.ndarray, val_y: np.ndarray, val_transition: np.ndarray | None) -> Selection:
        return select_on_validation(
            val_logits[:, None],  # one "epoch": each head is at its optimum
            val_y,
            task=self.setup.task,
            metric=self.setup.metric,
            settings=self.settings,
            transition=val_transition,
        )

    def _kept(
        self,
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
            self.train_x,
            y,
            self.test_x,
            self.setup.test_y,
            loss=self.setup.loss,
            loss_params=self.grid[point].loss_params,
            transition=transition,
        )
        head = heads.head(point)
        details: dict[str, Any] = {
            "hyper_parameters": dict(self.grid[point].tuned),
            "grid_size": len(self.grid),
            "iterations": fit.iterations,
            "gradient_norm": fit.gradient_norm,
            "converged": fit.converged,
            **selection,
        }
        val_accuracy = selection.get("val_accuracy")
        scores = head.predict_proba(self.setup.test_inputs)  # as the saved model predicts
        return Trained(scores, history, head.save, HEAD_FILE, None, val_accuracy, threshold, details)

    def _fit_and_select(self, targets: SeedTargets) -> Trained:
        y, transition, val_y = targets.y, targets.transition, targets.val_y
        task, loss = self.setup.task, self.setup.loss
        fits = fit_in_coordinates(self.train_x, y, task=task, loss=loss, grid=self.grid, transition=transition)
        heads = HeadGrid(self.coordinates, fits, self.setup.task)
        if val_y is None or len(val_y) == 0:  # nothing to choose with (data.val_size 0): the one untuned point
            trained = self._kept(heads, y, transition, 0, DECISION_THRESHOLD, {})
        else:
            val_logits = logits_at(fits, self.val_x)
            val_logits = val_logits[..., 0] if self.setup.task == "binary" else val_logits
            # The oracle twin chooses with the same rule and data, every label its true one.
            choices = [("given", y, val_y, targets.val_transition)]
            if targets.oracle_val_y is not None:
                choices.append(("clean", targets.oracle_y, targets.oracle_val_y, None))
            models, out_of_fold = [], {}
            for which, pool_y, labels_y, correcting in choices:
                chosen = self._chosen_on(val_logits, labels_y, correcting)
                labels = class_labels(labels_y, self.setup.task)
                threshold, metric_value, threshold_data = chosen.threshold, chosen.metric_value, "validation"
                if self.pooling:
                    if chosen.point not in out_of_fold:
                        out_of_fold[chosen.point] = out_of_fold_logits(
                            self.train_x,
                            y,
                            task=self.setup.task,
                            loss=self.setup.loss,
                            point=self.grid[chosen.point],
                            folds=self.settings.threshold_folds,
                            transition=transition,
                        )
                    extra = out_of_fold[chosen.point]
                    if extra is not None:
                        threshold, metric_value = pooled_threshold(
                            extra[:, 0],
                            class_labels(pool_y, self.setup.task),
                            val_logits[:, chosen.point],
                            labels,
                            metric=self.setup.metric,
                            transition=correcting,
                            rule=self.settings.threshold,
                        )
                        threshold_data = f"validation and {self.settings.threshold_folds}-fold out-of-fold training"
                probability = probabilities(val_logits[:, chosen.point], self.setup.task).astype(np.float64)
                predicted = predict_labels(probability, self.setup.task, threshold)
                selection = {
                    "select_by": self.settings.select_by,
                    "threshold_rule": self.settings.threshold,
                    "threshold_data": threshold_data,
                    "select_score": self.settings.select_score,
                    "val_labels": which,
                    "metric": self.setup.metric,
                    "val_score": chosen.score,
                    "val_metric": metric_value,
                    "val_accuracy": float(np.mean(predicted == labels)),
                    "corrected": chosen.corrected,
                }
                models.append(self._kept(heads, y, transition, chosen.point, threshold, selection))
            trained = replace(models[0], oracle=models[1]) if len(models) > 1 else models[0]
        return trained


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
