"""End to end: the real `dvc repro`, `dvc exp run -S noise=...` and `dvc metrics diff` on a copy of the project.

The reproduced project is built once per run (tests/e2e/conftest.py: `reproduced_project`, read-only); a test
that runs `dvc` works in its own copy (`baseline_copy`), so the tests hold in any order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from toolkit.project import (
    ALL_STAGES,
    PER_LEVEL_STAGES,
    PROJECT_ROOT,
    VARIANTS,
    Reproduced,
    dvc,
    ran_stages,
    run,
    status_is_clean,
)

PARAMS = PROJECT_ROOT / "params.yaml"
TUNED_L2 = {loss: entry["l2"] for loss, entry in yaml.safe_load(PARAMS.read_text())["train"]["tune"].items()}
METRIC_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "auc",
    "precision",
    "recall",
    "f1",
    "loss",
    "accuracy_ci95",
    "ece",
    "brier",
)


def test_repro_runs_every_stage_and_writes_metrics(reproduced_project: Reproduced, baseline_copy: Path) -> None:
    repo = reproduced_project.repo
    assert ran_stages(reproduced_project.output) == ALL_STAGES
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    assert set(metrics) == {*VARIANTS, "baseline"}
    for variant in VARIANTS:
        for key in METRIC_KEYS:
            assert key in metrics[variant], (variant, key)
        low, high = metrics[variant]["accuracy_ci95"]
        assert low <= metrics[variant]["accuracy"] <= high
        assert metrics[variant]["seeds"] == 2
        # The epoch kept (select_epoch: val) and its accuracy on the validation labels, means over seeds.
        assert 1 <= metrics[variant]["epoch"] <= 3 and 0 <= metrics[variant]["val_accuracy"] <= 1
    per_seed = json.loads((repo / "metrics/per_seed.json").read_text())
    for variant in VARIANTS:
        loss = variant.split("-")[0]
        for repeat in ("0", "1"):
            selected = json.loads((repo / f"models/{variant}/selection_seed_{repeat}.json").read_text())
            assert per_seed[variant][repeat]["epoch"] == selected["epoch"] in (1, 2, 3)
            assert per_seed[variant][repeat]["val_accuracy"] == selected["val_accuracy"]
            assert selected["val_accuracy"] * 20 == pytest.approx(round(selected["val_accuracy"] * 20))  # of 20
            # Chosen per seed from the loss's grid (train.tune, 8 points each) by balanced accuracy on the
            # validation labels, with the binary threshold.
            assert selected["grid_size"] == 8 and selected["metric"] == "balanced_accuracy"
            assert selected["select_score"] == "noisy" and selected["corrected"] is False
            assert selected["hyper_parameters"]["l2"] in TUNED_L2[loss] and 0 < selected["threshold"] < 1
            logs = repo / f"metrics/train/{variant}/seed_{repeat}/plots/metrics"
            scores = [float(line.split("\t")[-1]) for line in (logs / "val/score.tsv").read_text().splitlines()[1:]]
            assert len(scores) == 3 and selected["val_score"] == pytest.approx(max(scores))
            assert selected["epoch"] == scores.index(max(scores)) + 1  # the first best epoch
            assert (logs / "val/accuracy.tsv").exists() and (logs / "train/loss.tsv").exists()
    # 24 images per class, 60 in training: the baseline always says "not sunflowers".
    assert metrics["baseline"]["predicts"] == "not_sunflowers"
    assert metrics["baseline"]["accuracy"] == pytest.approx(0.8, abs=0.02)
    # The synthetic sunflowers are learnable: clean BCE beats chance on balanced accuracy.
    # The synthetic sunflowers are learnable: clean BCE ranks above chance. (AUC: each head's threshold is
    # chosen on its validation labels, selection_seed_<s>.json; and with 20 validation images, 4 of them
    # positive, 3 epochs and an 8-point grid the choice is mostly noise here.)
    print({v: {k: metrics[v][k] for k in ("accuracy", "balanced_accuracy", "auc")} for v in VARIANTS})
    assert metrics["bce-clean"]["auc"] > 0.5

    noise = json.loads((repo / "metrics/noise.json").read_text())
    assert noise["noise"] == 0.3 and noise["train_size"] == 60 and noise["val_size"] == 20
    for seed_summary in noise["seeds"].values():
        # Exact per class: 12 sunflowers and 48 others in the pool, 4 and 16 in the validation set.
        assert seed_summary["per_class_flips"] == {
            "train": {
                "not_sunflowers": {"n": 48, "flipped": 14, "expected": 14},  # 14.4 -> 14
                "sunflowers": {"n": 12, "flipped": 4, "expected": 4},  # 3.6 -> 4
            },
            "val": {
                "not_sunflowers": {"n": 16, "flipped": 5, "expected": 5},  # 4.8 -> 5
                "sunflowers": {"n": 4, "flipped": 1, "expected": 1},  # 1.2 -> 1
            },
        }
        assert seed_summary["flipped"] == 18 and seed_summary["val_flipped"] == 6
    assert noise["per_class_exact"] is True

    comparisons = json.loads((repo / "metrics/comparisons.json").read_text())
    assert set(comparisons) == {"l1-noisy vs bce-noisy", "bce-noisy vs bce-clean", "l1-noisy vs l1-clean"}
    for entry in comparisons.values():
        for metric in ("accuracy", "balanced_accuracy", "auc"):
            assert entry[metric]["ci95_low"] <= entry[metric]["difference"] <= entry[metric]["ci95_high"]
        assert entry["metric"] == "balanced_accuracy" and entry[metric]["repeats"] == 2
        assert entry["p_value"] == entry["balanced_accuracy"]["p_value"] <= entry["p_holm"] <= 1
        assert entry["significant"] == (entry["p_holm"] <= 0.05)
        assert 0 <= entry["probability_of_improvement"] <= 1

    # Calibration: the reliability diagram's bins (first seed) hold every test image and give its ECE.
    for variant in VARIANTS:
        bins = pd.read_csv(repo / f"metrics/plots/reliability/{variant}.csv")
        assert list(bins.columns) == ["bin", "low", "high", "predicted", "observed", "count"]
        assert bins["count"].sum() == len(pd.read_csv(repo / "data/prepared/labels.csv").query("split == 'test'"))
        ece = float((bins["count"] / bins["count"].sum() * (bins["observed"] - bins["predicted"]).abs()).sum())
        assert per_seed[variant]["0"]["ece"] == pytest.approx(ece)
        assert 0 <= metrics[variant]["brier"] <= 1
    # dvc.yaml's plots: declares it, so `dvc plots show` draws it with its axes (observed against predicted).
    shown = json.loads(dvc(baseline_copy, "plots", "show", "--json").stdout)
    reliability = {key: plot for key, plot in shown["data"].items() if "/reliability/" in key}
    assert not shown.get("errors") and sorted(reliability) == [f"metrics/plots/reliability/{v}.csv" for v in VARIANTS]
    assert reliability["metrics/plots/reliability/bce-clean.csv"][0]["content"]["encoding"]["x"]["field"] == "predicted"

    for variant in VARIANTS:
        assert (repo / f"models/{variant}/seed_0.npz").exists()
        assert (repo / f"metrics/train/{variant}/seed_1/plots/metrics/test/accuracy.tsv").exists()
        assert (repo / f"metrics/plots/confusion/{variant}.csv").exists()
    assert (repo / "data/prepared/summary.json").exists()


def test_training_prints_a_line_per_seed_not_per_epoch(reproduced_project: Reproduced) -> None:
    """Each train stage's stderr has one summary line per seed (the epoch kept, its validation score, the grid
    point), no line per epoch (those numbers are in DVCLive's files), and no progress bar: stderr is not a
    terminal here, and tqdm would write every redraw into a log."""
    repo, output, stderr = reproduced_project.repo, reproduced_project.output, reproduced_project.stderr
    assert not re.search(r"^epoch \d+/\d+", output, re.M)
    assert not re.search(r"train \S+: +\d+%\|", output)
    for variant in VARIANTS:
        summaries = re.findall(rf"^train {variant}: seed (\d+): (.*)$", stderr, re.M)
        assert [repeat for repeat, _ in summaries] == ["0", "1"], summaries
        for repeat, line in summaries:
            selected = json.loads((repo / f"models/{variant}/selection_seed_{repeat}.json").read_text())
            assert line.startswith(
                f"epoch {selected['epoch']}/3; val balanced_accuracy {selected['val_score']:.4f} (noisy); "
                f"val accuracy {selected['val_accuracy']:.4f}; grid point l2 {selected['hyper_parameters']['l2']:g} "
                f"(of 8); threshold {selected['threshold']:.3f}"
            ), line
        assert (repo / f"metrics/train/{variant}/seed_1/plots/metrics/val/score.tsv").read_text().count("\n") == 4


def test_second_repro_runs_nothing(baseline_copy: Path) -> None:
    repo = baseline_copy
    result = dvc(repo, "repro")
    assert ran_stages(result.stdout + result.stderr) == set()
    assert status_is_clean(repo)


def test_data_and_models_stay_out_of_git(baseline_copy: Path) -> None:
    repo = baseline_copy  # the baseline's commit holds what `git add -A` took after `dvc repro`
    assert not run(repo, "git", "status", "--porcelain").stdout
    tracked = run(repo, "git", "ls-files").stdout.split()
    assert not [path for path in tracked if path.startswith(("data/", "models/")) and not path.endswith(".gitignore")]
    assert "metrics/metrics.json" in tracked and "dvc.lock" in tracked


def test_exp_run_noise_reruns_only_the_noisy_side(baseline_copy: Path) -> None:
    repo = baseline_copy  # committed: `dvc metrics diff` compares with the baseline's commit
    result = dvc(repo, "exp", "run", "-S", "noise=0.5")
    assert ran_stages(result.stdout + result.stderr) == PER_LEVEL_STAGES

    diff = json.loads(dvc(repo, "metrics", "diff", "--json").stdout)["metrics/metrics.json"]
    changed = {key.split(".")[0] for key, change in diff.items() if change.get("diff")}
    assert changed == {"bce-noisy", "l1-noisy"}
    noise = json.loads((repo / "metrics/noise.json").read_text())
    assert all(s["flipped"] == 30 for s in noise["seeds"].values())


def test_adding_a_loss_trains_only_its_variants(baseline_copy: Path) -> None:
    repo = baseline_copy
    result = dvc(repo, "exp", "run", "-S", "train.losses=[bce,l1,gce]")
    assert ran_stages(result.stdout + result.stderr) == {"train@gce-clean", "train@gce-noisy", "evaluate"}
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    assert {"gce-clean", "gce-noisy"} <= set(metrics)
