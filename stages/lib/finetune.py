"""Fine-tuning ResNet50 itself on the images: the model, which of its blocks train, its predictions, its speed.

The model is the backbone (the same ResNet50 the embed stage runs, `model.weights`) topped by the same
head every variant uses (see stages.lib.head), standardised on the untrained backbone's features of the
training pool. `model.trainable_blocks` residual blocks, counted from the top, are trained with the head;
the rest stay frozen. Batch normalisation stays in inference mode throughout (its statistics and its
scale and offset frozen): a few hundred images in batches of 32 are too few to re-estimate them, and
doing so would wipe out what the ImageNet statistics carry (Keras' transfer-learning guide does the same).
"""

from __future__ import annotations

import re
import time

import keras
import numpy as np

from stages.lib.datasets import image_pipeline
from stages.lib.losses import probabilities
from stages.lib.params import RESNET50_BLOCKS

_BLOCK_NAME = re.compile(r"^(conv\d_block\d+)_")


def block_of(layer_name: str) -> str | None:
    """The residual block a ResNet50 layer belongs to (e.g. conv4_block6), None for the stem and pooling."""
    match = _BLOCK_NAME.match(layer_name)
    return match.group(1) if match else None


def residual_blocks(backbone) -> list[str]:
    """The backbone's residual blocks, bottom to top (conv2_block1 … conv5_block3)."""
    blocks: list[str] = []
    for layer in backbone.layers:
        block = block_of(layer.name)
        if block and block not in blocks:
            blocks.append(block)
    if len(blocks) != RESNET50_BLOCKS:
        raise ValueError(f"expected ResNet50's {RESNET50_BLOCKS} residual blocks, found {len(blocks)}")
    return blocks


def set_trainable_blocks(backbone, trainable_blocks: int | None) -> None:
    """Train the top `trainable_blocks` residual blocks (None: the whole network, stem included).

    Everything else is frozen, and so is every BatchNormalization layer.
    """
    blocks = residual_blocks(backbone)
    trained = set(blocks) if trainable_blocks is None else set(blocks[len(blocks) - trainable_blocks :])
    backbone.trainable = True  # resets every layer; each is then set below
    for layer in backbone.layers:
        in_trained_part = trainable_blocks is None or block_of(layer.name) in trained
        layer.trainable = in_trained_part and not isinstance(layer, keras.layers.BatchNormalization)


def build_fine_tune_model(backbone, head):
    """images (S, S, 3, preprocessed) → backbone (batch norm in inference mode) → head → logits."""
    images = keras.Input(shape=backbone.input_shape[1:], name="images")
    outputs = head(backbone(images, training=False))
    return keras.Model(images, outputs, name="fine_tuned_resnet50")


def predict_scores(model, images: np.ndarray, task: str, batch_size: int) -> np.ndarray:
    """P(positive) as (N,) for binary, class probabilities (N, K) otherwise (sigmoid / softmax of the model's
    logits); rows in the images' order."""
    logits = model.predict(image_pipeline(images, batch_size=batch_size), verbose=0)
    scores = probabilities(logits, task).astype(np.float64)
    return scores[:, 0] if task == "binary" else scores


def backbone_features(backbone, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The backbone's pooled features of `images` (float32, N×2048), in order."""
    features = backbone.predict(image_pipeline(images, batch_size=batch_size), verbose=0)
    return np.asarray(features, dtype=np.float32)


class TrainingClock(keras.callbacks.Callback):
    """Seconds each epoch of model.fit spent training, its validation pass left out."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._started = self._stopped = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._stopped = time.perf_counter(), None

    def on_test_begin(self, logs=None):  # fit's validation pass starts
        if self._started is not None and self._stopped is None:
            self._stopped = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append((self._stopped or time.perf_counter()) - self._started)


def throughput(images: int, seconds: list[float]) -> str:
    """A log line: the first epoch (it traces, and compiles with XLA) apart from the steady ones after it."""
    first = f"epoch 1 (with tracing) {seconds[0]:.1f} s"
    if len(seconds) == 1:
        return f"{first}: {images / seconds[0]:.1f} images/s"
    steady = f"epochs 2-{len(seconds)}" if len(seconds) > 2 else "epoch 2"
    return f"{first}; {steady}: {images * (len(seconds) - 1) / sum(seconds[1:]):.1f} images/s"
