"""The fine-tuning trainer: ResNet50 itself (`model.trainable_blocks` of it) with the head, on the images,
behind the trainer interface of stages.lib.training. On every visible GPU, in mixed precision where they
support it (stages.lib.finetune.runtime); docs/fine-tuning.md has the details.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from stages.lib.backbone import build_backbone, seed_everything
from stages.lib.head import VALIDATION_ACCURACY
from stages.lib.labels import MODEL_FILE
from stages.lib.tf_import import import_tensorflow
from stages.lib.training import Setup, Trained, Trainer


def fine_tune_trainer(setup: Setup) -> Trainer:
    """Loads TensorFlow, picks the devices and precision, and returns the trainer.

    Each model's backbone starts as the embed stage's would (`model.weights`; a random init is drawn from
    the global seed), its head from the trainer's `seed`, as in head mode.
    """
    images, val_images, test_images, test_y = setup.inputs, setup.val_inputs, setup.test_inputs, setup.test_y
    task, num_classes, loss, settings = setup.task, setup.num_classes, setup.loss, setup.settings
    import_tensorflow()  # quietly, before anything else loads it
    import keras
    from dvclive.keras import DVCLiveCallback

    from stages.lib.finetune.model import (
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
    from stages.lib.finetune.pipeline import image_pipeline
    from stages.lib.finetune.runtime import apply_precision, distribution_strategy, select_runtime, visible_gpus
    from stages.lib.losses import make_loss

    runtime = select_runtime(settings.mixed_precision, settings.xla, settings.batch_size, visible_gpus())
    strategy = distribution_strategy(runtime)
    print(f"train {setup.variant}: fine-tuning ResNet50 on the images; {runtime.describe()}", file=sys.stderr)
    deterministic = not runtime.xla

    def train(
        y: np.ndarray, seed: int, live: Any, transition: np.ndarray | None = None, val_y: np.ndarray | None = None
    ) -> Trained:
        keras.backend.clear_session()  # the previous seed's model and graphs
        apply_precision(runtime)
        seed_everything(setup.seed, deterministic)
        with strategy.scope():
            backbone = build_backbone(setup.model.weights, image_size=images.shape[1])
        # The head standardises the untrained backbone's features, as in head mode.
        start_features = backbone_features(backbone, images, settings.batch_size)
        seed_everything(seed, deterministic)
        with strategy.scope():
            set_trainable_blocks(backbone, setup.model.trainable_blocks)
            model = build_fine_tune_model(backbone, build_head(start_features, task, num_classes))
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
                loss=make_loss(loss, task, settings.loss_params[loss], transition=transition),
                metrics=[accuracy_metric(task)],
                jit_compile=runtime.xla,
            )
        clock = TrainingClock()
        callbacks = [clock]
        selection = None
        if val_y is not None and len(val_y):
            # Per epoch, accuracy on the validation labels; with select_epoch: val, the best epoch's weights kept.
            val_labels = val_y[:, 0].astype(np.int64) if task == "binary" else val_y.argmax(axis=1)
            keep_best = settings.select_epoch == "val"
            selection = EpochSelection(val_images, val_labels, task, settings.batch_size, live, keep_best)
            callbacks.append(selection)
        history = model.fit(
            image_pipeline(images, y, batch_size=settings.batch_size, shuffle_seed=seed, augment=settings.augment),
            epochs=settings.epochs,
            validation_data=image_pipeline(test_images, test_y, batch_size=settings.batch_size),
            callbacks=[*callbacks, DVCLiveCallback(live=live)],
            shuffle=False,  # ignored for a tf.data input (the pipeline shuffles); False silences Keras' warning
            verbose=2,
        )
        print(f"fine-tuning on {len(images)} images: {throughput(len(images), clock.seconds)}", file=sys.stderr)
        scores = predict_scores(model, test_images, task, settings.batch_size)
        if selection is not None:
            history.history[VALIDATION_ACCURACY] = selection.accuracy
        return Trained.selected(scores, history.history, model.save, MODEL_FILE, settings.select_epoch)

    return train
