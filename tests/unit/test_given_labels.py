"""noise_type given (stages.lib.noise.given_labels and the corrupt stage's use of it): a round trip through a CSV
and each of its one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import UserError
from stages.lib.core.params import NoiseParams
from stages.lib.noise.corruption import corrupt_pool
from stages.lib.noise.given_labels import read_given_labels

CLASSES = ["daisy", "roses", "sunflowers"]
TRAIN = pd.DataFrame(
    {
        "id": [0, 2, 3, 5],
        "file": ["daisy/a.jpg", "roses/b.jpg", "sunflowers/c.jpg", "daisy/d.jpg"],
        "label": [0, 1, 2, 0],
    }
)
MULTICLASS = {"task": "multiclass", "classes": CLASSES, "positive_class": "sunflowers"}
BINARY = {**MULTICLASS, "task": "binary"}


def write(tmp_path: Path, rows: list[tuple[str, str]], header: str = "file,label") -> Path:
    path = tmp_path / "given.csv"
    path.write_text("\n".join([header, *(f"{file},{label}" for file, label in rows)]) + "\n")
    return path


# A second annotator: b.jpg (roses) called daisy, d.jpg (daisy) called sunflowers; a test image and ./ prefix.
ROWS = [
    ("./daisy/a.jpg", "daisy"),
    ("roses/b.jpg", "daisy"),
    ("sunflowers/c.jpg", "sunflowers"),
    ("daisy/d.jpg", "sunflowers"),
    ("tulips/test.jpg", "roses"),
]


def test_round_trip_multiclass_and_binary(tmp_path: Path) -> None:
    path = write(tmp_path, ROWS)
    np.testing.assert_array_equal(read_given_labels(path, TRAIN, MULTICLASS), [0, 0, 2, 2])
    np.testing.assert_array_equal(read_given_labels(path, TRAIN, BINARY), [0, 0, 1, 1])


def test_corrupt_pool_uses_the_given_labels_for_every_seed_and_reports_the_realised_noise(tmp_path: Path) -> None:
    given = read_given_labels(write(tmp_path, ROWS), TRAIN, MULTICLASS)
    noise = NoiseParams(rate=0.0, kind="given", class_rates=None, labels_file=str(tmp_path / "given.csv"))
    no_val = np.empty(0, dtype=np.int64)  # no validation set here
    noisy, summary = corrupt_pool(TRAIN[["id", "label"]], noise, CLASSES, seed=0, repeats=(0, 1), given=(given, no_val))
    for seed in (0, 1):
        block = noisy[noisy["seed"] == seed]
        np.testing.assert_array_equal(block["label"], [0, 0, 2, 2])
        np.testing.assert_array_equal(block["flipped"], [False, True, False, True])
    assert summary["flip_rate"] == pytest.approx(0.5)
    assert summary["seeds"]["0"]["transition_matrix"] == [[0.5, 0.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([*ROWS[:2], ("sunflowers/c.jpg", "sunflower"), *ROWS[3:]], "file,label", r"line 4: unknown class 'sunflower'"),
        (ROWS[:3], "file,label", r"no line for the training image daisy/d\.jpg"),
        (
            [*ROWS, ("roses/b.jpg", "roses")],
            "file,label",
            r"line 7: roses/b\.jpg is labelled again \(first on line 3\)",
        ),
        (ROWS, "path,label", r"lacks the column\(s\) file"),
        ([*ROWS[:1], ("", "daisy"), *ROWS[2:]], "file,label", r"line 3: empty file name"),
    ],
)
def test_each_error_is_one_line_naming_the_csv_and_row(
    tmp_path: Path, rows: list[tuple[str, str]], header: str, message: str
) -> None:
    path = write(tmp_path, rows, header)
    with pytest.raises(UserError, match=message) as error:
        read_given_labels(path, TRAIN, MULTICLASS)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"noise_labels = .*nowhere\.csv: file not found"):
        read_given_labels(tmp_path / "nowhere.csv", TRAIN, MULTICLASS)
