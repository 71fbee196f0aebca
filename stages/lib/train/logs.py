"""What training shows and keeps besides the models: a progress bar per variant and one summary line per seed on
the terminal, each seed's per-step values in DVCLive's files, and the per-step means over seeds that `dvc plots`
draws.

The bar goes to stderr and is drawn only when stderr is a terminal: under a log file or a pipe (CI, Slurm, a
test capturing the output) tqdm would write every redraw there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from stages.lib.core.variants import parse_variant
from stages.lib.train.head import LOG_NAMES
from stages.lib.train.interface import History, Trained

CURVE_METRICS = ("loss", "accuracy")


def epoch_bar(variant: str, total_epochs: int) -> tqdm:
    """The variant's bar over `total_epochs` (seeds × train.epochs); a context manager. `disable=None`:
    tqdm turns it off when stderr is not a terminal."""
    return tqdm(total=total_epochs, desc=f"train {variant}", unit="epoch", file=sys.stderr, disable=None, leave=True)


def say(line: str) -> None:
    """A line on stderr that leaves a bar drawn below it intact (printed even when the bar is off)."""
    tqdm.write(line, file=sys.stderr)


# How train.select_score's value reads in a line about the score it chose with.
SCORE_CORRECTIONS = {
    "corrected_true": "corrected with the realised T",
    "corrected_estimated": "corrected with detect's T",
}


def summary_line(variant: str, repeat: int, trained: Trained, epochs: int) -> str:
    """One seed's outcome in one line: what was kept (the epoch, or the grid point and how its optimiser
    ended), what chose it on which validation labels, and the threshold; the per-step numbers are in
    DVCLive's files."""
    chosen = trained.chosen
    parts = [] if trained.epoch is None else [f"epoch {trained.epoch}/{epochs}"]
    tuned = chosen.get("hyper_parameters") or {}
    if tuned:
        point = ", ".join(f"{name} {value:g}" for name, value in tuned.items())
        parts.append(f"{point} (best of {chosen['grid_size']} grid points)")
    if "iterations" in chosen:
        state = "converged" if chosen["converged"] else "NOT converged"
        parts.append(f"{state} in {chosen['iterations']} iterations (|gradient| {chosen['gradient_norm']:.1e})")
    if "val_score" in chosen:
        # A variant validates on labels like its training labels: the clean ones for a clean control.
        labels = "clean" if parse_variant(variant)[1] == "clean" else "noisy"
        how = f", {SCORE_CORRECTIONS[chosen['select_score']]}" if chosen.get("corrected") else ""
        parts.append(
            f"by val {chosen['select_by']} on {labels} labels; val {chosen['metric']} {chosen['val_metric']:.4f}{how}"
        )
    elif trained.val_accuracy is not None:
        parts.append(f"val accuracy {trained.val_accuracy:.4f}")
    else:
        parts.append("no validation set: nothing chosen")
    parts.append(f"threshold {trained.threshold:.3f}")
    return f"train {variant}: seed {repeat}: " + "; ".join(parts)


@contextmanager
def live_log(log_dir: Path) -> Iterator[Any]:
    """A DVCLive logger writing into log_dir only (dvc.yaml declares the plots itself); ended on exit,
    also when training raises."""
    from dvclive import Live

    class FilesOnlyLive(Live):
        # dvc.yaml declares the logs as stage outputs: DVCLive's DVC setup (experiment names, saving
        # experiments) has nothing to do, and in dvclive 3.49.1 it asks git for HEAD before checking that
        # there is a commit, which kills a first `dvc repro` before the first commit (dvclive#522).
        def _init_dvc(self) -> None:
            self._dvc_file = "dvc.yaml"  # what DVCLive's setup sets with dvcyaml=False; never written

        # DVCLive 3.49.1 gathers the data for Studio on every step even when no Studio is set up (it then
        # drops it): it re-reads every metric file so far, quadratic in the epochs, 35 % of a head's train
        # stage at the defaults (benchmarks/README.md). Without Studio there is nothing to gather.
        def post_data_to_studio(self) -> None:
            if "data" not in getattr(self, "_studio_events_to_skip", ()):
                super().post_data_to_studio()

    with FilesOnlyLive(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        yield live


def log_history(live: Any, history: History) -> None:
    """A whole training's per-epoch values, epoch by epoch, as log_epoch logs them."""
    for epoch in range(len(history["loss"])):
        log_epoch(live, {key: values[epoch] for key, values in history.items()})


def log_epoch(live: Any, values: dict[str, float]) -> None:
    """One epoch's values under their DVCLive names (stages.lib.train.head.LOG_NAMES: train/loss, test/accuracy,
    val/accuracy, ...)."""
    for name, value in values.items():
        live.log_metric(LOG_NAMES.get(name, name), value)
    live.next_step()


def mean_curves(histories: Sequence[History]) -> dict[str, pd.DataFrame]:
    """Per metric, the per-step mean over seeds of the training value and of the test value.

    `histories` are per-step histories (`loss`, `test_loss`, ...), one per seed; a shorter one (a head whose
    optimiser stopped sooner) is carried at its last value to the longest. Columns: step (from 1), train,
    test, and their sample standard deviations over seeds (0 for one seed).
    """
    curves = {}
    steps = max(len(history["loss"]) for history in histories)
    for metric in CURVE_METRICS:
        columns = {"step": np.arange(1, steps + 1)}
        for split, key in (("train", metric), ("test", f"test_{metric}")):
            values = np.array(
                [np.pad(history[key], (0, steps - len(history[key])), mode="edge") for history in histories],
                dtype=np.float64,
            )
            columns[split] = values.mean(axis=0)
            columns[f"{split}_std"] = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(steps)
        curves[metric] = pd.DataFrame(columns)
    return curves
