"""File I/O shared by the stages: atomic writes and the project's paths.

Every output is written under a temporary name in its own folder (`.<name>.<random>.tmp`) and renamed
into place when complete, so a stage killed midway leaves nothing that looks finished (DVC then reruns
it). A kill that skips clean-up (SIGKILL, OOM) can leave such a temporary behind: the next write of the
same output deletes it, and .gitignore and .dvcignore keep it out of git and out of DVC's hashes.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stages.lib.core.errors import UserError, describe_os_fault

if TYPE_CHECKING:  # pandas loads in 0.5 s: the fingerprint stage, which runs on every repro, never needs it
    import pandas as pd

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")
LABELS_TABLE = PREPARED_DIR / "labels.csv"
DATA_SUMMARY = PREPARED_DIR / "summary.json"  # what the subsample stage found, used and skipped
LABELS_DIR = Path("data/labels")
FEATURES_DIR = Path("data/features")
FINGERPRINTS_DIR = Path("data/fingerprints")  # what data.source and model.weights hold (stages/fingerprint.py)
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")
# The headline metrics: dvc.yaml's `metrics:` files, in git, a few numbers per variant that `dvc metrics diff`
# and `dvc exp show` compare across runs. Each has a detail file of the same name under DETAILS_DIR (a cached
# output: everything else the stage measured), which the report and the plots read.
VARIANT_METRICS = METRICS_DIR / "metrics.json"  # evaluate: per variant, means over seeds
COMPARISON_METRICS = METRICS_DIR / "comparisons.json"  # evaluate: the verdict comparisons
DETECTION_METRICS = METRICS_DIR / "detection.json"  # detect: confident learning against the flipped labels
NOISE_METRICS = METRICS_DIR / "noise.json"  # corrupt: the realised noise
HEADLINE_METRICS = (VARIANT_METRICS, COMPARISON_METRICS, DETECTION_METRICS, NOISE_METRICS)
DETAILS_DIR = METRICS_DIR / "details"
PER_SEED_DETAILS = DETAILS_DIR / "per_seed.json"  # evaluate: every metric of every seed's model


def details_of(headline: Path) -> Path:
    """The detail file of a headline metrics file: metrics/details/<its name>."""
    return DETAILS_DIR / headline.name


SPLITS = ("train", "val", "test")  # labels.csv's `split` values; val: the (noisy) validation set


def images_path(split: str) -> Path:
    return PREPARED_DIR / f"{split}_images.npy"


def features_path(split: str) -> Path:
    return FEATURES_DIR / f"{split}.npy"


TEMP_SUFFIX = ".tmp"
# tempfile makes its files 0600 and folders 0700; an output gets the modes open() and mkdir() would give it.
# The umask is read once, at import, before any stage starts threads (reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE, DIR_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_leftovers(path: Path) -> None:
    """Delete temporaries of `path` that an earlier, killed run left behind.

    Safe because one output has one writer at a time: DVC runs one stage per workspace, and queued
    experiments run in copies of it.
    """
    for leftover in path.parent.glob(glob.escape(_temp_prefix(path)) + "*" + TEMP_SUFFIX):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextmanager
def _faults_named(path: Path) -> Iterator[None]:
    """A full disk, a read-only file system or a permission problem while writing `path` becomes a UserError
    naming its folder and the fix (stages.lib.core.errors.describe_os_fault); any other error passes unchanged."""
    try:
        yield
    except OSError as error:
        line = describe_os_fault(error, writing=path)
        if line is None:
            raise
        raise UserError(line) from error


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    with _faults_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        tmp_path.chmod(FILE_MODE)
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        finally:
            tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    with _faults_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        tmp_path = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent))
        tmp_path.chmod(DIR_MODE)
        try:
            yield tmp_path
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp_path, path)
        finally:
            shutil.rmtree(tmp_path, ignore_errors=True)


def _json_safe(data: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers and DVC cannot read them."""
    if isinstance(data, float) and not np.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: _json_safe(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(value) for value in data]
    return data


def write_json(path: Path | str, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def read_json(path: Path | str) -> Any:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage that writes it first (`dvc repro`)")
    return json.loads(path.read_text())


def write_csv(path: Path | str, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")


def save_array(path: Path | str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def load_array(path: Path | str, mmap: bool = False) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage that writes it first (`dvc repro`)")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def read_csv(path: Path | str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run the stage that writes it first (`dvc repro`)")
    import pandas as pd

    return pd.read_csv(path)


def label_names(summary: dict[str, Any]) -> list[str]:
    """Names of the label values 0..K-1 (from the data summary): binary is [not_<positive>, <positive>]."""
    if summary["task"] == "binary":
        positive = summary["positive_class"]
        return [f"not_{positive}", positive]
    return list(summary["classes"])


LABELS_COLUMNS = ("id", "file", "class", "label", "split")


def read_prepared(task: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The labels table and the data summary, checked against each other and, if given, the `task` param.

    They come from one run of the subsample stage; a mismatch means files from different runs or a
    hand edit, which would otherwise surface as an index error deep inside NumPy.
    """
    summary = read_json(DATA_SUMMARY)
    table = read_csv(LABELS_TABLE)
    rerun = "rerun `dvc repro` (or `dvc repro -f subsample`)"
    if task is not None and summary.get("task") != task:
        raise UserError(f"task = {task!r}, but {PREPARED_DIR} was prepared for task {summary.get('task')!r}: {rerun}")
    missing = [column for column in LABELS_COLUMNS if column not in table.columns]
    if missing:
        raise UserError(f"{LABELS_TABLE} lacks the columns {', '.join(missing)}: {rerun}")
    num_classes = len(label_names(summary))
    labels = table["label"]
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= num_classes:
        raise UserError(f"{LABELS_TABLE}: labels must be integers in [0, {num_classes - 1}] ({DATA_SUMMARY}): {rerun}")
    if set(table["split"]) - set(SPLITS):
        raise UserError(f"{LABELS_TABLE}: split must be one of {', '.join(SPLITS)}: {rerun}")
    return table, summary


def file_digest(path: Path) -> str:
    """The file's sha256, hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
