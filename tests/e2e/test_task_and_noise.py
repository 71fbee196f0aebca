"""End to end: the five-class task with robust losses, and each noise model through the real corrupt stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.project import dvc, make_project, ran_stages, write_params


def test_multiclass_pipeline_with_robust_losses(tmp_path: Path, flower_folder: Path) -> None:
    repo = make_project(
        tmp_path / "project",
        flower_folder,
        {"task": "multiclass", "train": {"losses": ["bce", "gce", "sce"], "seeds": [0], "epochs": 2}},
    )
    dvc(repo, "repro")
    metrics = json.loads((repo / "metrics/details/metrics.json").read_text())
    classes = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    variants = {f"{loss}-{labels}" for loss in ("bce", "gce", "sce") for labels in ("clean", "noisy")}
    twins = {f"{loss}-noisy:oracle" for loss in ("bce", "gce", "sce")}
    assert set(metrics) == variants | twins | {"baseline"}
    for variant in ("bce-clean", "gce-noisy", "sce-noisy"):
        assert set(metrics[variant]["per_class_recall"]) == set(classes)
        assert 0 <= metrics[variant]["macro_f1"] <= 1
    # Five balanced classes: chance and the majority baseline sit at 20 %.
    assert metrics["baseline"]["accuracy"] == pytest.approx(0.2, abs=0.02)
    assert metrics["bce-clean"]["accuracy"] > 0.3

    noise = json.loads((repo / "metrics/details/noise.json").read_text())
    matrix = np.array(noise["seeds"]["0"]["transition_matrix"])
    assert matrix.shape == (5, 5)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)  # entries rounded to 6 decimals
    # Exact per class: 12 of each class in the pool, round(0.3 * 12) = 4 flips in each (20, not round(0.3 * 60)).
    for split, size in (("train", 12), ("val", 4)):
        cells = noise["seeds"]["0"]["per_class_flips"][split]
        expected = 4 if split == "train" else 1  # 3.6 -> 4, 1.2 -> 1
        assert cells == {name: {"n": size, "flipped": expected, "expected": expected} for name in classes}
    assert noise["seeds"]["0"]["flipped"] == 20 and noise["per_class_exact"] is True

    confusion = pd.read_csv(repo / "metrics/plots/confusion/bce-clean.csv")
    assert set(confusion["actual"]) == set(classes)
    assert not (repo / "metrics/plots/roc").exists()  # ROC curves are drawn for the binary task only


@pytest.mark.parametrize(
    ("noise_params", "check"),
    [
        # The original notebook's rule: each label replaced by a random one with probability noise.
        ({"noise": 0.6, "noise_type": "notebook"}, lambda t: 0 < t.flipped.sum() < 36),
        # Class-conditional: only sunflowers flip, exactly round(0.5 * 12) of the 12 in the pool.
        (
            {"noise": 0.0, "noise_type": "asymmetric", "noise_class_rates": {"sunflowers": 0.5}},
            lambda t: t.flipped.sum() == 6 and (t.loc[t.flipped, "clean_label"] == 1).all(),
        ),
    ],
    ids=["notebook-rule", "asymmetric"],
)
def test_noise_models_through_the_corrupt_stage(prepared_copy: Path, noise_params, check) -> None:
    repo = prepared_copy  # the data prepared: corrupt alone runs again, with these params
    write_params(repo, {**noise_params, "train": {"seeds": [3]}})
    result = dvc(repo, "repro", "corrupt")
    assert ran_stages(result.stdout + result.stderr) == {"corrupt"}
    labels = pd.read_csv(repo / "data/labels/noisy.csv")
    assert (labels["seed"] == 3).all() and list(labels["split"]) == ["train"] * 60 + ["val"] * 20
    table = labels[labels["split"] == "train"]
    assert check(table)
    noise = json.loads((repo / "metrics/details/noise.json").read_text())
    assert noise["noise_type"] == noise_params["noise_type"]
    assert noise["seeds"]["3"]["flipped"] == int(table["flipped"].sum())
    # The validation labels get the same noise model: 4 sunflowers among 20, round(0.5 * 4) of them flipped.
    val = labels[labels["split"] == "val"]
    assert noise["seeds"]["3"]["val_flipped"] == int(val["flipped"].sum())
    if noise_params["noise_type"] == "asymmetric":
        assert val["flipped"].sum() == 2 and (val.loc[val.flipped, "clean_label"] == 1).all()
