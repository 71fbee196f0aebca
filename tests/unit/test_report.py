"""Unit tests for the sweep report: reading `dvc exp show --json`, grouping runs into sweeps, the tables
and the figure, on hand-made records shaped like DVC's output."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import report
from report.experiments import Run, exp_show_json, flatten, parse_runs, with_details
from report.figure import noise_curve_figure
from report.sweep import curve, distinguishing_params, group_sweeps, realised_flip_rates, variants
from report.tables import (
    comparison_table,
    cost_table,
    format_cell,
    markdown_report,
    markdown_table,
    sweep_holm,
)
from stages.lib.core.errors import UserError
from stages.lib.core.headline import detection_headline, noise_headline, variant_means, verdict_comparisons
from stages.lib.evaluate.comparisons import holm
from stages.lib.train.logs import mean_curves

PARAMS = {
    "seed": 0,
    "noise": 0.3,
    "noise_type": "symmetric",
    "task": "binary",
    "data": {"train_size": 600},
    "model": {"weights": "imagenet"},
    "train": {"losses": ["bce", "l1"], "epochs": 5, "seeds": [0, 1, 2]},
}
VARIANT_DETAILS = "metrics/details/metrics.json"
COMPARISON_DETAILS = "metrics/details/comparisons.json"
DETECTION_DETAILS = "metrics/details/detection.json"
NOISE_DETAILS = "metrics/details/noise.json"


def variant_metrics(accuracy: float, std: float = 0.02, seeds: int = 3) -> dict:
    return {
        "accuracy": accuracy,
        "accuracy_std": std,
        "balanced_accuracy": accuracy - 0.1,
        "balanced_accuracy_std": std,
        "auc": accuracy + 0.05,
        "auc_std": std,
        "accuracy_ci95": [accuracy - 0.03, accuracy + 0.03],
        "seeds": seeds,
    }


def study_metrics(noise: float) -> dict:
    """Noisy variants lose accuracy with noise (L1 less than BCE); clean controls and baseline do not."""
    return {
        "bce-clean": variant_metrics(0.95),
        "bce-noisy": variant_metrics(0.95 - 0.4 * noise),
        "l1-clean": variant_metrics(0.93),
        "l1-noisy": variant_metrics(0.93 - 0.2 * noise),
        "baseline": {"accuracy": 0.81, "balanced_accuracy": 0.5, "auc": 0.5, "predicts": "not_sunflowers"},
    }


def comparison(a: str, b: str, difference: float, p_holm: float, significant: bool) -> dict:
    return {
        "a": a,
        "b": b,
        **{
            metric: {"difference": difference, "ci95_low": difference - 0.02, "ci95_high": difference + 0.02}
            for metric in ("accuracy", "balanced_accuracy", "auc")
        },
        "metric": "balanced_accuracy",
        "probability_of_improvement": 0.5 + difference,
        "p_value": p_holm / 3,
        "p_holm": p_holm,
        "significant": significant,
    }


def study_comparisons(noise: float) -> dict:
    """What metrics/details/comparisons.json holds (stages.lib.evaluate.comparisons.compare_variants), Holm applied."""
    return {
        "l1-noisy vs bce-noisy": comparison("bce-noisy", "l1-noisy", 0.2 * noise, 0.003, True),
        "bce-noisy vs bce-clean": comparison("bce-clean", "bce-noisy", -0.4 * noise, 0.2, False),
        "l1-noisy vs l1-clean": comparison("l1-clean", "l1-noisy", -0.2 * noise, 0.04, True),
    }


def study_noise(noise: float) -> dict:
    return {"noise": noise, "flip_rate": noise, "val_flip_rate": noise, "train_size": 600}


def study_details(noise: float) -> dict:
    """The detail files of a run at this noise level (what the evaluate and corrupt stages write beside the
    headline files)."""
    return {
        VARIANT_DETAILS: study_metrics(noise),
        COMPARISON_DETAILS: study_comparisons(noise),
        NOISE_DETAILS: study_noise(noise),
    }


def read_study_details(run: Run, path: str) -> dict | None:
    """with_details' reader for the records below: every run's details, as DVC would find them."""
    return study_details(run.noise).get(path)


def runs_with_details(records: list[dict]) -> list[Run]:
    runs, _ = parse_runs(records)
    return with_details(runs, read_study_details)[0]


def rev_record(rev: str, name: str | None, timestamp: str | None, noise: float, **params) -> dict:
    """One row as `dvc exp show --json` prints it (the parts the report reads)."""
    values = copy.deepcopy(PARAMS)
    values["noise"] = noise
    for dotted, value in params.items():
        *parents, last = dotted.split("__")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return {
        "rev": rev,
        "name": name,
        "data": {
            "rev": rev,
            "timestamp": timestamp,
            "params": {"params.yaml": {"data": values}},
            "metrics": {  # the headline files
                "metrics/metrics.json": {"data": variant_means(study_metrics(noise), "balanced_accuracy")},
                "metrics/noise.json": {"data": noise_headline(study_noise(noise))},
                "metrics/comparisons.json": {"data": verdict_comparisons(study_comparisons(noise), "bce")},
            },
        },
        "error": None,
        "experiments": None,
    }


def experiment(record: dict, state: str | None = "success") -> dict:
    executor = None if state is None else {"state": state, "name": "dvc-task", "local": {}}
    return {"revs": [record], "executor": executor, "name": record["name"]}


def exp_show(*experiments: dict, baseline_noise: float = 0.3, workspace: dict | None = None) -> list[dict]:
    """Workspace + HEAD commit (main) with the given experiments under it."""
    head = rev_record("a" * 40, "main", "2026-01-01T10:00:00", baseline_noise)
    head["experiments"] = list(experiments)
    ws = workspace if workspace is not None else rev_record("workspace", None, None, baseline_noise)
    return [ws, head]


def sweep_records() -> list[dict]:
    return exp_show(
        experiment(rev_record("b" * 40, "exp-0", "2026-01-01T11:00:00", 0.0)),
        experiment(rev_record("c" * 40, "exp-5", "2026-01-01T11:05:00", 0.5)),
        experiment(rev_record("d" * 40, "exp-9", "2026-01-01T11:10:00", 0.9)),
    )


def make_run(name: str, noise: float, timestamp: str | None, **params) -> Run:
    record = rev_record(name, name, timestamp, noise, **params)
    return Run(
        name,
        name,
        timestamp,
        flatten(record["data"]["params"]["params.yaml"]["data"]),
        record["data"]["metrics"]["metrics/metrics.json"]["data"],
        details=study_details(noise),
    )


# --- reading exp show ---------------------------------------------------------------------------------


def test_parse_runs_reads_baselines_and_finished_experiments() -> None:
    runs, skipped = parse_runs(sweep_records())
    assert [run.name for run in runs] == ["workspace", "main", "exp-0", "exp-5", "exp-9"]
    assert [run.noise for run in runs] == [0.3, 0.3, 0.0, 0.5, 0.9]
    assert runs[0].is_workspace and runs[0].timestamp is None
    assert runs[2].params["train.seeds"] == [0, 1, 2]  # flattened, lists kept
    assert runs[3].metrics["bce-noisy"]["accuracy"] == pytest.approx(0.75)
    assert skipped == []


@pytest.mark.parametrize("state", ["queued", "running", "failed"])
def test_parse_runs_skips_unfinished_experiments(state: str) -> None:
    # DVC lists the parent commit's metrics under a queued, running or failed experiment: not its own.
    records = exp_show(experiment(rev_record("e" * 40, "pending", None, 0.7), state=state))
    runs, skipped = parse_runs(records)
    assert "pending" not in [run.name for run in runs]
    assert [(row.name, row.reason) for row in skipped] == [("pending", state)]


def test_parse_runs_keeps_experiments_run_in_the_workspace() -> None:
    # `dvc exp run` without --queue records no executor.
    runs, _ = parse_runs(exp_show(experiment(rev_record("f" * 40, "here", "2026-01-02T00:00:00", 0.7), state=None)))
    assert "here" in [run.name for run in runs]


def test_parse_runs_skips_rows_without_metrics_and_stale_workspace() -> None:
    fresh = rev_record("workspace", None, None, 0.3)
    fresh["data"]["metrics"]["metrics/metrics.json"] = {"error": {"type": "FileNotFoundError", "msg": "missing"}}
    _, skipped = parse_runs(exp_show(workspace=fresh))
    assert [row.name for row in skipped] == ["workspace"]
    assert "not reproduced" in skipped[0].reason

    edited = rev_record("workspace", None, None, 0.3)
    edited["data"]["params"]["params.yaml"]["data"]["noise"] = 0.6  # params.yaml edited, no `dvc repro` yet
    runs, _ = parse_runs(exp_show(workspace=edited))
    # The workspace's detail file says which noise its results are for (DVC compares no commit with it).
    runs, skipped = with_details(runs, lambda run, path: study_details(0.3).get(path))
    assert "workspace" not in [run.name for run in runs]
    assert "noise=0.3" in skipped[0].reason and "0.6" in skipped[0].reason


def test_exp_show_json_outside_a_repo_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dvc exp show --json"):
        exp_show_json(tmp_path)


# --- grouping -------------------------------------------------------------------------------------------


def test_one_sweep_with_a_run_per_noise_level_and_duplicates_dropped() -> None:
    runs, _ = parse_runs(sweep_records())
    (sweep,) = group_sweeps(runs)
    assert sweep.noise_levels == [0.0, 0.3, 0.5, 0.9]
    # workspace and main hold the same results at 0.3: the commit is kept, the copy not reported.
    assert [run.name for run in sweep.runs] == ["exp-0", "main", "exp-5", "exp-9"]
    assert sweep.superseded == ()
    assert sweep.seeds == 3
    assert variants(sweep) == ["bce-noisy", "l1-noisy", "bce-clean", "l1-clean"]


def test_latest_run_wins_at_a_shared_noise_level_and_workspace_counts_oldest() -> None:
    old = make_run("old", 0.5, "2026-01-01T09:00:00")
    new = make_run("new", 0.5, "2026-01-03T09:00:00")
    new.metrics["bce-noisy"]["accuracy"] = 0.5  # a rerun that measured something else
    workspace = make_run("workspace", 0.5, None)
    workspace.metrics["bce-noisy"]["accuracy"] = 0.4
    (sweep,) = group_sweeps([old, workspace, new])
    assert [run.name for run in sweep.runs] == ["new"]
    assert {run.name for run in sweep.superseded} == {"old", "workspace"}

    (only_workspace,) = group_sweeps([workspace])
    assert [run.name for run in only_workspace.runs] == ["workspace"]


def test_runs_differing_in_other_params_form_separate_sweeps() -> None:
    runs = [
        make_run("a0", 0.0, "2026-01-01T00:00:00"),
        make_run("a5", 0.5, "2026-01-01T00:01:00"),
        make_run("b0", 0.0, "2026-01-02T00:00:00", train__epochs=20),
        make_run("b5", 0.5, "2026-01-02T00:01:00", train__epochs=20),
    ]
    sweeps = group_sweeps(runs)
    assert [[run.name for run in sweep.runs] for sweep in sweeps] == [["b0", "b5"], ["a0", "a5"]]  # newest first
    assert distinguishing_params(sweeps) == [{"train.epochs": 20}, {"train.epochs": 5}]
    text = markdown_report(sweeps)
    assert "## Sweep 1: `train.epochs=20`" in text and "## Sweep 2: `train.epochs=5`" in text


def fingerprinted(record: dict, source: str, weights: str = "w" * 32) -> dict:
    """The record with dvc.lock's hashes of the two fingerprint files among its deps, as exp show lists them."""
    record["data"]["deps"] = {
        "stages/download.py": {"hash": "0" * 32, "size": 1, "nfiles": None},
        "data/fingerprints/source.json": {"hash": source, "size": 119, "nfiles": None},
        "data/fingerprints/weights.json": {"hash": weights, "size": 28, "nfiles": None},
    }
    return record


def test_parse_runs_reads_the_fingerprints_of_the_location_params() -> None:
    records = exp_show(experiment(fingerprinted(rev_record("b" * 40, "exp-5", "2026-01-01T11:00:00", 0.5), "s" * 32)))
    runs, _ = parse_runs(records)
    assert runs[-1].fingerprints == {"data.source": "s" * 32, "model.weights": "w" * 32}
    assert runs[0].fingerprints == {}  # no deps recorded (a commit from before the fingerprint stage)


def test_same_data_at_other_paths_is_one_sweep_and_new_data_at_one_path_another() -> None:
    # Machine A and machine B read the same images from their own folders; later A's folder got new images.
    here = fingerprinted(rev_record("b" * 40, "on-a", "2026-01-01T11:00:00", 0.0, data__source="/a/photos"), "1" * 32)
    there = fingerprinted(rev_record("c" * 40, "on-b", "2026-01-01T11:05:00", 0.5, data__source="/b/photos"), "1" * 32)
    later = fingerprinted(rev_record("d" * 40, "new", "2026-01-02T09:00:00", 0.5, data__source="/a/photos"), "2" * 32)
    runs, _ = parse_runs(exp_show(*(experiment(record) for record in (here, there, later))))
    runs = [run for run in runs if run.name in {"on-a", "on-b", "new"}]
    sweeps = group_sweeps(runs)
    assert [[run.name for run in sweep.runs] for sweep in sweeps] == [["new"], ["on-a", "on-b"]]
    assert sweeps[1].config["data.source"] == ["/a/photos", "/b/photos"]
    # Both sweeps read /a/photos at some point: the fingerprint is what tells them apart in the titles.
    assert distinguishing_params(sweeps) == [
        {"data.source": "/a/photos", "data.source fingerprint": "2" * 32},
        {"data.source": ["/a/photos", "/b/photos"], "data.source fingerprint": "1" * 32},
    ]
    # Without fingerprints (runs from before the fingerprint stage) the paths are all there is to go by.
    for run in runs:
        run.fingerprints.clear()
    assert [[run.name for run in sweep.runs] for sweep in group_sweeps(runs)] == [["on-a", "new"], ["on-b"]]


# --- curves and tables ----------------------------------------------------------------------------------


def test_curve_holds_mean_and_std_per_noise_level_and_nan_where_missing() -> None:
    runs = [make_run("a", 0.0, "2026-01-01T00:00:00"), make_run("b", 0.5, "2026-01-01T00:01:00")]
    del runs[1].details[VARIANT_DETAILS]["l1-noisy"]
    (sweep,) = group_sweeps(runs)
    bce = curve(sweep, "bce-noisy", "accuracy")
    np.testing.assert_allclose(bce.noise, [0.0, 0.5])
    np.testing.assert_allclose(bce.mean, [0.95, 0.75])
    np.testing.assert_allclose(bce.std, [0.02, 0.02])
    l1 = curve(sweep, "l1-noisy", "accuracy")
    assert l1.mean[0] == pytest.approx(0.93) and math.isnan(l1.mean[1])
    baseline = curve(sweep, "baseline", "balanced_accuracy")
    np.testing.assert_allclose(baseline.mean, [0.5, 0.5])
    np.testing.assert_allclose(baseline.std, [0.0, 0.0])  # no _std key: a single number


def test_without_its_detail_files_a_run_has_its_headline_means_and_no_spread() -> None:
    (sweep,) = group_sweeps(parse_runs(sweep_records())[0])
    bce = curve(sweep, "bce-noisy", "balanced_accuracy")
    np.testing.assert_allclose(bce.mean, [0.85, 0.73, 0.65, 0.49])
    assert np.isnan(bce.std).all()
    assert sweep.seeds == 3  # train.seeds
    lines = markdown_table(sweep, "balanced_accuracy").splitlines()
    assert lines[2].split(" | ")[1] == "0.850"  # the mean alone: no std to show


def test_format_cell() -> None:
    assert format_cell(0.81234, 0.0212, 3) == "0.812 ± 0.021"
    assert format_cell(0.81234, 0.0, 1) == "0.812"
    assert format_cell(math.nan, math.nan, 3) == "–"


def test_markdown_table_has_a_row_per_noise_level_and_a_column_per_variant() -> None:
    runs = runs_with_details(sweep_records())
    (sweep,) = group_sweeps(runs)
    lines = markdown_table(sweep, "accuracy").splitlines()
    assert lines[0] == "| noise | bce-noisy | l1-noisy | bce-clean | l1-clean | baseline | experiment |"
    rows = [line.split(" | ") for line in lines[2:]]
    assert [row[0].strip("| ") for row in rows] == ["0", "0.3", "0.5", "0.9"]
    assert rows[2][1] == "0.750 ± 0.020" and rows[2][2] == "0.830 ± 0.020"  # noise 0.5: BCE 0.95-0.2, L1 0.93-0.1
    assert all(row[3] == "0.950 ± 0.020" for row in rows)  # the clean control, at every level
    assert all(row[5] == "0.810" for row in rows)  # baseline: no spread over seeds
    assert rows[0][6].strip("| ") == "`exp-0`"


def test_markdown_report_lists_metrics_and_what_was_left_out() -> None:
    records = sweep_records()
    records[1]["experiments"].append(experiment(rev_record("9" * 40, "broken", None, 0.7), state="failed"))
    runs, skipped = parse_runs(records)
    text = markdown_report(group_sweeps(runs), skipped, figure="noise_curve.png")
    assert "![accuracy against noise rate](noise_curve.png)" in text
    for title in ("### Accuracy", "### Balanced accuracy", "### AUC"):
        assert title in text
    assert "Noise levels: 0, 0.3, 0.5, 0.9." in text
    assert "`broken` (failed)" in text


def test_mean_curves_average_histories_over_seeds() -> None:
    histories = [
        {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7], "test_loss": [1.2, 0.8], "test_accuracy": [0.4, 0.6]},
        {"loss": [0.8, 0.3], "accuracy": [0.7, 0.9], "test_loss": [1.0, 0.6], "test_accuracy": [0.6, 0.8]},
    ]
    curves = mean_curves(histories)
    assert set(curves) == {"loss", "accuracy"}
    accuracy = curves["accuracy"]
    assert list(accuracy.columns) == ["step", "train", "train_std", "test", "test_std"]
    np.testing.assert_allclose(accuracy["step"], [1, 2])
    np.testing.assert_allclose(accuracy["train"], [0.6, 0.8])
    np.testing.assert_allclose(accuracy["test"], [0.5, 0.7])
    np.testing.assert_allclose(accuracy["test_std"], [np.std([0.4, 0.6], ddof=1)] * 2)
    np.testing.assert_allclose(mean_curves(histories[:1])["loss"]["train_std"], [0.0, 0.0])
    # A history that stopped sooner (a head's optimiser converged) stays at its last value.
    shorter = {key: values[:1] for key, values in histories[1].items()}
    np.testing.assert_allclose(mean_curves([histories[0], shorter])["accuracy"]["train"], [0.6, 0.7])


# --- the command ------------------------------------------------------------------------------------------


def test_report_writes_figure_and_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = sweep_records()
    records[1]["experiments"].append(
        experiment(rev_record("8" * 40, "long", "2026-01-04T00:00:00", 0.5, train__epochs=20))
    )
    monkeypatch.setattr(report, "exp_show_json", lambda *args, **kwargs: records)
    monkeypatch.setattr(report, "with_details", lambda runs: with_details(runs, read_study_details))
    report.main(["--out", str(tmp_path / "reports")])
    with Image.open(tmp_path / "reports/noise_curve.png") as image:
        width, height = image.size
    assert width > 1000 and height > 2 * 500  # two sweeps: two rows of panels
    text = (tmp_path / "reports/results.md").read_text()
    assert text.count("### Accuracy") == 2 and "`train.epochs=20`" in text


def test_report_without_runs_says_how_to_make_some(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = rev_record("workspace", None, None, 0.3)
    empty["data"]["metrics"] = {}
    head = copy.deepcopy(empty)
    head.update(rev="a" * 40, name="main")
    monkeypatch.setattr(report, "exp_show_json", lambda *args, **kwargs: [empty, head])
    with pytest.raises(UserError, match=r"no finished experiment.*dvc exp run --queue"):
        report.main(["--out", str(tmp_path / "reports")])
    assert not (tmp_path / "reports").exists()


# --- paired comparisons and the figure's x-axis ---------------------------------------------------------------


def test_comparison_table_has_a_row_per_comparison_with_intervals_and_marks_the_significant() -> None:
    runs = runs_with_details(sweep_records())
    run = next(run for run in runs if run.noise == 0.5)
    lines = comparison_table(run).splitlines()
    assert lines[0] == (
        "| comparison (B vs A) | Δ balanced accuracy [95 % CI] | Δ auc [95 % CI] | Δ accuracy [95 % CI] "
        "| P(B > A), balanced accuracy | p, balanced accuracy | Holm p |"
    )
    rows = [line.strip("| ").split(" | ") for line in lines[2:]]
    assert [row[0] for row in rows] == ["l1-noisy vs bce-noisy *", "bce-noisy vs bce-clean", "l1-noisy vs l1-clean *"]
    assert rows[0][1] == "+0.100 [+0.080, +0.120]" and rows[1][2] == "-0.200 [-0.220, -0.180]"
    assert rows[0][4] == "0.60" and rows[0][5] == "0.001"
    assert [row[6] for row in rows] == ["**0.003**", "0.200", "**0.040**"]


def test_without_the_detail_file_the_comparison_table_has_the_verdict_comparisons_only() -> None:
    runs, _ = parse_runs(sweep_records())
    run = next(run for run in runs if run.noise == 0.5)
    rows = [line.strip("| ").split(" | ") for line in comparison_table(run).splitlines()[2:]]
    assert rows[0] == ["l1-noisy vs bce-noisy *", "+0.100 [+0.080, +0.120]", "–", "–", "–", "–", "**0.003**"]
    text = markdown_report(group_sweeps(runs))
    assert "Headline numbers only for `exp-0`, `main`, `exp-5`, `exp-9`" in text
    assert "Headline numbers only" not in markdown_report(group_sweeps(runs_with_details(sweep_records())))


def test_markdown_report_has_a_comparison_table_per_noise_level() -> None:
    runs, _ = parse_runs(sweep_records())
    text = markdown_report(group_sweeps(runs))
    assert "### Paired comparisons" in text
    assert [line for line in text.splitlines() if line.startswith("#### ")] == [
        "#### noise 0 (`exp-0`)",
        "#### noise 0.3 (`main`)",
        "#### noise 0.5 (`exp-5`)",
        "#### noise 0.9 (`exp-9`)",
    ]
    without = [Run(r.name, r.rev, r.timestamp, r.params, r.metrics, r.noise_summary) for r in runs]
    assert "Paired comparisons" not in markdown_report(group_sweeps(without))


def with_flip_rate(record: dict, flip_rate: float) -> dict:
    """The record's headline noise.json with this realised flip rate."""
    record["data"]["metrics"]["metrics/noise.json"]["data"]["flip_rate"] = flip_rate
    return record


def test_x_axis_is_the_realised_flip_rate_only_where_it_differs_from_noise() -> None:
    (sweep,) = group_sweeps(parse_runs(sweep_records())[0])
    assert realised_flip_rates(sweep) is None  # symmetric: flip rate == noise
    # An exact count rounds: within half an image of `noise` (here 0.4 of one of 600) is still `noise`.
    records = exp_show(
        experiment(with_flip_rate(rev_record("b" * 40, "exp-5", "2026-01-01T11:05:00", 0.5), 0.5 + 0.4 / 600)),
        workspace=with_flip_rate(rev_record("workspace", None, None, 0.3), 0.3),
    )
    assert realised_flip_rates(group_sweeps(parse_runs(records)[0])[0]) is None
    # `seed` noise flips about half of `noise`: x becomes what was realised.
    records = exp_show(
        experiment(with_flip_rate(rev_record("b" * 40, "exp-5", "2026-01-01T11:05:00", 0.5), 0.25)),
    )
    records[1] = with_flip_rate(records[1], 0.15)  # HEAD's run at 0.3 (it supersedes the workspace's)
    (sweep,) = group_sweeps(parse_runs(records)[0])
    np.testing.assert_allclose(realised_flip_rates(sweep), [0.15, 0.25])


def test_figure_labels_its_x_axis_by_what_it_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    labels = []
    original = matplotlib.axes.Axes.set_xlabel
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_xlabel", lambda self, text, *a, **k: labels.append(text) or original(self, text)
    )
    records = exp_show(
        experiment(
            with_flip_rate(rev_record("b" * 40, "exp-5", "2026-01-01T11:05:00", 0.5, noise_type="notebook"), 0.25)
        ),
        baseline_noise=0.3,
        workspace=with_flip_rate(rev_record("workspace", None, None, 0.3, noise_type="notebook"), 0.15),
    )
    records[1] = with_flip_rate(records[1], 0.3)  # HEAD's run is of another sweep (symmetric)
    from report.figure import FLIP_LABEL, NOISE_LABEL, draw_noise_curves

    draw_noise_curves(group_sweeps(parse_runs(records)[0]), tmp_path / "figure.png")
    assert sorted(set(labels)) == sorted({FLIP_LABEL, NOISE_LABEL})


# --- confident learning in the report (issue 13) -------------------------------------------------------------


def detection_record(noise: float) -> dict:
    return {
        "noisy": {
            "precision": 0.5 + noise / 2,
            "recall": 0.9,
            "f1": 0.6,
            "false_flag_rate": 0.2,
            "auc": 0.85,
            "average_precision": 0.7,
            "small_loss_precision": 0.55,
            "small_loss_recall": 0.8,
            "realised_noise_rate": noise,
            "noise_rate_error": 0.05,
        },
        "clean": {"false_flag_rate": 0.1},
    }


def test_detection_table_reads_the_detection_details_per_noise_level_or_the_headline() -> None:
    records = sweep_records()
    for record in (*records, *(e["revs"][0] for e in records[1]["experiments"])):
        noise = record["data"]["params"]["params.yaml"]["data"]["noise"]
        headline = detection_headline(detection_record(noise)["noisy"])
        record["data"]["metrics"]["metrics/detection.json"] = {"data": headline}
    runs, _ = parse_runs(records)
    with_table, _ = with_details(
        runs, lambda run, path: {**study_details(run.noise), DETECTION_DETAILS: detection_record(run.noise)}.get(path)
    )
    text = markdown_report(group_sweeps(with_table))
    assert "### Finding the flipped labels" in text
    assert "| 0.5 | 0.750 | 0.900 | 0.600 | 0.200 | 0.850 | 0.700 | 0.550 | 0.800 | 0.500 | – | 0.050 | 0.100 |" in text
    assert "small-loss precision" in text and "false flags on correct labels" in text
    # Headline only: precision, recall and the realised noise (no estimate in this record).
    text = markdown_report(group_sweeps(runs))
    assert "| 0.5 | 0.750 | 0.900 | – | – | – | – | – | – | 0.500 | – | – | – |" in text


def test_no_detection_table_without_detection_metrics() -> None:
    runs, _ = parse_runs(sweep_records())
    assert "Finding the flipped labels" not in markdown_report(group_sweeps(runs))


def test_pruned_variants_are_drawn_and_tabulated_beside_the_noisy_ones() -> None:
    run = make_run("exp", 0.3, "2026-01-01T10:00:00")
    run.details[VARIANT_DETAILS]["bce-pruned"] = variant_metrics(0.9)
    (sweep,) = group_sweeps([run])
    assert variants(sweep)[:3] == ["bce-pruned", "bce-noisy", "l1-noisy"]


def test_label_issues_picture_ranks_the_top_suspects(tmp_path: Path) -> None:
    import pandas as pd

    from report.label_issues import draw_label_issues, top_suspects

    issues = pd.DataFrame(
        {
            "seed": [0] * 5 + [1] * 5,
            "id": [1, 3, 4, 7, 9] * 2,
            "label": [0, 1, 1, 0, 1] * 2,
            "predicted": [1, 1, 0, 0, 0] * 2,
            "score": [0.9, 0.1, 0.8, 0.2, 0.95, 0.99, 0.98, 0.97, 0.96, 0.0],
            "rank": [2, 5, 3, 4, 1, 1, 2, 3, 4, 5],
            "flagged": [True, False, True, False, True] * 2,
            "flipped": [True, False, False, False, True] * 2,
        }
    )
    suspects = top_suspects(issues, seed=0, count=3)
    assert suspects["id"].tolist() == [9, 1, 4]
    images = np.random.default_rng(0).integers(0, 255, size=(5, 16, 16, 3), dtype=np.uint8)
    draw_label_issues(images, np.array([1, 3, 4, 7, 9]), suspects, ["not_8", "8"], tmp_path / "issues.png")
    with Image.open(tmp_path / "issues.png") as image:
        assert image.size[0] > 800


# --- the figure's panels ---------------------------------------------------------------------------------------


def sweep_figure(levels: tuple[float, ...]):
    from report.figure import noise_curve_figure

    records = exp_show(
        *(
            experiment(rev_record(f"{i + 1}" * 40, f"exp-{i}", f"2026-01-01T11:0{i}:00", x))
            for i, x in enumerate(levels)
        ),
        baseline_noise=levels[0],
    )
    (sweep,) = group_sweeps(runs_with_details(records))
    return noise_curve_figure([sweep])


@pytest.mark.parametrize("levels", [(0.0, 0.1, 0.2, 0.3, 0.4), (0.0, 0.3, 0.5, 0.7, 0.9), (0.4, 0.5)])
def test_figure_panels_answer_the_question_and_keep_their_notes_inside(levels: tuple[float, ...]) -> None:
    import matplotlib.pyplot as plt

    figure = sweep_figure(levels)
    balanced, gain, auc, accuracy = figure.axes[:4]
    assert [axis.get_title() for axis in (balanced, auc, accuracy)] == ["Balanced accuracy", "AUC", "Accuracy"]
    assert gain.get_title() == "Gain over the tuned BCE: Δ balanced accuracy"
    # The gain panel: l1-noisy vs bce-noisy at every level, with its interval (the test's +0.2 noise ± 0.02).
    (line,) = [line for line in gain.get_lines() if line.get_label() == "l1-noisy"]
    np.testing.assert_allclose(line.get_ydata(), [0.2 * x for x in levels])
    (bars,) = gain.collections
    spans = [segment[:, 1] for segment in bars.get_segments()]
    np.testing.assert_allclose([high - low for low, high in spans], [0.04] * len(levels))
    # "labels carry no information" only where 0.5 is on the axis, and then inside it.
    for axis in figure.axes[:4]:
        notes = [text for text in axis.texts if "no information" in text.get_text()]
        assert len(notes) == (1 if levels[-1] >= 0.5 else 0)
        low, high = axis.get_xlim()
        assert all(low <= note.get_position()[0] <= high for note in notes)
        assert all(note.get_position()[1] <= 1 for note in notes)
    plt.close(figure)


# --- the protocol: oracle twins, what the noise costs, Holm over a sweep ---------------------------------------


def twin_details(noise: float) -> dict:
    """A run's details with oracle twins: BCE's chosen better with the true labels, L1's as well as with noisy."""
    details = study_details(noise)
    metrics = details[VARIANT_DETAILS]
    metrics["bce-noisy:oracle"] = variant_metrics(0.95 - 0.3 * noise)
    metrics["l1-noisy:oracle"] = variant_metrics(0.93 - 0.2 * noise)
    protocol = {
        "bce-noisy:oracle vs bce-noisy": comparison("bce-noisy", "bce-noisy:oracle", 0.1 * noise, 0.01, True),
        "bce-noisy:oracle vs bce-clean": comparison("bce-clean", "bce-noisy:oracle", -0.3 * noise, 0.001, True),
        "l1-noisy:oracle vs l1-noisy": comparison("l1-noisy", "l1-noisy:oracle", 0.0, 1.0, False),
        "l1-noisy:oracle vs l1-clean": comparison("l1-clean", "l1-noisy:oracle", -0.2 * noise, 0.02, True),
    }
    for entry in protocol.values():
        entry["family"] = "protocol"
    details[COMPARISON_DETAILS] = {**details[COMPARISON_DETAILS], **protocol}
    return details


def twin_sweep() -> list:
    runs, _ = parse_runs(sweep_records())
    runs, _ = with_details(runs, lambda run, path: twin_details(run.noise).get(path))
    return group_sweeps(runs)


def test_the_cost_table_splits_the_noise_cost_into_training_labels_and_selection() -> None:
    (sweep,) = twin_sweep()
    lines = cost_table(sweep).splitlines()
    assert lines[0] == (
        "| noise | variant | clean | noisy | oracle | total cost | training labels [95 % CI] "
        "| choosing on noisy labels [95 % CI] | experiment |"
    )
    rows = {(row[0], row[1]): row for row in (line.strip("| ").split(" | ") for line in lines[2:])}
    assert set(rows) == {(f"{noise:g}", name) for noise in (0, 0.3, 0.5, 0.9) for name in ("bce-noisy", "l1-noisy")}
    # At 0.5: bce clean 0.850, noisy 0.650, oracle 0.700; total 0.200 = training labels 0.150 + choice 0.050.
    assert rows[("0.5", "bce-noisy")][2:8] == [
        "0.850", "0.650", "0.700", "0.200", "+0.150 [+0.130, +0.170]", "+0.050 [+0.030, +0.070]"
    ]  # fmt: skip
    assert rows[("0.5", "l1-noisy")][7] == "+0.000 [-0.020, +0.020]"
    text = markdown_report([sweep])
    assert "### What the noise costs, and where" in text
    # The protocol's comparisons are in the cost table, not among the study's paired comparisons.
    assert "vs bce-noisy:oracle" not in text and "bce-noisy:oracle vs" not in text
    assert cost_table(group_sweeps(runs_with_details(sweep_records()))[0]) is None  # no twins, no table


def test_twins_are_columns_beside_their_variant_and_dotted_in_the_figure(tmp_path: Path) -> None:
    (sweep,) = twin_sweep()
    assert variants(sweep) == ["bce-noisy", "bce-noisy:oracle", "l1-noisy", "l1-noisy:oracle", "bce-clean", "l1-clean"]
    figure = noise_curve_figure([sweep])
    labels = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert labels["bce-noisy:oracle (chosen with true labels)"].get_linestyle() == ":"
    assert labels["bce-noisy"].get_linestyle() == "-"


def test_holm_over_the_sweep_adjusts_every_level_s_study_comparisons_together() -> None:
    (sweep,) = twin_sweep()
    adjusted = sweep_holm(sweep)
    study = [(run.name, name) for run in sweep.runs for name in study_comparisons(run.noise)]
    assert set(adjusted) == set(study)  # the protocol's comparisons are their own family
    p_values = [
        study_comparisons(run.noise)[name]["p_value"] for run in sweep.runs for name in study_comparisons(run.noise)
    ]
    reject, expected = holm(p_values)
    assert [adjusted[key] for key in study] == [(float(p), bool(r)) for p, r in zip(expected, reject, strict=True)]
    per_level = markdown_report([sweep])
    whole = markdown_report([sweep], holm_family="sweep")
    assert "Holm's family: the comparisons of one noise level" in per_level
    assert "Holm's family: every comparison in these tables, all noise levels of the sweep together" in whole
    run = sweep.runs[0]
    row = comparison_table(run, adjusted).splitlines()[2].strip("| ").split(" | ")
    p, _ = adjusted[(run.name, "l1-noisy vs bce-noisy")]
    assert row[6].strip("*") == (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def test_the_calibration_tables_appear_where_the_runs_measured_it() -> None:
    def with_calibration(run: Run, path: str) -> dict | None:
        found = twin_details(run.noise).get(path)
        if path == VARIANT_DETAILS:
            for name, values in found.items():
                if name != "baseline":
                    values.update(ece=0.05, ece_std=0.01, brier=0.1, brier_std=0.02)
        return found

    runs, _ = parse_runs(sweep_records())
    text = markdown_report(group_sweeps(with_details(runs, with_calibration)[0]))
    assert "### Expected calibration error (lower is better)" in text and "### Brier score (lower is better)" in text
    assert "| 0.5 | 0.050 ± 0.010 |" in text
    assert "calibration error" not in markdown_report(twin_sweep())
