"""The fine-tuning trainer: ResNet50 itself (`model.trainable_blocks` of it) with the head, on the images,
behind the trainer interface (stages.lib.train.interface): it reads the images, and its seeds run one at a time,
each logging as it trains (a seed may hold every GPU). On the Keras backend of `KERAS_BACKEND`, on every
visible GPU, in mixed precision where they support it (stages.lib.backbone.runtime); docs/fine-tuning.md
has the details.

Per seed, one fine-tuning per point of the variant's grid (train.fine_tune_grid: learning rates × the loss's
own param), every one from the same start: the backbone of `model.weights` and either the variant's head fit
to its optimum on that backbone's features (`model.fine_tune_start: linear_probe`, LP-FT) or a fresh head.
Every epoch of every point is scored on the variant's validation labels by the heads' rule; the best
(point, epoch) is kept with its threshold (stages.lib.train.finetune.choice), and a killed run resumes where it
stopped (stages.lib.train.finetune.checkpoint).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.backbone.backend import backend_name, import_keras
from stages.lib.backbone.resnet import build_backbone, seed_everything
from stages.lib.core.io import images_path
from stages.lib.core.params import GridPoint
from stages.lib.core.variants import MODEL_FILE
from stages.lib.evaluate.metrics import DECISION_THRESHOLD
from stages.lib.train.head_trainer import linear_probe
from stages.lib.train.interface import Progress, SeedTargets, Setup, Trained, Trainer
from stages.lib.train.logs import live_log, log_history

# Recorded with each seed's DVCLive metrics (its params.yaml): which backend computed them.
BACKEND_PARAM = "keras_backend"
# How each model.fine_tune_start reads in the train stage's log.
STARTS = {
    "linear_probe": "the variant's head fit on the starting features (LP-FT)",
    "fresh_head": "a fresh head",
}


class FineTuneTrainer(Trainer):
    """ResNet50 fine-tuned on the images (memory-mapped: the pipeline caches them), one seed at a time."""

    input_path = staticmethod(images_path)
    memory_mapped = True

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self._fine_tune = seed_fine_tuner(setup)

    def fit(self, targets: SeedTargets, live: Any, progress: Progress | None = None) -> Trained:
        return self._fine_tune(
            targets.y, targets.seed, live, targets.transition, targets.val_y, targets.val_transition, progress
        )

    def steps_per_seed(self) -> int:
        """An epoch of each grid point."""
        settings = self.setup.settings
        return settings.epochs * len(settings.fine_tuning_grid(self.setup.loss, len(self.setup.val_inputs) > 0))

    @classmethod
    def trained_by_seed(
        cls,
        trainers: Mapping[int, Trainer],
        targets: Mapping[int, SeedTargets],
        log_root: Path,
        progress: Progress,
        key: Callable[[int], bytes],
    ) -> Iterator[tuple[int, Trained]]:
        for repeat in targets:
            with live_log(log_root / f"seed_{repeat}") as live:
                trained = trainers[repeat].fit(targets[repeat], live, progress)
            yield repeat, trained


def seed_fine_tuner(setup: Setup) -> Callable[..., Trained]:
    """Loads Keras on its backend, picks the devices and precision, and returns what fine-tunes one seed:
    `(y, seed, live, transition, val_y, val_transition, progress) -> Trained`.

    Each model's backbone starts as the embed stage's would (`model.weights`; a random init is drawn from
    the global seed); a fresh head from the trainer's `seed`, as the batches' order is.
    """
    images, val_images, test_images, test_y = setup.inputs, setup.val_inputs, setup.test_inputs, setup.test_y
    task, num_classes, loss, settings = setup.task, setup.num_classes, setup.loss, setup.settings
    keras = import_keras()  # on its backend (TensorFlow quietly), before anything else loads it

    from stages.lib.backbone.runtime import apply_precision, distribution_scope, select_runtime, visible_gpus
    from stages.lib.losses import make_loss
    from stages.lib.train.finetune.checkpoint import (
        PointRun,
        best_saved,
        checkpoint_callback,
        checkpoint_dir,
        resume_point,
        run_key,
        save_best,
        save_progress,
        start_seed,
    )
    from stages.lib.train.finetune.choice import best_epoch, best_model, score_epoch, selection_record
    from stages.lib.train.finetune.model import (
        EpochHistory,
        EpochSelection,
        TrainingClock,
        accuracy_metric,
        backbone_features,
        build_fine_tune_model,
        build_head,
        predict_scores,
        set_trainable_blocks,
        throughput,
    )
    from stages.lib.train.finetune.pipeline import epoch_follower, image_pipeline

    backend = backend_name()
    runtime = select_runtime(settings.mixed_precision, settings.xla, settings.batch_size, visible_gpus(), backend)
    validating = len(val_images) > 0
    grid = settings.fine_tuning_grid(loss, validating=validating)
    start = setup.model.fine_tune_start
    print(f"train {setup.variant}: fine-tuning ResNet50 on the images; {runtime.describe()}", file=sys.stderr)
    print(
        f"train {setup.variant}: per seed {len(grid)} fine-tuning(s) of {settings.epochs} epochs "
        f"(train.fine_tune_grid), each from {STARTS[start]}; the grid point and epoch chosen on the validation labels",
        file=sys.stderr,
    )
    # TensorFlow will not combine XLA with op determinism; on JAX, XLA is always on and deterministic.
    deterministic = not (runtime.xla and backend == "tensorflow")
    # The starting backbone's features of the training pool (and, for LP-FT, of the validation set): the same
    # for every seed and grid point, computed once.
    starting: dict[str, np.ndarray] = {}

    def starting_backbone():
        """A fresh session and the backbone every model starts from (the global seed draws a random init)."""
        keras.backend.clear_session()  # the previous model's graphs
        apply_precision(runtime)
        seed_everything(setup.seed, deterministic)
        with distribution_scope(runtime):
            backbone = build_backbone(setup.model.weights, image_size=images.shape[1])
        if not starting:
            # The head standardises these features, as in head mode; LP-FT's head is fit on them.
            starting["train"] = backbone_features(backbone, images, settings.batch_size)
            if start == "linear_probe" and validating:
                starting["val"] = backbone_features(backbone, val_images, settings.batch_size)
        return backbone

    def fine_tune_point(
        index: int,
        point: GridPoint,
        y: np.ndarray,
        seed: int,
        transition: np.ndarray | None,
        val_y: np.ndarray,
        val_transition: np.ndarray | None,
        probe: Any,
        folder: Path,
        key: str,
        progress: Progress | None,
    ) -> tuple[Any, PointRun]:
        """Grid point `index` fine-tuned (resumed from its checkpoint if one is there): the model, at its kept
        epoch, and its run."""
        backbone = starting_backbone()
        seed_everything(seed, deterministic)
        with distribution_scope(runtime):
            set_trainable_blocks(backbone, setup.model.trainable_blocks)
            model = build_fine_tune_model(backbone, build_head(starting["train"], task, num_classes, start=probe))
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=point.learning_rate),
                loss=make_loss(loss, task, point.loss_params, transition=transition),
                metrics=[accuracy_metric(task)],
                jit_compile=runtime.xla,
            )
        resumed = resume_point(folder, key, index, model)
        if resumed.epochs_done:
            print(
                f"train {setup.variant}: grid point {index + 1}/{len(grid)} resumes after epoch "
                f"{resumed.epochs_done} ({folder})",
                file=sys.stderr,
            )
            if progress is not None:
                progress(resumed.epochs_done)
        selection = None
        if validating:
            score = partial(
                score_epoch, val_y=val_y, task=task, metric=setup.metric, settings=settings, transition=val_transition
            )
            keep_best = settings.select_epoch == "val"
            selection = EpochSelection(
                val_images, settings.batch_size, score, keep_best, resumed.run.epochs, resumed.best_weights
            )
        history = EpochHistory(selection, resumed.run.history, progress)
        clock = TrainingClock()
        if resumed.epochs_done < settings.epochs:
            batches = image_pipeline(
                images,
                y,
                batch_size=settings.batch_size,
                shuffle_seed=seed,
                augment=settings.augment,
                first_epoch=resumed.epochs_done,
            )
            model.fit(
                batches,
                initial_epoch=resumed.epochs_done,
                epochs=settings.epochs,
                validation_data=image_pipeline(test_images, test_y, batch_size=settings.batch_size),
                callbacks=[
                    epoch_follower(batches),
                    clock,
                    *([selection] if selection is not None else []),
                    history,
                    checkpoint_callback(folder, key, index, history, selection),
                ],
                shuffle=False,  # the pipeline shuffles, by (seed, epoch); Keras' own would reorder its batches
                verbose=0,  # the terminal shows the variant's bar
            )
        if clock.seconds:
            print(f"fine-tuning on {len(images)} images: {throughput(len(images), clock.seconds)}", file=sys.stderr)
        if selection is not None:
            selection.restore_best(model)
        return model, PointRun(history.history, list(selection.epochs) if selection is not None else [])

    def train(
        y: np.ndarray,
        seed: int,
        live: Any,
        transition: np.ndarray | None = None,
        val_y: np.ndarray | None = None,
        val_transition: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> Trained:
        val_y = np.empty((0, y.shape[1]), np.float32) if val_y is None else val_y
        live.log_param(BACKEND_PARAM, backend)
        # A killed run's finished grid points and last finished epoch, if everything that decides the run is the same.
        folder = checkpoint_dir(setup.variant, Path(live.dir).name)
        parts = (backend, runtime, setup.model, settings, setup.metric, loss, seed, y, val_y, transition)
        key = run_key(*parts, val_transition, images, val_images, test_images)
        done = start_seed(folder, key)
        if done.finished:
            print(f"train {setup.variant}: {len(done.finished)} grid points done before ({folder})", file=sys.stderr)
            if progress is not None:
                progress(len(done.finished) * settings.epochs)
        probe, probe_point = None, None
        if start == "linear_probe":  # seconds on the CPU: also when every point is done, for the record
            if not starting:
                starting_backbone()
            probe, probe_point = linear_probe(
                starting["train"],
                y,
                starting.get("val", starting["train"][:0]),
                val_y,
                task=task,
                loss=loss,
                metric=setup.metric,
                settings=settings,
                transition=transition,
                val_transition=val_transition,
            )
        for index in range(len(done.finished), len(grid)):
            model, run = fine_tune_point(
                index, grid[index], y, seed, transition, val_y, val_transition, probe, folder, key, progress
            )
            done.finished.append(run)
            diverged = [e + 1 for e, epoch in enumerate(run.epochs) if not np.isfinite(epoch.score)]
            if diverged:
                print(
                    f"train {setup.variant}: grid point {index + 1} ({grid[index].tuned}) has no validation score at "
                    f"epochs {diverged} (diverged): never kept over a scored model",
                    file=sys.stderr,
                )
            if validating:
                best = best_model([point.epochs for point in done.finished], settings.select_epoch)
            else:  # one point, its last epoch (train.select_epoch: last)
                best = (0, settings.epochs - 1)
            if best[0] == index:  # this point's kept model beats every earlier point's
                assert not validating or best[1] == best_epoch(run.epochs, settings.select_epoch)
                save_best(folder, key, *best, model, predict_scores(model, test_images, task, settings.batch_size))
                done.best = best
            save_progress(folder, key, done)  # last: the point counts as finished once best/ holds its model
        assert done.best is not None
        index, epoch = done.best
        model_file, scores = best_saved(folder, key, done.best)
        run = done.finished[index]
        log_history(live, run.history)
        threshold, val_accuracy, chosen = DECISION_THRESHOLD, None, {"fine_tune_start": start}
        if validating:
            kept = run.epochs[epoch]
            threshold, val_accuracy = kept.threshold, kept.val_accuracy
            chosen = selection_record(
                kept,
                settings=settings,
                metric=setup.metric,
                point=grid[index].tuned,
                grid_size=len(grid),
                start=start,
                probe=probe_point,
                scores_by_epoch=[e.score for e in run.epochs],
            )
        return Trained(
            scores.astype(np.float64),
            run.history,
            partial(shutil.copyfile, model_file),
            MODEL_FILE,
            epoch + 1,
            val_accuracy,
            threshold,
            chosen,
        )

    return train
