"""What the subsample stage makes of data/raw: its checks on the classes found, the labels table of the
split (one row per image used) and the data summary (what was found, used and skipped, and why)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from stages.lib import params as P
from stages.lib.errors import UserError
from stages.lib.images import FolderScan
from stages.lib.io import SPLITS


def check_positive_class(positive: str, class_names: tuple[str, ...]) -> None:
    if positive not in class_names:
        raise UserError(
            f"data.positive_class = {positive!r}: not a class of the data; classes: {', '.join(class_names)}"
        )


def check_classes(class_names: tuple[str, ...], source: str, after: str = "") -> None:
    """Both tasks need two classes or more: with one, every label is the same and nothing can be learned."""
    if len(class_names) < 2:
        raise UserError(
            f"data.source = {source!r}: {after}holds one class ({', '.join(class_names)}); "
            "give a folder with a subfolder per class, two or more"
        )


def labels_table(
    files: list[str], classes: list[str], labels: np.ndarray, parts: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> pd.DataFrame:
    """One row per image in a split (id, file, class, label, split), in id order; `parts` are the indices
    of the training pool, the validation set and the test set among `files`."""
    split = np.full(len(files), "", dtype=object)
    for name, indices in zip(SPLITS, parts, strict=True):
        split[indices] = name
    table = pd.DataFrame(
        {"id": np.arange(len(files)), "file": files, "class": classes, "label": labels, "split": split}
    )
    return table[table["split"] != ""].reset_index(drop=True)


def data_summary(
    data: P.DataParams,
    task: str,
    scan: FolderScan,
    classes: list[str],
    failed: dict[int, str],
    table: pd.DataFrame,
) -> dict[str, Any]:
    """What data/raw held (`scan`), what decoded (`classes`, one per image decoded) and what was skipped
    (`failed`: scan index → why), and the split `table` made of it."""
    images = len(classes)
    return {
        "source": data.source,
        "task": task,
        "classes": sorted(set(classes)),
        "positive_class": data.positive_class if task == "binary" else None,
        "image_size": data.image_size,
        "files_found": len(scan.images) + len(scan.stray_files),
        "images_decoded": images,
        "skipped_unreadable": len(failed),
        "skipped_not_images": len(scan.stray_files),
        "unreadable": {scan.images[i][0]: message for i, message in failed.items()},
        "not_images": list(scan.stray_files),
        "usable_per_class": dict(sorted(Counter(classes).items())),
        "split": {
            name: {
                "images": int((table["split"] == name).sum()),
                "per_class": dict(sorted(Counter(table.loc[table["split"] == name, "class"]).items())),
                "positives": int(table.loc[table["split"] == name, "label"].sum()) if task == "binary" else None,
            }
            for name in SPLITS
        },
    }
