"""Unit tests for stages.lib.core.variants: variant names, targets, and the label tables every trainer learns from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import UserError
from stages.lib.core.params import LABEL_SETS
from stages.lib.core.variants import labels_for_seed, num_outputs, parse_variant, targets, variant_name


def test_variant_name() -> None:
    assert variant_name("gce", "noisy") == "gce-noisy"


@pytest.mark.parametrize("loss", ["bce", "l1", "gce", "sce", "bootstrap", "ls", "a-loss-with-dashes"])
@pytest.mark.parametrize("labels", LABEL_SETS)
def test_parse_variant_inverts_variant_name(loss: str, labels: str) -> None:
    assert parse_variant(variant_name(loss, labels)) == (loss, labels)


def test_num_outputs() -> None:
    assert num_outputs("binary", 2) == 1
    assert num_outputs("multiclass", 5) == 5


def test_targets_binary_is_a_float_column() -> None:
    y = targets(np.array([0, 1, 1, 0]), "binary", 2)
    assert y.shape == (4, 1)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], [0, 1, 1, 0])


def test_targets_multiclass_is_one_hot() -> None:
    y = targets(np.array([2, 0, 4]), "multiclass", 5)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0, 0, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 1]])


NOISY = pd.DataFrame(
    {
        "seed": [0, 0, 0, 1, 1, 1],
        "id": [5, 8, 11, 5, 8, 11],
        "clean_label": [1, 0, 0, 1, 0, 0],
        "label": [0, 0, 0, 1, 1, 0],
        "flipped": [True, False, False, False, True, False],
    }
)
CLEAN = pd.DataFrame({"id": [5, 8, 11], "clean_label": [1, 0, 0], "label": [1, 0, 0], "flipped": [False] * 3})


def test_labels_for_seed_takes_that_seeds_rows_in_feature_order() -> None:
    ids = np.array([11, 5, 8])  # the order of the feature rows, not of the file
    np.testing.assert_array_equal(labels_for_seed(NOISY, 0, ids, "noisy.csv"), [0, 0, 0])
    np.testing.assert_array_equal(labels_for_seed(NOISY, 1, ids, "noisy.csv"), [0, 1, 1])
    assert labels_for_seed(NOISY, 1, ids, "noisy.csv").dtype == np.int64


def test_labels_for_seed_clean_file_holds_for_every_seed() -> None:
    ids = np.array([5, 8, 11])
    for seed in (0, 1, 42):
        np.testing.assert_array_equal(labels_for_seed(CLEAN, seed, ids, "clean.csv"), [1, 0, 0])


def test_labels_for_seed_unknown_seed_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"data/labels/noisy\.csv has no labels for seed 2: rerun the corrupt stage"):
        labels_for_seed(NOISY, 2, np.array([5]), Path("data/labels/noisy.csv"))


def test_labels_for_seed_missing_ids_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"clean\.csv lacks labels for 2 training images: rerun `dvc repro`"):
        labels_for_seed(CLEAN, 0, np.array([5, 6, 7]), "clean.csv")


def test_rows_for_seed_are_the_positions_a_pruned_seed_keeps() -> None:
    from stages.lib.core.variants import rows_for_seed

    pruned = pd.DataFrame({"seed": [0, 0, 1], "id": [9, 4, 7], "label": [1, 0, 1]})
    ids = np.array([4, 7, 9, 12])
    np.testing.assert_array_equal(rows_for_seed(pruned, 0, ids), [0, 2])
    np.testing.assert_array_equal(rows_for_seed(pruned, 1, ids), [1])
    np.testing.assert_array_equal(labels_for_seed(pruned, 0, ids[rows_for_seed(pruned, 0, ids)], "pruned.csv"), [0, 1])


def test_estimated_transitions_read_detects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from stages.lib.noise.transition import estimated_transitions

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data/detect/transitions"
    folder.mkdir(parents=True)
    matrix = [[0.8, 0.2], [0.1, 0.9]]
    (folder / "forward-noisy.json").write_text(json.dumps({"T": "estimated", "seeds": {"0": matrix}}))
    np.testing.assert_array_equal(estimated_transitions("forward-noisy", (0,), 2)[0], matrix)
    with pytest.raises(UserError, match=r"forward-noisy\.json lacks an estimated 2x2 matrix"):
        estimated_transitions("forward-noisy", (0, 1), 2)
    (folder / "forward-clean.json").write_text("null\n")
    with pytest.raises(UserError, match=r"forward-clean\.json lacks"):
        estimated_transitions("forward-clean", (0,), 2)


def test_the_validation_transition_that_corrects_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.select_score: corrected_estimated reads detect's `validation` matrix for a noisy variant;
    corrected_true computes the realised one of the seed's validation labels; a clean variant gets none."""
    import json

    import pandas as pd

    from stages.lib.train.seed_labels import seed_labels

    monkeypatch.chdir(tmp_path)
    table = pd.DataFrame({"id": [0, 1, 2, 3, 4, 5], "label": [0, 1, 0, 1, 0, 1], "split": ["train"] * 2 + ["val"] * 4})
    (tmp_path / "data/labels").mkdir(parents=True)
    noisy = pd.DataFrame({"seed": 0, "id": [0, 1, 2, 3, 4, 5], "label": [0, 1, 1, 1, 0, 0]})
    noisy.to_csv(tmp_path / "data/labels/noisy.csv", index=False)
    table[["id", "label"]].to_csv(tmp_path / "data/labels/clean.csv", index=False)
    folder = tmp_path / "data/detect/transitions"
    folder.mkdir(parents=True)
    matrix = [[0.7, 0.3], [0.2, 0.8]]
    (folder / "bce-noisy.json").write_text(json.dumps({"validation": {"0": matrix}}))
    (folder / "bce-clean.json").write_text("null\n")
    estimated = seed_labels(table, "noisy", "bce-noisy", None, (0,), 2, "estimated")[0]
    np.testing.assert_array_equal(estimated.val_transition, matrix)
    assert estimated.transition is None
    realised = seed_labels(table, "noisy", "bce-noisy", None, (0,), 2, "true")[0]
    # Validation ids 2-5: true 0, 1, 0, 1; given 1, 1, 0, 0: half of each class flipped.
    np.testing.assert_array_equal(realised.val_transition, [[0.5, 0.5], [0.5, 0.5]])
    assert seed_labels(table, "clean", "bce-clean", None, (0,), 2, "estimated")[0].val_transition is None
    assert seed_labels(table, "noisy", "bce-noisy", None, (0,), 2, None)[0].val_transition is None
