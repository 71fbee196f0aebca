"""The fine-tuning trainer: ResNet50 itself (`model.trainable_blocks` of it) with the head, on the images,
behind the trainer interface of stages.lib.training. On every visible GPU, in mixed precision where they
support it (stages.lib.finetune.runtime); docs/fine-tuning.md has the details.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from stages.lib.backbone import build_backbone, seed_everything
from stages.lib.labels import MODEL_FILE
from stages.lib.params import ModelParams, TrainParams
from stages.lib.tf_import import import_tensorflow
from stages.lib.training import Trained, Trainer


def fine_tune_trainer(
    images: np.ndarray,
    test_images: np.ndarray,
    test_y: np.ndarray,
    *,
    task: str,
    num_classes: int,
    loss: str,
    settings: TrainParams,
    model_params: ModelParams,
    backbone_seed: int,
    describe: str,
) -> Trainer:
    """Loads TensorFlow, picks the devices and precision, and returns the trainer.

    Each model's backbone starts as the embed stage's would (`model.weights`; a random init is drawn from
    backbone_seed, the global seed), its head from the trainer's `seed`, as in head mode.
    """
    import_tensorflow()  # quietly, before anything else loads it
    import keras
    from dvclive.keras import DVCLiveCallback

    from stages.lib.finetune.model import (
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
    print(f"{describe}: fine-tuning ResNet50 on the images; {runtime.describe()}", file=sys.stderr)
    deterministic = not runtime.xla

    def train(y: np.ndarray, seed: int, live: Any) -> Trained:
        keras.backend.clear_session()  # the previous seed's model and graphs
        apply_precision(runtime)
        seed_everything(backbone_seed, deterministic)
        with strategy.scope():
            backbone = build_backbone(model_params.weights, image_size=images.shape[1])
        # The head standardises the untrained backbone's features, as in head mode.
        start_features = backbone_features(backbone, images, settings.batch_size)
        seed_everything(seed, deterministic)
        with strategy.scope():
            set_trainable_blocks(backbone, model_params.trainable_blocks)
            model = build_fine_tune_model(backbone, build_head(start_features, task, num_classes))
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
                loss=make_loss(loss, task, settings.loss_params[loss]),
                metrics=[accuracy_metric(task)],
                jit_compile=runtime.xla,
            )
        clock = TrainingClock()
        history = model.fit(
            image_pipeline(images, y, batch_size=settings.batch_size, shuffle_seed=seed, augment=settings.augment),
            epochs=settings.epochs,
            validation_data=image_pipeline(test_images, test_y, batch_size=settings.batch_size),
            callbacks=[clock, DVCLiveCallback(live=live)],
            shuffle=False,  # ignored for a tf.data input (the pipeline shuffles); False silences Keras' warning
            verbose=2,
        )
        print(f"fine-tuning on {len(images)} images: {throughput(len(images), clock.seconds)}", file=sys.stderr)
        scores = predict_scores(model, test_images, task, settings.batch_size)
        return Trained(scores, history.history, model.save, MODEL_FILE)

    return train
