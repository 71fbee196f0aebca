"""The classifier head as a Keras model (fine-tuning mode; head mode trains its NumPy twin,
stages.lib.linear_head), and the targets and label tables every mode learns from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.errors import UserError

MODEL_FILE = "seed_{seed}.keras"  # fine-tuning: the whole Keras model
HEAD_FILE = "seed_{seed}.npz"  # head mode: a stages.lib.linear_head.LinearHead
# Each model's predictions on the test set, written beside it by the train stage for the evaluate stage.
SCORES_FILE = "test_scores_seed_{seed}.npy"


def num_outputs(task: str, num_classes: int) -> int:
    """One logit (sigmoid) for the binary task, one logit per class (softmax) otherwise."""
    return 1 if task == "binary" else num_classes


def build_head(train_features: np.ndarray, task: str, num_classes: int):
    """A linear classifier on the backbone's pooled features: standardise, then Dense; it outputs logits.

    The losses take logits (stages.lib.losses: cross-entropy from log-softmax keeps the gradient of
    confidently wrong samples); probabilities are sigmoid/softmax of them (stages.lib.finetune.predict_scores).

    The standardisation is fitted on the training features (the same for every variant: labels play no
    part) and saved inside the model. Without it, raw pooled ResNet features put the initial logits far
    from 0, where the sigmoid saturates and the L1 loss's gradient p(1-p) vanishes before training starts.
    """
    import keras

    standardise = keras.layers.Normalization(axis=-1, dtype="float32", name="standardise")
    standardise.adapt(np.asarray(train_features, dtype=np.float32))
    return keras.Sequential(
        [
            keras.Input(shape=(train_features.shape[1],), name="features"),
            standardise,
            # float32 logits even under a mixed-precision policy (float16 overflows beyond 65504).
            keras.layers.Dense(num_outputs(task, num_classes), dtype="float32", name="head"),
        ],
        name="head",
    )


def accuracy_metric(task: str):
    """Training accuracy on the head's logits, by the evaluate stage's rule (stages.lib.metrics.predict_labels):
    binary positive iff sigmoid(z) >= 0.5 (Keras' BinaryAccuracy uses > 0.5), multiclass argmax."""
    import keras

    from stages.lib.metrics import DECISION_THRESHOLD

    if task == "binary":

        def binary_accuracy(y_true, logits):
            predicted = keras.ops.sigmoid(keras.ops.cast(logits, "float32")) >= DECISION_THRESHOLD
            return keras.ops.cast(keras.ops.equal(keras.ops.cast(y_true, "bool"), predicted), "float32")

        return keras.metrics.MeanMetricWrapper(binary_accuracy, name="accuracy")
    return keras.metrics.CategoricalAccuracy(name="accuracy")


def targets(labels: np.ndarray, task: str, num_classes: int) -> np.ndarray:
    """The arrays the losses expect: (N, 1) floats for binary, one-hot (N, K) for multiclass."""
    labels = np.asarray(labels, dtype=np.int64)
    if task == "binary":
        return labels.astype(np.float32).reshape(-1, 1)
    return np.eye(num_classes, dtype=np.float32)[labels]


def labels_for_seed(table: pd.DataFrame, seed: int, ids: np.ndarray, source: Path | str) -> np.ndarray:
    """The training labels of one repeat seed, in the order of `ids` (the feature rows).

    The clean label file has no seed column: its labels hold for every seed.
    """
    if "seed" in table.columns:
        table = table[table["seed"] == seed]
        if table.empty:
            raise UserError(f"{source} has no labels for seed {seed}: rerun the corrupt stage (`dvc repro`)")
    by_id = table.set_index("id")["label"]
    missing = np.setdiff1d(ids, by_id.index.to_numpy())
    if len(missing):
        raise UserError(f"{source} lacks labels for {len(missing)} training images: rerun `dvc repro`")
    return by_id.loc[ids].to_numpy(dtype=np.int64)
