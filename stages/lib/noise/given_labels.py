"""`noise_type: given`: labels someone else gave (a second annotator, CIFAR-10N's `worse_label`) instead of
simulated flips, read from the CSV `noise_labels` names: columns `file` (relative to data.source, as in
data/prepared/labels.csv) and `label` (a class name, i.e. a folder name of data.source).

Every problem is a one-line UserError naming the CSV and the line (the header is line 1). Rows for images
outside the training pool (test images, images the subsample stage left out) are ignored; a training image
without a row is an error, naming the image.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.data.split import binary_or_class_labels

COLUMNS = ("file", "label")


def _normal(file: str) -> str:
    return PurePosixPath(str(file).replace("\\", "/")).as_posix().lstrip("./") if file else ""


def read_given_labels(path: str | Path, train: pd.DataFrame, summary: dict) -> np.ndarray:
    """The given labels of the training images `train` (columns id, file), in its row order, as the task's
    integer labels (binary: 1 for data.positive_class)."""
    path = Path(path)
    where = f"noise_labels = {path}"
    if not path.is_file():
        raise UserError(f"{where}: file not found (noise_type = given needs it)")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise UserError(f"{where}: not a readable CSV ({str(error).splitlines()[0]})") from None
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise UserError(f"{where}: lacks the column(s) {', '.join(missing)} (needs file, label)")
    classes = tuple(summary["classes"])
    by_file: dict[str, tuple[int, str]] = {}
    for row, (file, name) in enumerate(zip(table["file"], table["label"], strict=True)):
        line = row + 2
        key = _normal(file)
        if not key:
            raise UserError(f"{where}, line {line}: empty file name")
        if name not in classes:
            raise UserError(f"{where}, line {line}: unknown class {name!r} for {file}; classes: {', '.join(classes)}")
        if key in by_file:
            raise UserError(f"{where}, line {line}: {file} is labelled again (first on line {by_file[key][0]})")
        by_file[key] = (line, name)
    names = []
    for file in train["file"]:
        found = by_file.get(_normal(file))
        if found is None:
            raise UserError(f"{where}: no line for the training image {file} (every training image needs a label)")
        names.append(found[1])
    return binary_or_class_labels(names, classes, summary["task"], summary.get("positive_class"))
