"""Fine-tuning ResNet50 itself on the images: the model, which of its blocks train, its predictions, its speed.

The model is the backbone (the same ResNet50 the embed stage runs, `model.weights`) topped by the Keras
twin of the NumPy head of head mode (stages.lib.train.head), standardised on the untrained backbone's features
of the training pool, and either started from the head fit on those features (LP-FT) or fresh
(`model.fine_tune_start`). `model.trainable_blocks` residual blocks, counted from the top, are trained with the head;
the rest stay frozen. Batch normalisation stays in inference mode throughout (its statistics and its
scale and offset frozen): a few hundred images in batches of 32 are too few to re-estimate them, and
doing so would wipe out what the ImageNet statistics carry (Keras' transfer-learning guide does the same).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import keras
import numpy as np

from stages.lib.core.params import RESNET50_BLOCKS
from stages.lib.core.variants import num_outputs
from stages.lib.losses import probabilities
from stages.lib.train.finetune.choice import EpochScore, best_epoch
from stages.lib.train.finetune.pipeline import image_pipeline
from stages.lib.train.head import TEST_ACCURACY, TEST_LOSS, VAL_ACCURACY, VAL_SCORE
from stages.lib.train.linear_head import LinearHead

_BLOCK_NAME = re.compile(r"^(conv\d_block\d+)_")

# Keras calls the numbers of fit's `validation_data` val_*, but that is the test set here: the history and
# DVCLive get the heads' names (stages.lib.train.head), test_* for them; val_* are the validation set's
# (EpochSelection, EpochHistory).
KERAS_TO_HISTORY = {"loss": "loss", "accuracy": "accuracy", "val_loss": TEST_LOSS, "val_accuracy": TEST_ACCURACY}


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


def build_head(train_features: np.ndarray, task: str, num_classes: int, start: LinearHead | None = None):
    """A linear classifier on the backbone's pooled features: standardise, then Dense; it outputs logits.
    `start`: a head fit on these features (stages.lib.train.head_trainer.linear_probe) whose kernel and bias the Dense
    layer starts from (LP-FT); None: Keras' initialisers (from the global seed).

    The losses take logits (stages.lib.losses: cross-entropy from log-softmax keeps the gradient of
    confidently wrong samples); probabilities are sigmoid/softmax of them (predict_scores).

    The standardisation is fitted on the training features (the same for every variant: labels play no
    part) and saved inside the model. Without it, raw pooled ResNet features put the initial logits far
    from 0, where the sigmoid saturates and the L1 loss's gradient p(1-p) vanishes before training starts.
    """
    standardise = keras.layers.Normalization(axis=-1, dtype="float32", name="standardise")
    standardise.adapt(np.asarray(train_features, dtype=np.float32))
    head = keras.Sequential(
        [
            keras.Input(shape=(train_features.shape[1],), name="features"),
            standardise,
            # float32 logits even under a mixed-precision policy (float16 overflows beyond 65504).
            keras.layers.Dense(num_outputs(task, num_classes), dtype="float32", name="head"),
        ],
        name="head",
    )
    if start is not None:
        # The same standardisation: both fitted on these features (tests/unit/tf/test_keras_head.py).
        head.get_layer("head").set_weights([np.asarray(start.kernel), np.asarray(start.bias)])
    return head


def accuracy_metric(task: str):
    """Training accuracy on the head's logits, by the evaluate stage's rule
    (stages.lib.evaluate.metrics.predict_labels): binary positive iff sigmoid(z) >= 0.5 (Keras' BinaryAccuracy
    uses > 0.5), multiclass argmax."""
    from stages.lib.evaluate.metrics import DECISION_THRESHOLD

    if task == "binary":

        def binary_accuracy(y_true, logits):
            predicted = keras.ops.sigmoid(keras.ops.cast(logits, "float32")) >= DECISION_THRESHOLD
            return keras.ops.cast(keras.ops.equal(keras.ops.cast(y_true, "bool"), predicted), "float32")

        return keras.metrics.MeanMetricWrapper(binary_accuracy, name="accuracy")
    return keras.metrics.CategoricalAccuracy(name="accuracy")


def build_fine_tune_model(backbone, head):
    """images (S, S, 3, preprocessed) → backbone (batch norm in inference mode) → head → logits."""
    images = keras.Input(shape=backbone.input_shape[1:], name="images")
    outputs = head(backbone(images, training=False))
    return keras.Model(images, outputs, name="fine_tuned_resnet50")


def predict_logits(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's logits of `images`, (N, 1) or (N, K), float64 (of float32), rows in the images' order."""
    return np.asarray(model.predict(image_pipeline(images, batch_size=batch_size), verbose=0), dtype=np.float64)


def predict_scores(model, images: np.ndarray, task: str, batch_size: int) -> np.ndarray:
    """P(positive) as (N,) for binary, class probabilities (N, K) otherwise (sigmoid / softmax of the model's
    logits); rows in the images' order."""
    scores = probabilities(predict_logits(model, images, batch_size), task).astype(np.float64)
    return scores[:, 0] if task == "binary" else scores


def backbone_features(backbone, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The backbone's pooled features of `images` (float32, N×2048), in order."""
    features = backbone.predict(image_pipeline(images, batch_size=batch_size), verbose=0)
    return np.asarray(features, dtype=np.float32)


class TrainingClock(keras.callbacks.Callback):
    """Seconds each epoch of model.fit spent training, its validation pass left out."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__()
        self.clock = clock  # tests pass a fake one
        self.seconds: list[float] = []
        self._started = self._stopped = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._stopped = self.clock(), None

    def on_test_begin(self, logs=None):  # fit's validation pass starts
        if self._started is not None and self._stopped is None:
            self._stopped = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append((self._stopped or self.clock()) - self._started)


class EpochSelection(keras.callbacks.Callback):
    """After each epoch, the validation images' logits scored by `score` (stages.lib.train.finetune.choice.score_epoch:
    the variant's own labels, noisy for a noisy variant); with `keep_best` (train.select_epoch: val), a copy
    of the weights of the best epoch so far (choice.best_epoch), which `restore_best` puts back. `epochs`
    and `best_weights` may be given from a checkpoint (a resumed run). List it before EpochHistory."""

    def __init__(
        self,
        images: np.ndarray,
        batch_size: int,
        score: Callable[[np.ndarray], EpochScore],
        keep_best: bool,
        epochs: list[EpochScore] | None = None,
        best_weights: list[np.ndarray] | None = None,
    ):
        super().__init__()
        self.images, self.batch_size, self.score, self.keep_best = images, batch_size, score, keep_best
        self.epochs: list[EpochScore] = list(epochs or [])
        self.best_weights = best_weights

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.score(predict_logits(self.model, self.images, self.batch_size)))
        if self.keep_best and best_epoch(self.epochs, "val") == len(self.epochs) - 1:
            self.best_weights = [np.array(w) for w in self.model.get_weights()]

    def restore_best(self, model) -> None:
        """Put the best epoch's weights back into `model` (nothing to do when the last epoch is kept)."""
        if self.keep_best and self.best_weights is not None:
            model.set_weights(self.best_weights)


class EpochHistory(keras.callbacks.Callback):
    """Each epoch's numbers under the names a user reads (KERAS_TO_HISTORY, stages.lib.train.head): the training
    and test loss and accuracy, and with an EpochSelection the validation accuracy at 0.5 and the selection
    score; `progress(1)` then moves the variant's bar. `history` may start from a checkpoint (a resumed run).
    The trainer logs the kept grid point's history to DVCLive once it is chosen."""

    def __init__(
        self,
        selection: EpochSelection | None,
        history: dict | None = None,
        progress: Callable[[int], object] | None = None,
    ):
        super().__init__()
        self.selection, self.progress = selection, progress
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        values = {name: float(logs[key]) for key, name in KERAS_TO_HISTORY.items() if key in logs}  # in that order
        if self.selection is not None:
            last = self.selection.epochs[-1]
            values[VAL_ACCURACY], values[VAL_SCORE] = last.val_accuracy_at_half, last.score
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)
        if self.progress is not None:
            self.progress(1)


def throughput(images: int, seconds: list[float]) -> str:
    """A log line: the first epoch (it traces, and compiles with XLA) apart from the steady ones after it."""
    first = f"epoch 1 (with tracing) {seconds[0]:.1f} s"
    if len(seconds) == 1:
        return f"{first}: {images / seconds[0]:.1f} images/s"
    steady = f"epochs 2-{len(seconds)}" if len(seconds) > 2 else "epoch 2"
    return f"{first}; {steady}: {images * (len(seconds) - 1) / sum(seconds[1:]):.1f} images/s"
