"""The fine-tuning trainer: ResNet50 itself (`model.trainable_blocks` of it) with the head, on the images,
behind the trainer interface of stages.lib.training. On the Keras backend of `KERAS_BACKEND`, on every
visible GPU, in mixed precision where they support it (stages.lib.finetune.runtime); docs/fine-tuning.md
has the details.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.backbone import build_backbone, seed_everything
from stages.lib.backend import backend_name, import_keras
from stages.lib.head import LOG_NAMES
from stages.lib.labels import MODEL_FILE
from stages.lib.training import Progress, Setup, Trained, Trainer

# Recorded with each seed's DVCLive metrics (its params.yaml): which backend computed them.
BACKEND_PARAM = "keras_backend"


def fine_tune_trainer(setup: Setup) -> Trainer:
    """Loads Keras on its backend, picks the devices and precision, and returns the trainer.

    Each model's backbone starts as the embed stage's would (`model.weights`; a random init is drawn from
    the global seed), its head from the trainer's `seed`, as in head mode.
    """
    images, val_images, test_images, test_y = setup.inputs, setup.val_inputs, setup.test_inputs, setup.test_y
    task, num_classes, loss, settings = setup.task, setup.num_classes, setup.loss, setup.settings
    keras = import_keras()  # on its backend (TensorFlow quietly), before anything else loads it

    from stages.lib.finetune.checkpoint import checkpoint_callback, checkpoint_dir, load_checkpoint, relog, run_key
    from stages.lib.finetune.model import (
        EpochLog,
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
    from stages.lib.finetune.pipeline import epoch_follower, image_pipeline
    from stages.lib.finetune.runtime import apply_precision, distribution_scope, select_runtime, visible_gpus
    from stages.lib.losses import make_loss

    backend = backend_name()
    runtime = select_runtime(settings.mixed_precision, settings.xla, settings.batch_size, visible_gpus(), backend)
    print(f"train {setup.variant}: fine-tuning ResNet50 on the images; {runtime.describe()}", file=sys.stderr)
    # TensorFlow will not combine XLA with op determinism; on JAX, XLA is always on and deterministic.
    deterministic = not (runtime.xla and backend == "tensorflow")

    def train(
        y: np.ndarray,
        seed: int,
        live: Any,
        transition: np.ndarray | None = None,
        val_y: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> Trained:
        keras.backend.clear_session()  # the previous seed's model and graphs
        apply_precision(runtime)
        seed_everything(setup.seed, deterministic)
        with distribution_scope(runtime):
            backbone = build_backbone(setup.model.weights, image_size=images.shape[1])
        # The head standardises the untrained backbone's features, as in head mode.
        start_features = backbone_features(backbone, images, settings.batch_size)
        seed_everything(seed, deterministic)
        with distribution_scope(runtime):
            set_trainable_blocks(backbone, setup.model.trainable_blocks)
            model = build_fine_tune_model(backbone, build_head(start_features, task, num_classes))
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
                loss=make_loss(loss, task, settings.loss_params[loss], transition=transition),
                metrics=[accuracy_metric(task)],
                jit_compile=runtime.xla,
            )
        live.log_param(BACKEND_PARAM, backend)
        # A killed run's last finished epoch, if everything that decides the run is the same.
        folder = checkpoint_dir(setup.variant, Path(live.dir).name)
        key = run_key(backend, runtime, setup.model, settings, loss, seed, y, val_y, transition, images, test_images)
        resumed = load_checkpoint(folder, key, model)
        if resumed.epochs_done:
            print(f"train {setup.variant}: resuming after epoch {resumed.epochs_done} ({folder})", file=sys.stderr)
            relog(live, resumed.epochs_done, resumed.history, LOG_NAMES)
            if progress is not None:
                progress(resumed.epochs_done)
        clock = TrainingClock()
        callbacks: list[Any] = [clock]
        selection = None
        if val_y is not None and len(val_y):
            # Per epoch, accuracy on the validation labels; with select_epoch: val, the best epoch's weights kept.
            val_labels = val_y[:, 0].astype(np.int64) if task == "binary" else val_y.argmax(axis=1)
            keep_best = settings.select_epoch == "val"
            selection = EpochSelection(
                val_images, val_labels, task, settings.batch_size, keep_best, resumed.val_accuracy, resumed.best_weights
            )
            callbacks.append(selection)
        epoch_log = EpochLog(live, selection, resumed.history, progress)
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
                *callbacks,
                epoch_log,
                checkpoint_callback(folder, key, epoch_log, selection),
            ],
            shuffle=False,  # the pipeline shuffles, by (seed, epoch); Keras' own would reorder its batches at random
            verbose=0,  # EpochLog logs each epoch to DVCLive; the terminal shows the variant's bar
        )
        if clock.seconds:
            print(f"fine-tuning on {len(images)} images: {throughput(len(images), clock.seconds)}", file=sys.stderr)
        scores = predict_scores(model, test_images, task, settings.batch_size)
        return Trained.selected(scores, epoch_log.history, model.save, MODEL_FILE, settings.select_epoch)

    return train
