"""Resuming a killed fine-tuning run: what each seed has done so far, saved as it goes, and picked up on the
next run.

A seed fine-tunes one model per grid point (train.fine_tune_grid) and keeps the best (stages.lib.train.finetune.choice).
Its folder, checkpoints/<variant>/seed_<s>/ (git-ignored, outside DVC's outputs: a `persist` output would turn
off the run-cache that queued sweeps restore from), holds:

- `grid.json`: the finished grid points — per point its per-epoch history and validation scores — and which
  (point, epoch) is the best so far;
- `best/`: that model (a Keras file) and its test-set scores, rewritten when a finished point beats it;
- `run/`: the grid point in training, after each finished epoch: its weights, the optimiser's state, the
  best epoch's weights so far, its history and validation scores.

The next run of the same seed with the same inputs skips the finished points and resumes the one in training
after its last finished epoch: the data pipeline draws each epoch from (seed, epoch), so the remaining epochs
see the batches an uninterrupted run would, and the model kept is the same. A folder is used only when its
key — a hash of everything that decides the seed's runs (the images, the labels, the params, the backend) —
matches; any other is discarded. Each file is written beside its place and renamed onto it, so a kill
mid-save leaves the previous one, and `grid.json` is written last: a point counts as finished only once its
model, if best, is in `best/`. The train stage removes a variant's checkpoints once its outputs are written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.core.errors import UserError
from stages.lib.core.io import atomic_dir, load_array, save_array, write_json
from stages.lib.train.finetune.choice import EpochScore

CHECKPOINTS_DIR = Path("checkpoints")
GRID_FILE = "grid.json"
RUN_DIR = "run"
BEST_DIR = "best"
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
ARRAYS_FILE = "arrays.npz"  # the optimiser's variables and the best epoch's weights
BEST_MODEL_FILE = "model.keras"
BEST_SCORES_FILE = "test_scores.npy"


def checkpoint_dir(variant: str, run: str) -> Path:
    """Where one seed's checkpoints live (`run` is its DVCLive folder's name, seed_<s>)."""
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
class PointRun:
    """One grid point's run so far: its per-epoch history and validation scores."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: list[EpochScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "epochs": [epoch.to_dict() for epoch in self.epochs]}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> PointRun:
        nan = float("nan")  # written as null
        history = {name: [nan if v is None else v for v in values] for name, values in saved["history"].items()}
        return cls(history, [EpochScore.from_dict(epoch) for epoch in saved["epochs"]])


@dataclass
class GridProgress:
    """A seed's finished grid points, in grid order, and the (point, epoch) of the model in best/ (None: none yet)."""

    finished: list[PointRun] = field(default_factory=list)
    best: tuple[int, int] | None = None


def start_seed(folder: Path, key: str) -> GridProgress:
    """The seed's progress from `folder` if its key matches; otherwise the folder is discarded and claimed for
    `key`, and nothing is done yet."""
    try:
        saved = json.loads((folder / GRID_FILE).read_text())
        if saved["key"] == key:
            best = tuple(saved["best"]) if saved["best"] is not None else None
            return GridProgress([PointRun.from_dict(point) for point in saved["finished"]], best)  # type: ignore[arg-type]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    progress = GridProgress()
    save_progress(folder, key, progress)
    return progress


def save_progress(folder: Path, key: str, progress: GridProgress) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    finished = [point.to_dict() for point in progress.finished]
    write_json(folder / GRID_FILE, {"key": key, "finished": finished, "best": progress.best})


def save_best(folder: Path, key: str, point: int, epoch: int, model, scores: np.ndarray) -> None:
    """The best model so far, (point, epoch), and its test-set scores into best/."""
    with atomic_dir(folder / BEST_DIR) as staging:
        model.save(staging / BEST_MODEL_FILE)
        save_array(staging / BEST_SCORES_FILE, scores)
        (staging / STATE_FILE).write_text(json.dumps({"key": key, "best": [point, epoch]}))


def best_saved(folder: Path, key: str, best: tuple[int, int]) -> tuple[Path, np.ndarray]:
    """The best model's file and its test-set scores, checked to be `best` of this key's run."""
    state = json.loads((folder / BEST_DIR / STATE_FILE).read_text())
    if state["key"] != key or tuple(state["best"]) != tuple(best):
        raise UserError(
            f"{folder / BEST_DIR} does not hold the best model {folder / GRID_FILE} names: delete {folder} and rerun"
        )
    return folder / BEST_DIR / BEST_MODEL_FILE, load_array(folder / BEST_DIR / BEST_SCORES_FILE)


@dataclass
class Resumed:
    """What a run checkpoint restores: epochs finished, the point's run so far and its best epoch's weights."""

    epochs_done: int = 0
    run: PointRun = field(default_factory=PointRun)
    best_weights: list[np.ndarray] | None = None


def resume_point(folder: Path, key: str, point: int, model) -> Resumed:
    """Restore grid point `point`'s model and its optimiser from run/ if it holds that point of this key's run
    (the model compiled, not yet trained); otherwise start it afresh."""
    run = folder / RUN_DIR
    try:
        state = json.loads((run / STATE_FILE).read_text())
    except (OSError, ValueError):
        return Resumed()
    if state.get("key") != key or state.get("point") != point:
        return Resumed()
    model.load_weights(run / WEIGHTS_FILE)
    with np.load(run / ARRAYS_FILE) as arrays:
        optimizer_values = [arrays[f"optimizer_{i}"] for i in range(state["optimizer_variables"])]
        best = [arrays[f"best_{i}"] for i in range(state["best_weights"])] if state["best_weights"] else None
    model.optimizer.build(model.trainable_variables)
    for variable, value in zip(model.optimizer.variables, optimizer_values, strict=True):
        variable.assign(value)
    return Resumed(state["epochs_done"], PointRun.from_dict(state["run"]), best)


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


def checkpoint_callback(folder: Path, key: str, point: int, history, selection):
    """A Keras callback saving grid point `point`'s run/ after each epoch (list it after EpochSelection and
    EpochHistory, whose state it saves)."""

    class EpochCheckpoint(_keras_callback_base()):
        def on_epoch_end(self, epoch, logs=None):
            optimizer_values = [np.asarray(v) for v in self.model.optimizer.variables]
            best = (selection.best_weights if selection is not None else None) or []
            epochs = selection.epochs if selection is not None else []
            with atomic_dir(folder / RUN_DIR) as staging:
                self.model.save_weights(staging / WEIGHTS_FILE)
                arrays = {f"optimizer_{i}": v for i, v in enumerate(optimizer_values)}
                arrays |= {f"best_{i}": np.asarray(w) for i, w in enumerate(best)}
                np.savez(staging / ARRAYS_FILE, **arrays)
                state = {
                    "key": key,
                    "point": point,
                    "epochs_done": epoch + 1,
                    "run": PointRun(history.history, list(epochs)).to_dict(),
                    "optimizer_variables": len(optimizer_values),
                    "best_weights": len(best),
                }
                (staging / STATE_FILE).write_text(json.dumps(state))

    return EpochCheckpoint()
