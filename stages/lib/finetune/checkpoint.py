"""Resuming a killed fine-tuning run: a checkpoint per finished epoch, and picking it up on the next run.

After every epoch the model's weights, the optimiser's state, the epoch selection's best weights and the
history so far are saved under checkpoints/<variant>/seed_<s>/ (git-ignored, outside DVC's outputs: a
`persist` output would turn off the run-cache that queued sweeps restore from). The next run of the
same seed with the same inputs resumes after the last finished epoch: the data pipeline draws each
epoch from (seed, epoch), so the remaining epochs see the batches an uninterrupted run would, and the
final model is the same. A checkpoint is used only when its key — a hash of everything that decides
the run (the images, the labels, the params, the backend) — matches; any other is discarded. The train
stage removes a variant's checkpoints once its outputs are written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.io import atomic_dir

CHECKPOINTS_DIR = Path("checkpoints")
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
ARRAYS_FILE = "arrays.npz"  # the optimiser's variables and the best epoch's weights


def checkpoint_dir(variant: str, run: str) -> Path:
    """Where one seed's checkpoint lives (`run` is its DVCLive folder's name, seed_<s>)."""
    return CHECKPOINTS_DIR / variant / run


def run_key(*parts: Any) -> str:
    """A hash of what decides a run: arrays by their bytes, anything else by its repr."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).data)
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()


@dataclass
class Resumed:
    """What a checkpoint restores: epochs finished, the per-epoch history and the selection's state."""

    epochs_done: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    val_accuracy: list[float] = field(default_factory=list)
    best_weights: list[np.ndarray] | None = None


def load_checkpoint(folder: Path, key: str, model) -> Resumed:
    """Restore the model and its optimiser from `folder` if its key matches (the model compiled, not yet
    trained); otherwise discard the folder and start afresh."""
    state_path = folder / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        shutil.rmtree(folder, ignore_errors=True)
        return Resumed()
    if state.get("key") != key:
        shutil.rmtree(folder, ignore_errors=True)
        return Resumed()
    model.load_weights(folder / WEIGHTS_FILE)
    with np.load(folder / ARRAYS_FILE) as arrays:
        optimizer_values = [arrays[f"optimizer_{i}"] for i in range(state["optimizer_variables"])]
        best = [arrays[f"best_{i}"] for i in range(state["best_weights"])] if state["best_weights"] else None
    model.optimizer.build(model.trainable_variables)
    for variable, value in zip(model.optimizer.variables, optimizer_values, strict=True):
        variable.assign(value)
    return Resumed(state["epochs_done"], state["history"], state["val_accuracy"], best)


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


def checkpoint_callback(folder: Path, key: str, epoch_log, selection):
    """A Keras callback saving the checkpoint after each epoch (list it after EpochLog and EpochSelection).

    Each save is written beside the folder and renamed onto it: a kill mid-save leaves the previous one.
    """

    class EpochCheckpoint(_keras_callback_base()):
        def on_epoch_end(self, epoch, logs=None):
            optimizer_values = [np.asarray(v) for v in self.model.optimizer.variables]
            best = (selection.best_weights if selection is not None else None) or []
            with atomic_dir(folder) as staging:
                self.model.save_weights(staging / WEIGHTS_FILE)
                arrays = {f"optimizer_{i}": v for i, v in enumerate(optimizer_values)}
                arrays |= {f"best_{i}": np.asarray(w) for i, w in enumerate(best)}
                np.savez(staging / ARRAYS_FILE, **arrays)
                state = {
                    "key": key,
                    "epochs_done": epoch + 1,
                    "history": epoch_log.history,
                    "val_accuracy": selection.accuracy if selection is not None else [],
                    "optimizer_variables": len(optimizer_values),
                    "best_weights": len(best),
                }
                (staging / STATE_FILE).write_text(json.dumps(state))

    return EpochCheckpoint()


def relog(live, epochs_done: int, history: dict[str, list[float]], names: dict[str, str]) -> None:
    """Write the finished epochs' metrics into a fresh DVCLive log, one step each, as they were logged."""
    for epoch in range(epochs_done):
        for name, values in history.items():
            live.log_metric(names[name], values[epoch])
        live.next_step()
