"""The trainer interface: what the train stage hands a trainer, what it asks of it, and what it gets back.

A trainer trains one variant seed by seed. Its class says what it reads (the cached features or the images),
how a variant's seeds run (forked on every CPU, or one at a time) and so how each seed's DVCLive log is
written; an instance is built from a `Setup` (what every seed of the
variant shares) and fits one seed's `SeedTargets`. The two trainers: heads on the features
(stages.lib.train.head_trainer) and fine-tuning on the images (stages.lib.train.finetune.trainer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stages.lib.core.errors import UserError
from stages.lib.core.io import LABELS_TABLE, load_array, save_array, write_json
from stages.lib.core.params import DEFAULT_VERDICT_METRIC, ModelParams, TrainParams
from stages.lib.core.variants import ORACLE, SCORES_FILE, SELECTION_FILE
from stages.lib.evaluate.metrics import DECISION_THRESHOLD

# Per step (an iterate of a head's optimiser, an epoch of fine-tuning): loss, accuracy, test_loss,
# test_accuracy, and for fine-tuning val_accuracy (stages.lib.train.head).
History = dict[str, list[float]]
Progress = Callable[[int], object]  # called with the number of steps just finished (a tqdm bar's update)


@dataclass(frozen=True)
class Setup:
    """What every seed of one variant shares: its inputs (features, or images when fine-tuning), the test
    set's targets, the task, the loss, the settings, and the global seed."""

    variant: str
    inputs: np.ndarray
    val_inputs: np.ndarray  # the validation set (0 rows when data.val_size is 0)
    test_inputs: np.ndarray
    test_y: np.ndarray
    task: str
    num_classes: int
    loss: str
    settings: TrainParams
    model: ModelParams
    seed: int
    metric: str = DEFAULT_VERDICT_METRIC  # evaluate.metric: what selection aims at


@dataclass(frozen=True)
class SeedTargets:
    """What one seed trains on and chooses with, as targets (stages.lib.core.variants.targets)."""

    y: np.ndarray  # the training labels
    seed: int  # the seed its initial weights and batch order are drawn from
    val_y: np.ndarray | None = None  # the variant's own validation labels (noisy for a noisy variant)
    transition: np.ndarray | None = None  # the forward loss's T (None for the other losses)
    val_transition: np.ndarray | None = None  # the T that corrects the selection's metric (train.select_score)
    # The true training and validation labels that choose the oracle twin (None: no twin).
    oracle_y: np.ndarray | None = None
    oracle_val_y: np.ndarray | None = None


@dataclass(frozen=True)
class Trained:
    """One trained model: its test-set scores (P(positive) (N,) or class probabilities (N, K)), its
    per-step history, and how to save it (`file_name`, a pattern with `{seed}`, names the file)."""

    scores: np.ndarray
    history: History
    save: Callable[[Path], None]
    file_name: str
    epoch: int | None  # fine-tuning: the epoch of the model kept, from 1; a head: None (fit to its optimum)
    val_accuracy: float | None  # its accuracy on the validation labels (None without a validation set)
    threshold: float = DECISION_THRESHOLD  # binary: P(positive) from which it predicts positive
    # What selection chose: the tuned values, the scores and how they were computed, and (a head) how the
    # optimiser ended, (fine-tuning) where it started.
    chosen: dict[str, Any] = field(default_factory=dict)
    # A noisy variant's head: the same grid chosen on the clean validation labels (the oracle twin).
    oracle: Trained | None = None

    def write(self, folder: Path, repeat: int, select_epoch: str) -> None:
        """The model, its test scores and what chose it into `folder`; its oracle twin's into folder/oracle."""
        self.save(folder / self.file_name.format(seed=repeat))
        save_array(folder / SCORES_FILE.format(seed=repeat), self.scores.astype(np.float32))
        selection = {"select_epoch": select_epoch, "epoch": self.epoch, "val_accuracy": self.val_accuracy}
        write_json(
            folder / SELECTION_FILE.format(seed=repeat), {**selection, "threshold": self.threshold, **self.chosen}
        )
        if self.oracle is not None:
            (folder / ORACLE).mkdir(exist_ok=True)
            self.oracle.write(folder / ORACLE, repeat, select_epoch)


class Trainer(ABC):
    """Trains one variant's seeds. Subclasses say what they read and how their seeds run."""

    # What it trains on: where a split's inputs are (stages.lib.core.io), and whether to memory-map them.
    input_path: ClassVar[Callable[[str], Path]]
    memory_mapped: ClassVar[bool] = False

    def __init__(self, setup: Setup) -> None:
        self.setup = setup

    @classmethod
    def read_inputs(cls, rows: Mapping[str, int]) -> dict[str, np.ndarray]:
        """Each split's inputs, checked to have the `rows` the prepared labels table lists for it."""
        inputs = {split: load_array(cls.input_path(split), mmap=cls.memory_mapped) for split in rows}
        for split, array in inputs.items():
            if len(array) != rows[split]:
                raise UserError(
                    f"{cls.input_path(split)} has {len(array)} rows but {LABELS_TABLE} lists {rows[split]} images: "
                    "rerun `dvc repro`"
                )
        return inputs

    @abstractmethod
    def fit(self, targets: SeedTargets, live: Any, progress: Progress | None = None) -> Trained:
        """One seed's model, chosen on its validation labels; its history logged to the DVCLive logger `live`
        (None: the caller logs it), `progress` called as steps finish."""

    def steps_per_seed(self) -> int:
        """A seed's steps on the variant's progress bar."""
        return 1

    @classmethod
    @abstractmethod
    def trained_by_seed(
        cls,
        trainers: Mapping[int, Trainer],
        targets: Mapping[int, SeedTargets],
        log_root: Path,
        progress: Progress,
        key: Callable[[int], bytes],
    ) -> Iterator[tuple[int, Trained]]:
        """(seed, its model) in seed order, each seed fit by its trainer and logged under log_root/seed_<seed>.
        Seeds with equal `key`s train and choose on the same data."""
