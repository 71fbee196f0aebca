"""What one variant trains on, seed by seed: the training rows (all of the pool, or those a subset label set
such as `pruned` keeps), their labels, the validation labels, and the forward loss's transition matrix.

Read from the variant's label file (data/labels/<labels>.csv) and checked for every seed before the first
model trains, so a stale or hand-edited file fails at once with one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.core.io import read_csv
from stages.lib.core.variants import SUBSET_LABEL_SETS, label_file, labels_for_seed, rows_for_seed
from stages.lib.noise.transition import estimated_transitions, transition_matrix


@dataclass(frozen=True)
class SeedLabels:
    """One seed's training rows (positions in the training pool), their labels, the validation labels, and
    the forward loss's T (None for the other losses)."""

    rows: np.ndarray
    labels: np.ndarray
    val_labels: np.ndarray
    transition: np.ndarray | None
    val_transition: np.ndarray | None = None  # the validation labels' T that corrects selection (or None)

    @property
    def key(self) -> bytes:
        """The same bytes for two seeds that train and choose on exactly the same labels and matrices."""
        parts = [self.rows, self.labels, self.val_labels, self.transition, self.val_transition]
        return b"|".join(b"-" if part is None else np.ascontiguousarray(part).tobytes() for part in parts)


def seed_labels(
    table: pd.DataFrame,
    label_set: str,
    variant: str,
    forward_source: str | None,
    repeats: tuple[int, ...],
    num_classes: int,
    select_source: str | None = None,
) -> dict[int, SeedLabels]:
    """Per repeat seed, what the variant trains and validates on. `table`: the prepared labels table (its true
    labels and splits); `forward_source`: the forward loss's `T` param (None for other losses);
    `select_source`: which T corrects the selection score (stages.lib.noise.transition.SELECT_SCORE_TRANSITIONS:
    None, `true` or `estimated`; clean labels are never corrected)."""
    source = label_file(label_set)
    label_table = read_csv(source)
    train = table[table["split"] == "train"]
    train_ids, true_labels = train["id"].to_numpy(), train["label"].to_numpy()
    val = table[table["split"] == "val"]
    val_ids, val_true = val["id"].to_numpy(), val["label"].to_numpy()
    estimated = estimated_transitions(variant, repeats, num_classes) if forward_source == "estimated" else {}
    correcting = select_source if label_set != "clean" else None
    val_estimated = (
        estimated_transitions(variant, repeats, num_classes, "validation") if correcting == "estimated" else {}
    )
    subset = label_set in SUBSET_LABEL_SETS
    result = {}
    for repeat in repeats:
        rows = rows_for_seed(label_table, repeat, train_ids) if subset else np.arange(len(train_ids))
        labels = labels_for_seed(label_table, repeat, train_ids[rows], source)
        val_labels = labels_for_seed(label_table, repeat, val_ids, source, "validation")
        if any(len(x) and (x.min() < 0 or x.max() >= num_classes) for x in (labels, val_labels)):
            raise UserError(f"{source}: labels outside [0, {num_classes - 1}]: rerun `dvc repro`")
        # T: true is each seed's realised noise, true label -> given label (docs/losses.md); estimated, detect's.
        realised = transition_matrix(true_labels[rows], labels, num_classes) if forward_source == "true" else None
        val_realised = (
            transition_matrix(val_true, val_labels, num_classes) if correcting == "true" and len(val_labels) else None
        )
        result[repeat] = SeedLabels(
            rows, labels, val_labels, estimated.get(repeat, realised), val_estimated.get(repeat, val_realised)
        )
    return result
