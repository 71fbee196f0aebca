"""What the subsample stage makes of data/raw: its checks on the classes found, the labels table of the
split (one row per image used) and the data summary (what was found, used and skipped, and why)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from stages.lib.core.errors import UserError
from stages.lib.core.io import SPLITS
from stages.lib.core.params import DataParams
from stages.lib.data.duplicates import Duplicates
from stages.lib.data.images import DecodedFolder, FolderScan


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
    data: DataParams,
    task: str,
    scan: FolderScan,
    decoded: DecodedFolder,
    classes: list[str],
    table: pd.DataFrame,
    duplicates: Duplicates,
) -> dict[str, Any]:
    """What data/raw held (`scan`), what decoded and how (`decoded`), what the split used (`classes`, one per
    image after duplicates) and the split `table` made of it."""
    file_of = [relative for relative, _ in scan.images]  # a scan index's file
    return {
        "source": data.source,
        "task": task,
        "classes": sorted(set(classes)),
        "positive_class": data.positive_class if task == "binary" else None,
        "image_size": data.image_size,
        "files_found": len(scan.images) + len(scan.stray_files),
        "images_decoded": len(decoded.good),
        "skipped_unreadable": len(decoded.failed),
        "skipped_not_images": len(scan.stray_files),
        "unreadable": {file_of[i]: message for i, message in decoded.failed.items()},
        "not_images": list(scan.stray_files),
        # How decoding changed images to show them as a viewer does (stages.lib.data.images.CONVERSIONS).
        "converted": {kind: len(indices) for kind, indices in decoded.conversions.items()},
        "converted_files": {kind: [file_of[i] for i in indices] for kind, indices in decoded.conversions.items()},
        # Above Pillow's decompression-bomb warning limit (Image.MAX_IMAGE_PIXELS), decoded anyway.
        "oversized": {file_of[i]: f"{width}x{height}" for i, (width, height) in decoded.oversized.items()},
        # What Pillow warned while decoding an image it could decode (a damaged EXIF block: its orientation
        # may then be lost).
        "decoder_warnings": {file_of[i]: message for i, message in decoded.warnings.items()},
        "duplicates": duplicates.report(data.duplicates, dict(zip(table["file"], table["split"], strict=True))),
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


_CONVERSION_WORDS = {
    "exif_orientation": "turned upright by their EXIF orientation",
    "16_bit": "16-bit scaled to 8",
    "grayscale": "grayscale",
    "palette": "palette",
    "cmyk": "CMYK",
    "transparency": "with transparency put on white",
    "other_mode": "in another Pillow mode",
}


def conversions_line(converted: dict[str, int]) -> str | None:
    """One line of what decoding changed (the summary's `converted`), or None when nothing was."""
    parts = [f"{count} {_CONVERSION_WORDS[kind]}" for kind, count in converted.items() if count]
    return f"converted to 8-bit RGB as a viewer shows them: {', '.join(parts)}" if parts else None


def _first_named(notes: dict[str, str], most: int = 3) -> str:
    """`file (note), …` for the first `most` files, and how many more."""
    named = ", ".join(f"{file} ({note})" for file, note in list(notes.items())[:most])
    return named + (f" and {len(notes) - most} more" if len(notes) > most else "")


def oversized_line(summary: dict[str, Any]) -> str | None:
    """One line naming the images above Pillow's decompression-bomb limit (the summary's `oversized`)."""
    oversized = summary["oversized"]
    if not oversized:
        return None
    limit = Image.MAX_IMAGE_PIXELS or 0
    return (
        f"{len(oversized)} images above Pillow's decompression-bomb limit of {limit / 1e6:.0f} Mpx decoded anyway "
        f"(each takes width x height x 3 bytes of memory while decoding): {_first_named(oversized)}"
    )


def decoder_warnings_line(summary: dict[str, Any]) -> str | None:
    """One line naming the images Pillow warned about (the summary's `decoder_warnings`)."""
    warned = summary["decoder_warnings"]
    if not warned:
        return None
    return (
        f"{len(warned)} images decoded despite Pillow's warnings (damaged metadata: an EXIF orientation may be "
        f"lost): {_first_named(warned)}; listed in data/prepared/summary.json"
    )
