"""End to end: the real `dvc repro`, `dvc exp run -S noise=...` and `dvc metrics diff` on a copy of the project.

The reproduced project is built once per run (tests/e2e/conftest.py: `reproduced_project`, read-only); a test
that runs `dvc` works in its own copy (`baseline_copy`), so the tests hold in any order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from toolkit.project import (
    ALL_STAGES,
    PER_LEVEL_STAGES,
    VARIANTS,
    Reproduced,
    default_params,
    dvc,
    ran_stages,
    run,
    status_is_clean,
)

TUNED_L2 = {loss: entry["l2"] for loss, entry in default_params()["train"]["tune"].items()}
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


def read(repo: Path, path: str) -> dict:
    return json.loads((repo / path).read_text())


def test_repro_runs_every_stage_and_writes_metrics(reproduced_project: Reproduced, baseline_copy: Path) -> None:
    repo = reproduced_project.repo
    assert ran_stages(reproduced_project.output) == ALL_STAGES
    # The headline: per variant four means (the baseline two), picked from the detail file's numbers.
    headline = read(repo, "metrics/metrics.json")
    metrics = read(repo, "metrics/details/metrics.json")
    # Each noisy variant's oracle twin (the same heads chosen with the true labels) is scored too.
    twins = {f"{variant}:oracle" for variant in VARIANTS if variant.endswith("-noisy")}
    assert set(headline) == set(metrics) == {*VARIANTS, *twins, "baseline"}
    for variant in VARIANTS:
        assert headline[variant] == {
            key: metrics[variant][key] for key in ("balanced_accuracy", "auc", "accuracy", "ece")
        }
    for variant in VARIANTS:
        for key in METRIC_KEYS:
            assert key in metrics[variant], (variant, key)
        low, high = metrics[variant]["accuracy_ci95"]
        assert low <= metrics[variant]["accuracy"] <= high
        assert metrics[variant]["seeds"] == 2
        # Heads fit to their optimum (no epoch) and their accuracy on the validation labels, means over seeds.
        assert "epoch" not in metrics[variant] and 0 <= metrics[variant]["val_accuracy"] <= 1
    per_seed = read(repo, "metrics/details/per_seed.json")
    for variant in VARIANTS:
        loss = variant.split("-")[0]
        for repeat in ("0", "1"):
            selected = json.loads((repo / f"models/{variant}/selection_seed_{repeat}.json").read_text())
            assert selected["epoch"] is None and per_seed[variant][repeat]["converged"] is True
            assert per_seed[variant][repeat]["val_accuracy"] == selected["val_accuracy"]
            assert selected["val_accuracy"] * 20 == pytest.approx(round(selected["val_accuracy"] * 20))  # of 20
            # Chosen per seed from the loss's grid (train.tune, 10 points each) by log-loss on the validation
            # labels; the binary threshold on them with the training pool's out-of-fold logits.
            assert selected["grid_size"] == 10 and selected["select_by"] == "log_loss"
            assert selected["metric"] == "balanced_accuracy" and selected["threshold_rule"] == "smoothed"
            assert selected["select_score"] == "noisy" and selected["corrected"] is False
            assert selected["hyper_parameters"]["l2"] in TUNED_L2[loss] and 0 < selected["threshold"] < 1
            assert selected["gradient_norm"] < 1e-4 and selected["iterations"] >= 1
            # The training curves: one step per iterate of the chosen head's optimiser, its start first.
            logs = repo / f"metrics/train/{variant}/seed_{repeat}/plots/metrics"
            steps = (logs / "train/loss.tsv").read_text().count("\n") - 1
            assert steps == selected["iterations"] + 1 and (logs / "test/accuracy.tsv").exists()
    # 24 images per class, 60 in training: the baseline always says "not sunflowers".
    assert metrics["baseline"]["predicts"] == "not_sunflowers"
    assert metrics["baseline"]["accuracy"] == pytest.approx(0.8, abs=0.02)
    # The synthetic sunflowers are learnable: clean BCE beats chance on balanced accuracy.
    # The synthetic sunflowers are learnable: clean BCE ranks above chance. (AUC: each head's threshold is
    # chosen on its validation labels, selection_seed_<s>.json; and with 20 validation images, 4 of them
    # positive, the choice is mostly noise here.)
    print({v: {k: metrics[v][k] for k in ("accuracy", "balanced_accuracy", "auc")} for v in VARIANTS})
    assert metrics["bce-clean"]["auc"] > 0.5

    noise = read(repo, "metrics/details/noise.json")
    assert read(repo, "metrics/noise.json") == {
        "flip_rate": noise["flip_rate"],
        "val_flip_rate": noise["val_flip_rate"],
    }
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

    comparisons = read(repo, "metrics/details/comparisons.json")
    study = {"l1-noisy vs bce-noisy", "bce-noisy vs bce-clean", "l1-noisy vs l1-clean"}
    protocol = {f"{loss}-noisy:oracle vs {loss}-{labels}" for loss in ("bce", "l1") for labels in ("noisy", "clean")}
    assert set(comparisons) == study | protocol
    assert {name for name, entry in comparisons.items() if entry["family"] == "protocol"} == protocol
    # The headline: the verdict metric's Δ, interval and Holm p of each of the study's comparisons (Holm over
    # those three; the protocol's four are their own family).
    verdicts = read(repo, "metrics/comparisons.json")
    assert set(verdicts) == study
    for name, verdict in verdicts.items():
        test = comparisons[name]["balanced_accuracy"]
        assert verdict == {
            "delta_balanced_accuracy": test["difference"],
            "ci95_low": test["ci95_low"],
            "ci95_high": test["ci95_high"],
            "p_holm": comparisons[name]["p_holm"],
        }
    detection = read(repo, "metrics/detection.json")
    assert set(detection) == {"precision", "recall", "estimated_noise_rate", "realised_noise_rate"}
    assert detection["realised_noise_rate"] == pytest.approx(0.3)
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
    """Each train stage's stderr has one summary line per seed (the grid point, how its optimiser ended, what
    chose it on which labels, the threshold), no line per step (those numbers are in DVCLive's files), and no
    progress bar: stderr is not a terminal here, and tqdm would write every redraw into a log."""
    repo, output, stderr = reproduced_project.repo, reproduced_project.output, reproduced_project.stderr
    assert not re.search(r"^epoch \d+/\d+", output, re.M)
    assert not re.search(r"train \S+: +\d+%\|", output)
    for variant in VARIANTS:
        summaries = re.findall(rf"^train {variant}: seed (\d+): (.*)$", stderr, re.M)
        assert [repeat for repeat, _ in summaries] == ["0", "1"], summaries
        for repeat, line in summaries:
            selected = json.loads((repo / f"models/{variant}/selection_seed_{repeat}.json").read_text())
            labels = variant.split("-")[1]  # a clean control validates on clean labels
            assert line == (
                f"l2 {selected['hyper_parameters']['l2']:g} (best of 10 grid points); converged in "
                f"{selected['iterations']} iterations (|gradient| {selected['gradient_norm']:.1e}); by val log_loss "
                f"on {labels} labels; val balanced_accuracy {selected['val_metric']:.4f}; "
                f"threshold {selected['threshold']:.3f}"
            ), line


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
    # Only the headline files of metrics/ are in git; the detail files, logs and plot data are DVC's.
    assert sorted(path for path in tracked if path.startswith("metrics/")) == [
        "metrics/comparisons.json",
        "metrics/detection.json",
        "metrics/metrics.json",
        "metrics/noise.json",
    ]


def test_exp_run_noise_reruns_only_the_noisy_side(baseline_copy: Path) -> None:
    repo = baseline_copy  # committed: `dvc metrics diff` compares with the baseline's commit
    result = dvc(repo, "exp", "run", "-S", "noise=0.5")
    assert ran_stages(result.stdout + result.stderr) == PER_LEVEL_STAGES

    diff = json.loads(dvc(repo, "metrics", "diff", "--json").stdout)
    changed = {key.split(".")[0] for key, change in diff["metrics/metrics.json"].items() if change.get("diff")}
    assert changed == {"bce-noisy", "l1-noisy", "bce-noisy:oracle", "l1-noisy:oracle"}
    # A row per number that changed, each one a researcher reads: well under a screen.
    rows = sum(len(changes) for changes in diff.values())
    assert rows <= 40, rows
    shown = dvc(repo, "metrics", "diff")
    assert "failed to load" not in shown.stdout + shown.stderr
    noise = read(repo, "metrics/details/noise.json")
    assert all(s["flipped"] == 30 for s in noise["seeds"].values())


def test_adding_a_loss_trains_only_its_variants(baseline_copy: Path) -> None:
    repo = baseline_copy
    result = dvc(repo, "exp", "run", "-S", "train.losses=[bce,l1,gce]")
    assert ran_stages(result.stdout + result.stderr) == {"train@gce-clean", "train@gce-noisy", "evaluate"}
    metrics = json.loads((repo / "metrics/metrics.json").read_text())
    assert {"gce-clean", "gce-noisy"} <= set(metrics)
