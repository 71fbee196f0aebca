"""Exact duplicates among the decoded images: one picture stored under several file names.

Two files are duplicates when their decoded pixels are identical (stages.lib.data.images: after EXIF orientation
and conversion to 8-bit RGB, at full size), not only their bytes: a copy whose metadata was stripped or edited,
or one saved losslessly in another format, is the same picture to the model. Visually similar images
(resized, re-compressed, cropped) are not exact duplicates and are not looked for.

Within one class a duplicate adds nothing but weight (and, split apart, a test image seen in training): its
first file (by path) is used, the other copies are not. A picture in several classes has no single true
label: `data.duplicates` says what happens to it (docs/params.md).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from stages.lib.core.errors import UserError


@dataclass(frozen=True)
class Duplicates:
    """Which decoded images the split may use, and the duplicate groups found (files sorted by path)."""

    used: list[int]  # positions in the decoded list, in order
    within_class: list[list[str]]  # groups of copies in one class: the first file is used
    across_classes: list[list[str]]  # groups of copies in two or more classes
    not_used: list[str]  # files left out because of duplicates

    def report(self, rule: str, table_split: dict[str, str] | None = None) -> dict[str, Any]:
        """For data/prepared/summary.json; `table_split` (file -> split) finds groups split across sets."""
        groups = self.within_class + self.across_classes
        across_splits = []
        if table_split is not None:
            for group in groups:
                splits = {table_split[file] for file in group if file in table_split}
                if len(splits) > 1:
                    across_splits.append(group)
        return {
            "rule": rule,
            "identical": "decoded pixels",
            "within_class": self.within_class,
            "across_classes": self.across_classes,
            "not_used": self.not_used,
            "across_splits": across_splits,
        }

    def line(self, rule: str) -> str | None:
        """One line for the stage's output, or None without duplicates."""
        if not self.within_class and not self.across_classes:
            return None
        parts = []
        if self.within_class:
            copies = sum(len(group) - 1 for group in self.within_class)
            parts.append(f"{len(self.within_class)} within a class ({copies} extra copies not used)")
        if self.across_classes:
            handled = "not used" if rule == "drop" else "one copy per class used"
            example = " = ".join(self.across_classes[0])
            parts.append(f"{len(self.across_classes)} across classes ({handled}: data.duplicates = {rule}; {example})")
        return f"duplicates (identical pixels): {'; '.join(parts)}; listed in data/prepared/summary.json"


def find_duplicates(files: list[str], classes: list[str], digests: list[str], rule: str) -> Duplicates:
    """Group identical pictures (same digest) and apply `rule` (drop | keep | error) to those in several classes.

    `files`, `classes`, `digests`: one entry per decoded image, files sorted by path.
    """
    by_digest: dict[str, list[int]] = defaultdict(list)
    for position, digest in enumerate(digests):
        by_digest[digest].append(position)
    unused: set[int] = set()
    within_class: list[list[str]] = []
    across_classes: list[list[str]] = []
    for positions in by_digest.values():
        if len(positions) < 2:
            continue
        first_of_class: dict[str, int] = {}
        for position in positions:
            if classes[position] in first_of_class:
                unused.add(position)  # a second copy in the same class
            else:
                first_of_class[classes[position]] = position
        group = sorted(files[position] for position in positions)
        if len(first_of_class) == 1:
            within_class.append(group)
            continue
        across_classes.append(group)
        if rule == "drop":
            unused.update(first_of_class.values())
    within_class.sort()
    across_classes.sort()
    if across_classes and rule == "error":
        raise UserError(
            f"data.duplicates = error: {len(across_classes)} pictures are in more than one class "
            f"(identical pixels), e.g. {' = '.join(across_classes[0])}; remove the wrong copies from data.source, "
            "or set data.duplicates: drop (leave them out) or keep (one copy per class)"
        )
    return Duplicates(
        used=[position for position in range(len(files)) if position not in unused],
        within_class=within_class,
        across_classes=across_classes,
        not_used=sorted(files[position] for position in unused),
    )
