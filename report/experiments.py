"""The finished runs of a repo (workspace, commits and their DVC experiments), read from `dvc exp show --json`,
and their detail files.

`dvc exp show --json` nests experiments under the commit they were run from and carries each one's
params.yaml and headline metrics files, and the hashes of its dependencies as dvc.lock recorded them. Only
runs whose results belong to their params are kept: queued, running and failed experiments still show the
metrics of the commit they started from, so they are skipped. The detail files (metrics/details/, cached
outputs, not in git) are read from the workspace, or for a commit or an experiment through DVC from the
cache or the remote; a run whose details neither holds keeps its headline numbers only.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stages.lib.core.errors import UserError
from stages.lib.core.headline import reference_loss, verdict_comparisons
from stages.lib.core.io import (
    COMPARISON_METRICS,
    DETECTION_METRICS,
    FINGERPRINTS_DIR,
    HEADLINE_METRICS,
    NOISE_METRICS,
    VARIANT_METRICS,
    details_of,
)

PARAMS_FILE = "params.yaml"
METRICS_FILE = VARIANT_METRICS.as_posix()
NOISE_FILE = NOISE_METRICS.as_posix()
COMPARISONS_FILE = COMPARISON_METRICS.as_posix()
DETECTION_FILE = DETECTION_METRICS.as_posix()  # the detect stage's: confident learning against the flipped labels
DETAIL_FILES = tuple(details_of(path).as_posix() for path in HEADLINE_METRICS)
WORKSPACE = "workspace"
# Params that say where an input is (a path differs between clones and machines), and the fingerprint file
# (stages/fingerprint.py, a dependency in dvc.lock) that says what it held when the run read it.
LOCATION_FINGERPRINTS = {
    "data.source": (FINGERPRINTS_DIR / "source.json").as_posix(),
    "model.weights": (FINGERPRINTS_DIR / "weights.json").as_posix(),
}


@dataclass(frozen=True)
class Run:
    """One set of results: what the headline metrics files (and, where readable, their details) held for one
    params.yaml."""

    name: str  # experiment name, branch or short commit, or "workspace"
    rev: str
    timestamp: str | None  # ISO 8601 (commit time); None for the workspace
    params: dict[str, Any]  # params.yaml flattened to dotted keys ("train.seeds")
    metrics: dict[str, dict[str, Any]] = field(repr=False)  # metrics/metrics.json: variant -> metric -> mean
    # location param -> hash of its fingerprint in dvc.lock; empty for runs older than the fingerprint stage
    fingerprints: dict[str, str] = field(default_factory=dict)
    # metrics/noise.json: the realised flip rates (flip_rate, val_flip_rate); {} if absent
    noise_summary: dict[str, Any] = field(default_factory=dict, repr=False)
    # metrics/comparisons.json: "<b> vs <a>" -> the verdict comparison (stages.lib.core.headline.verdict_comparisons)
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    detection: dict[str, Any] | None = field(default=None, repr=False)  # metrics/detection.json, if any
    # detail file (metrics/details/...) -> its content, for those that could be read (with_details)
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def noise(self) -> float:
        return float(self.params["noise"])

    @property
    def repeats(self) -> int:
        """How many seeds each variant's numbers average (train.seeds)."""
        seeds = self.params.get("train.seeds")
        return len(seeds) if isinstance(seeds, list) and seeds else 1

    @property
    def variant_values(self) -> dict[str, dict[str, Any]]:
        """Per variant, every number the run has: its detail file's means and stds where that was read, else
        the headline means."""
        return self.details.get(details_of(VARIANT_METRICS).as_posix()) or self.metrics

    @property
    def all_comparisons(self) -> dict[str, dict[str, Any]]:
        """Every comparison with every metric (stages.lib.evaluate.comparisons.compare_variants' entries),
        where the detail file was read (or a run from before the split kept them in metrics/comparisons.json);
        else {}."""
        found = self.details.get(details_of(COMPARISON_METRICS).as_posix())
        if found is None and all("a" in entry for entry in self.comparisons.values()):
            found = self.comparisons
        return found or {}

    @property
    def verdict_comparisons(self) -> dict[str, dict[str, Any]]:
        """The headline comparisons (stages.lib.core.headline.verdict_comparisons)."""
        if self.comparisons and all("a" in entry for entry in self.comparisons.values()):  # before the split
            losses = self.params.get("train.losses") or []
            return verdict_comparisons(self.comparisons, reference_loss(losses)) if losses else {}
        return self.comparisons

    @property
    def detection_means(self) -> dict[str, dict[str, Any]] | None:
        """Confident learning's means over seeds, `noisy` (and `clean`, the run on the clean labels) sections as in
        the detail file, else the headline numbers as `noisy`; None without detection."""
        found = self.details.get(details_of(DETECTION_METRICS).as_posix())
        if found is None and self.detection:
            found = self.detection if "noisy" in self.detection else {"noisy": self.detection}
        return found if found and "noisy" in found else None

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


def read_details(run: Run, path: str, repo: Path | str = ".") -> dict[str, Any] | None:
    """One detail file of a run: the workspace's own file, else the run's version through DVC (its cache, or
    the remote); None where neither holds it (an experiment pulled with `--no-cache`, a run older than it)."""
    if run.is_workspace:
        local = Path(repo) / path
        return json.loads(local.read_text()) if local.is_file() else None
    from dvc.exceptions import DvcException

    try:
        return json.loads(_revision_files(str(Path(repo).resolve()), run.rev).read_text(path))
    except (OSError, DvcException):  # not in the cache, no remote or not on it, not an output of that run
        return None


@functools.cache
def _revision_files(repo: str, rev: str) -> Any:
    """DVC's view of the repo's files at one revision (git-tracked and DVC outputs alike), opened once."""
    from dvc.api import DVCFileSystem

    return DVCFileSystem(repo, rev=rev)


def with_details(
    runs: list[Run], read: Callable[[Run, str], dict[str, Any] | None] = read_details
) -> tuple[list[Run], list[Skipped]]:
    """The runs with the detail files `read` finds, and the workspace left out when its results are not for
    its params.yaml (edited since the last `dvc repro`: the noise its details say differs)."""
    kept, skipped = [], []
    for run in runs:
        found = {path: content for path in DETAIL_FILES if (content := read(run, path)) is not None}
        recorded = (found.get(details_of(NOISE_METRICS).as_posix()) or {}).get("noise")
        if run.is_workspace and recorded is not None and float(recorded) != run.noise:
            skipped.append(Skipped(run.name, f"metrics are for noise={recorded}, params.yaml says {run.noise:g}"))
            continue
        kept.append(replace(run, details=found))
    return kept, skipped
