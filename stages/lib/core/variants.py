"""The names every stage shares for labels and variants, built and parsed here only, and the targets
every trainer learns from.

A *variant* is one loss trained on one label set, named `<loss>-<labels>` (`bce-noisy`): the name of its
DVC stage (`train@bce-noisy`), of its folders under models/ and metrics/, and of its entry in
metrics/metrics.json, beside the majority `baseline`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.core.io import LABELS_DIR, METRICS_DIR, MODELS_DIR

# Label sets that hold a subset of the training pool: a variant trains on the rows they list.
SUBSET_LABEL_SETS = ("pruned",)
BASELINE = "baseline"  # metrics.json's entry for always answering the training pool's majority class

MODEL_FILE = "seed_{seed}.keras"  # fine-tuning: the whole Keras model
HEAD_FILE = "seed_{seed}.npz"  # head mode: a stages.lib.train.linear_head.LinearHead
# Each model's predictions on the test set, written beside it by the train stage for the evaluate stage.
SCORES_FILE = "test_scores_seed_{seed}.npy"
# What selection chose for each model (the grid point, the threshold, the epoch kept when fine-tuning) and
# how, beside it.
SELECTION_FILE = "selection_seed_{seed}.json"
# A noisy (or pruned) head variant's oracle twin: the same grid of heads chosen on the clean validation labels,
# its models, scores and selections in this subfolder of the variant's (docs/losses.md "Tuning").
ORACLE = "oracle"


def variant_name(loss: str, labels: str) -> str:
    """The name of one trained variant, as used for models/, metrics and DVC stage names."""
    return f"{loss}-{labels}"


def parse_variant(variant: str) -> tuple[str, str]:
    """(loss, labels) of a variant name; the inverse of variant_name."""
    loss, _, labels = variant.rpartition("-")
    return loss, labels


def label_file(labels: str) -> Path:
    """data/labels/<labels>.csv: clean.csv (from subsample), noisy.csv (from corrupt) or pruned.csv (detect)."""
    return LABELS_DIR / f"{labels}.csv"


# The detect stage's verdict per training image and seed (written by it, pictured by the report).
ISSUES_FILE = LABELS_DIR / "issues.csv"


def rows_for_seed(table: pd.DataFrame, seed: int, ids: np.ndarray) -> np.ndarray:
    """Positions in `ids` of the training images a subset label set (pruned) keeps for one seed."""
    if "seed" in table.columns:
        table = table[table["seed"] == seed]
    return np.flatnonzero(np.isin(ids, table["id"].to_numpy()))


def model_dir(variant: str) -> Path:
    """models/<variant>/, or for an oracle twin (oracle_name) models/<variant>/oracle/."""
    base, _, twin = variant.partition(":")
    return MODELS_DIR / base / twin if twin else MODELS_DIR / variant


def has_oracle_twin(labels: str, *, fine_tune: bool, validating: bool) -> bool:
    """Whether a variant trained on the label set `labels` has an oracle twin: a head (a fine-tuned model has
    none: its twin would need every epoch's test scores) on labels other than the clean ones, chosen on a
    validation set."""
    return not fine_tune and validating and labels != "clean"


def oracle_name(variant: str) -> str:
    """The name of a variant's oracle twin in metrics and comparisons: `<variant>:oracle`."""
    return f"{variant}:{ORACLE}"


def training_log_dir(variant: str) -> Path:
    """DVCLive's per-epoch logs of a variant, one seed_<s> folder per repeat."""
    return METRICS_DIR / "train" / variant


def curves_dir(variant: str) -> Path:
    """The variant's per-epoch means over seeds, one CSV per metric (what `dvc plots show` draws)."""
    return METRICS_DIR / "curves" / variant


def targets(labels: np.ndarray, task: str, num_classes: int) -> np.ndarray:
    """The arrays the losses expect: (N, 1) floats for binary, one-hot (N, K) for multiclass."""
    labels = np.asarray(labels, dtype=np.int64)
    if task == "binary":
        return labels.astype(np.float32).reshape(-1, 1)
    return np.eye(num_classes, dtype=np.float32)[labels]


def num_outputs(task: str, num_classes: int) -> int:
    """One sigmoid unit for the binary task, one softmax unit per class otherwise."""
    return 1 if task == "binary" else num_classes


def labels_for_seed(
    table: pd.DataFrame, seed: int, ids: np.ndarray, source: Path | str, what: str = "training"
) -> np.ndarray:
    """The labels of one repeat seed for the images `ids` (training or validation), in their order (the
    feature rows).

    The clean label file has no seed column: its labels hold for every seed.
    """
    if "seed" in table.columns:
        table = table[table["seed"] == seed]
        if table.empty:
            raise UserError(f"{source} has no labels for seed {seed}: rerun the corrupt stage (`dvc repro`)")
    by_id = table.set_index("id")["label"]
    missing = np.setdiff1d(ids, by_id.index.to_numpy())
    if len(missing):
        raise UserError(f"{source} lacks labels for {len(missing)} {what} images: rerun `dvc repro`")
    return by_id.loc[ids].to_numpy(dtype=np.int64)
