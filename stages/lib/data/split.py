"""The subsample stage's rules: the labels of the task, and one fixed, seeded, stratified train/val/test split."""

from __future__ import annotations

from collections import Counter

import numpy as np

from stages.lib.core.errors import UserError

# scikit-learn is imported inside the functions that split: the corrupt stage imports this module for the
# label rule only, and the import would cost it about 1 s (benchmarks/README.md).


def check_sizes(train_size: int, test_size: int | None, available: int, what: str, val_size: int = 0) -> None:
    """The training pool, the validation set and the test set (at least one image) must fit in `available`."""
    if train_size + val_size + (test_size or 1) > available:
        sizes = f"data.train_size = {train_size}" + (f" + data.val_size = {val_size}" if val_size else "")
        sizes += f" + data.test_size = {test_size}" if test_size else ""
        raise UserError(f"{sizes} is more than the {available} {what} (the test set needs at least one)")


def binary_or_class_labels(classes: list[str], class_names: tuple[str, ...], task: str, positive: str) -> np.ndarray:
    """Integer labels: 1 for the positive class and 0 otherwise (binary), or the class index."""
    if task == "binary":
        if positive not in class_names:
            raise UserError(
                f"data.positive_class = {positive!r}: no readable image of that class; "
                f"classes: {', '.join(class_names)}"
            )
        return np.array([int(name == positive) for name in classes], dtype=np.int64)
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index[name] for name in classes], dtype=np.int64)


def _sample(pool: np.ndarray, size: int, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`size` of the `pool` indices and the rest; stratified by class where sklearn can (every class at least
    twice, each side at least as large as the number of classes), else a plain seeded sample."""
    from sklearn.model_selection import train_test_split

    if size == len(pool):
        return pool, pool[:0]
    counts = Counter(labels[pool])
    stratifiable = min(counts.values()) >= 2 and min(size, len(pool) - size) >= len(counts)
    stratify = labels[pool] if stratifiable else None
    chosen, rest = train_test_split(pool, train_size=size, stratify=stratify, random_state=seed)
    return chosen, rest


def stratified_split(
    classes: list[str], train_size: int, test_size: int | None, seed: int, val_size: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the training pool, the validation set and the test set, each stratified by flower class.

    The training pool is drawn first (the same pool whatever val_size is), the validation set from the
    images outside it, then the test set from the rest: every remaining image when test_size is None, else
    a stratified sample of them. The three are disjoint and returned sorted, so the files written do not
    depend on the sampler's order. val_size 0 gives an empty validation set.
    """
    n = len(classes)
    counts = Counter(classes)
    check_sizes(train_size, test_size, n, "usable images", val_size)
    if train_size < len(counts):
        raise UserError(f"data.train_size = {train_size}: must be at least the number of classes ({len(counts)})")
    if n - train_size < len(counts):
        # sklearn's stratified split needs at least one image per class on each side.
        raise UserError(
            f"data.train_size = {train_size} leaves {n - train_size} of the {n} usable images for testing, "
            f"fewer than the {len(counts)} classes: lower data.train_size"
        )
    rare = [name for name, count in counts.items() if count < 2]
    if rare:
        raise UserError(f"classes {', '.join(rare)} have fewer than 2 usable images: cannot stratify the split")
    from sklearn.model_selection import train_test_split

    indices = np.arange(n)
    labels = np.array(classes)
    train, rest = train_test_split(indices, train_size=train_size, stratify=labels, random_state=seed)
    val = rest[:0]
    if val_size:
        val, rest = _sample(rest, val_size, labels, seed)
    test = rest if test_size is None else _sample(rest, test_size, labels, seed)[0]
    return np.sort(train), np.sort(val), np.sort(test)
