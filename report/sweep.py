"""Runs grouped into noise sweeps, and the per-variant curves and tables of a sweep.

A sweep is every run that shares all params but `noise`: one configuration measured at several noise
levels. Runs that differ in anything else (epochs, losses, seeds, noise_type...) form separate sweeps,
never averaged together. `data.source` and `model.weights` count by what they held (their fingerprints),
not by their paths: the same images at another path, on another machine, make one sweep, and new images
at the same path another. Where one sweep has several runs at the same noise level (the workspace and the
experiment it came from, or a rerun), the most recent commit wins and the workspace counts as the oldest:
uncommitted results only fill a gap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from report.experiments import Run
from stages.lib.core.io import NOISE_METRICS, details_of
from stages.lib.core.params import LABEL_SETS
from stages.lib.core.variants import BASELINE, oracle_name, variant_name

TABLE_METRICS = ("balanced_accuracy", "auc", "accuracy")  # the verdict metric first
CALIBRATION_METRICS = ("ece", "brier")  # docs/calibration.md
FINGERPRINT = "fingerprint"
METRIC_TITLES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "auc": "AUC",
    "ece": "Expected calibration error",
    "brier": "Brier score",
}


@dataclass(frozen=True)
class Sweep:
    """One configuration's runs, one per noise level (ascending)."""

    config: dict[str, Any]  # the params every run shares (all but noise; a location param lists its paths)
    runs: tuple[Run, ...]
    superseded: tuple[Run, ...]  # runs at an already covered noise level, left out

    @property
    def noise_levels(self) -> list[float]:
        return [run.noise for run in self.runs]

    @property
    def seeds(self) -> int:
        """Repeats behind each mean (the most any run has)."""
        return max(run.repeats for run in self.runs)


@dataclass(frozen=True)
class Curve:
    """A metric of one variant against the noise rate; NaN where a run lacks it."""

    noise: np.ndarray
    mean: np.ndarray
    std: np.ndarray  # sample std over seeds; 0 for one seed


def _config_key(run: Run) -> str:
    params = {k: v for k, v in run.params.items() if k != "noise"}
    for param, digest in run.fingerprints.items():
        params[param] = {FINGERPRINT: digest}  # what it held, wherever it was
    return json.dumps(params, sort_keys=True, default=str)


def _shared_config(members: list[Run]) -> dict[str, Any]:
    """The params of a sweep's runs: every path a location param had (the same contents) and its fingerprint."""
    config = {k: v for k, v in members[0].params.items() if k != "noise"}
    for param, digest in members[0].fingerprints.items():
        paths = sorted({json.dumps(run.params.get(param), default=str) for run in members})
        if len(paths) > 1:
            config[param] = [json.loads(path) for path in paths]
        config[f"{param} {FINGERPRINT}"] = digest
    return config


def _recency(run: Run) -> tuple[int, str]:
    # ISO timestamps sort as strings; the workspace (no timestamp) sorts before every commit.
    return (0, "") if run.timestamp is None else (1, run.timestamp)


def _same_results(a: Run, b: Run) -> bool:
    return a.params == b.params and a.metrics == b.metrics


def group_sweeps(runs: Iterable[Run]) -> list[Sweep]:
    """Sweeps from runs, the most recently run sweep first."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_config_key(run), []).append(run)
    sweeps = []
    for members in groups.values():
        chosen: dict[float, Run] = {}
        superseded = []
        for run in sorted(members, key=_recency, reverse=True):
            if run.noise not in chosen:
                chosen[run.noise] = run
            elif not _same_results(run, chosen[run.noise]):  # an identical copy is not worth a mention
                superseded.append(run)
        config = _shared_config(members)
        ordered = tuple(chosen[noise] for noise in sorted(chosen))
        sweeps.append(Sweep(config, ordered, tuple(superseded)))
    return sorted(sweeps, key=lambda s: max(_recency(r) for r in s.runs), reverse=True)


def distinguishing_params(sweeps: list[Sweep]) -> list[dict[str, Any]]:
    """Per sweep, the params whose values are not the same in every sweep (empty for a single sweep)."""
    keys = sorted({key for sweep in sweeps for key in sweep.config})
    varying = [key for key in keys if len({json.dumps(s.config.get(key), default=str) for s in sweeps}) > 1]
    return [{key: sweep.config.get(key) for key in varying} for sweep in sweeps]


def variants(sweep: Sweep) -> list[str]:
    """Variant names of the sweep: noisy ones first (each followed by its oracle twin), then the clean controls,
    in train.losses order."""
    found = {name for run in sweep.runs for name in run.variant_values if name != BASELINE}
    losses = sweep.config.get("train.losses")
    order = []
    for labels in reversed(LABEL_SETS) if isinstance(losses, list) else ():
        for loss in losses:
            order += [variant_name(loss, labels), oracle_name(variant_name(loss, labels))]
    return [name for name in order if name in found] + sorted(found - set(order))


def as_float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def repeat_count(run: Run, variant: str) -> int:
    """How many seeds the variant's numbers in this run average (1 for the baseline, which has none)."""
    if variant == BASELINE:
        return 1
    seeds = as_float((run.variant_values.get(variant) or {}).get("seeds"))
    return run.repeats if math.isnan(seeds) else int(seeds)


def curve(sweep: Sweep, variant: str, metric: str) -> Curve:
    """Mean and std over seeds of `metric` for `variant` at each noise level of the sweep: the std NaN where the
    run's detail file was not read (0 for one seed and for the baseline, which does not vary)."""
    means, stds = [], []
    for run in sweep.runs:
        values = run.variant_values.get(variant) or {}
        means.append(as_float(values.get(metric)))
        std = values.get(f"{metric}_std")
        fixed = metric in values and repeat_count(run, variant) == 1
        stds.append(0.0 if std is None and fixed else as_float(std))
    return Curve(np.array(sweep.noise_levels, dtype=np.float64), np.array(means), np.array(stds))


def realised_flip_rates(sweep: Sweep) -> np.ndarray | None:
    """The training pool's realised flip rate (mean over seeds, metrics/noise.json) of each run, where it differs
    from `noise` by more than the rounding of an exact count (`seed` noise flips about noise/2, binary
    `asymmetric` about 0.19 noise, `noise_class_rates` ignore `noise`); None where it does not, or where a
    run lacks it."""
    rates, tolerances = [], []
    for run in sweep.runs:
        details = run.details.get(details_of(NOISE_METRICS).as_posix()) or run.noise_summary
        rate, size = run.noise_summary.get("flip_rate"), details.get("train_size", run.params.get("data.train_size"))
        if not isinstance(rate, int | float) or not isinstance(size, int) or size < 1:
            return None
        rates.append(float(rate))
        tolerances.append(0.5 / size + 1e-9)
    differs = np.abs(np.array(rates) - np.array(sweep.noise_levels)) > np.array(tolerances)
    return np.array(rates) if differs.any() else None
