"""The finished runs of a repo (workspace, commits and their DVC experiments), read from `dvc exp show --json`.

`dvc exp show --json` nests experiments under the commit they were run from and carries each one's
params.yaml and metrics files, and the hashes of its dependencies as dvc.lock recorded them. Only runs
whose results belong to their params are kept: queued, running and failed experiments still show the
metrics of the commit they started from, so they are skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.lib.errors import UserError
from stages.lib.io import FINGERPRINTS_DIR

PARAMS_FILE = "params.yaml"
METRICS_FILE = "metrics/metrics.json"
NOISE_FILE = "metrics/noise.json"
COMPARISONS_FILE = "metrics/comparisons.json"
DETECTION_FILE = "metrics/detection.json"  # the detect stage's: confident learning against the flipped labels
WORKSPACE = "workspace"
# Params that say where an input is (a path differs between clones and machines), and the fingerprint file
# (stages/fingerprint.py, a dependency in dvc.lock) that says what it held when the run read it.
LOCATION_FINGERPRINTS = {
    "data.source": (FINGERPRINTS_DIR / "source.json").as_posix(),
    "model.weights": (FINGERPRINTS_DIR / "weights.json").as_posix(),
}


@dataclass(frozen=True)
class Run:
    """One set of results: what metrics/metrics.json held for one params.yaml."""

    name: str  # experiment name, branch or short commit, or "workspace"
    rev: str
    timestamp: str | None  # ISO 8601 (commit time); None for the workspace
    params: dict[str, Any]  # params.yaml flattened to dotted keys ("train.seeds")
    metrics: dict[str, dict[str, Any]] = field(repr=False)  # variant -> metric -> value
    # location param -> hash of its fingerprint in dvc.lock; empty for runs older than the fingerprint stage
    fingerprints: dict[str, str] = field(default_factory=dict)
    # metrics/noise.json: the training pool's realised noise (flip_rate, train_size, ...); {} if absent
    noise_summary: dict[str, Any] = field(default_factory=dict, repr=False)
    # metrics/comparisons.json: "<b> vs <a>" -> paired comparison (stages.lib.comparisons.compare_variants)
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    detection: dict[str, Any] | None = field(default=None, repr=False)  # metrics/detection.json, if any

    @property
    def noise(self) -> float:
        return float(self.params["noise"])

    @property
    def is_workspace(self) -> bool:
        return self.rev == WORKSPACE


@dataclass(frozen=True)
class Skipped:
    """A row of `dvc exp show` that holds no usable results, and why."""

    name: str
    reason: str


def exp_show_json(repo: Path | str = ".", all_commits: bool = False) -> list[dict[str, Any]]:
    """`dvc exp show --json` of the repo (experiments of HEAD's commit, or of every commit)."""
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    try:
        result = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
    except OSError as error:
        raise UserError(f"cannot run dvc ({error}): install the project's requirements") from None
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"`dvc exp show --json` failed: {message} (run this from the project's git+DVC repo)")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise UserError(f"`dvc exp show --json` printed something that is not JSON ({error})") from None


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _rows(records: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every (rev record, executor state) in exp show's nesting: baselines, then their experiments."""
    for baseline in records:
        yield baseline, None
        for experiment in baseline.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state")
            for rev in experiment.get("revs") or []:
                yield rev, state


def _file_data(data: dict[str, Any], section: str, path: str) -> dict[str, Any] | None:
    entry = (data.get(section) or {}).get(path) or {}
    return entry.get("data") if "error" not in entry else None


def fingerprints(data: dict[str, Any]) -> dict[str, str]:
    """Location param -> the hash dvc.lock recorded for its fingerprint, for the fingerprints the row has."""
    deps = data.get("deps") or {}
    found = {param: (deps.get(path) or {}).get("hash") for param, path in LOCATION_FINGERPRINTS.items()}
    return {param: digest for param, digest in found.items() if digest}


def parse_runs(records: list[dict[str, Any]]) -> tuple[list[Run], list[Skipped]]:
    """The runs with results in `dvc exp show --json` output, and the rows skipped with a reason."""
    runs: list[Run] = []
    skipped: list[Skipped] = []
    for row, state in _rows(records):
        data = row.get("data") or {}
        rev = row.get("rev") or data.get("rev") or "?"
        name = row.get("name") or (rev if rev == WORKSPACE else rev[:7])
        if state is not None and state != "success":
            # Queued, running or failed: what exp show lists as its metrics are the parent commit's.
            skipped.append(Skipped(name, state))
            continue
        if row.get("error"):
            skipped.append(Skipped(name, str(row["error"].get("msg") or "error")))
            continue
        params = _file_data(data, "params", PARAMS_FILE)
        metrics = _file_data(data, "metrics", METRICS_FILE)
        if not params or "noise" not in params:
            skipped.append(Skipped(name, f"no readable {PARAMS_FILE} with a `noise` param"))
            continue
        if not metrics:
            skipped.append(Skipped(name, f"no {METRICS_FILE} (not reproduced)"))
            continue
        noise_summary = _file_data(data, "metrics", NOISE_FILE) or {}
        recorded = noise_summary.get("noise")
        if recorded is not None and float(recorded) != float(params["noise"]):
            # The workspace after an edit of params.yaml that `dvc repro` has not caught up with.
            skipped.append(Skipped(name, f"metrics are for noise={recorded}, params.yaml says {params['noise']}"))
            continue
        comparisons = _file_data(data, "metrics", COMPARISONS_FILE) or {}
        runs.append(
            Run(
                name,
                rev,
                data.get("timestamp"),
                flatten(params),
                metrics,
                fingerprints=fingerprints(data),
                noise_summary=noise_summary,
                comparisons=comparisons,
                detection=_file_data(data, "metrics", DETECTION_FILE),
            )
        )
    return runs, skipped
