"""End to end: a queued two-level noise sweep from a fresh clone (`dvc exp run --queue` + `dvc queue start`),
the shared stages restored from DVC's run-cache rather than recomputed, `dvc exp show` and `dvc plots diff`
across the experiments, and `python -m report` over them."""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from toolkit.project import dvc, make_project, run

NOISE_LEVELS = (0.0, 0.5)
VARIANTS = ("bce-clean", "bce-noisy", "l1-clean", "l1-noisy")
TWINS = ("bce-noisy:oracle", "l1-noisy:oracle")  # scored in metrics, never plotted
# Stages that do not depend on `noise`: each runs once for the whole sweep, then comes from the run-cache.
SHARED_STAGES = ("download", "subsample", "embed", "train@bce-clean", "train@l1-clean")
PER_LEVEL_STAGES = ("corrupt", "detect", "train@bce-noisy", "train@l1-noisy", "evaluate")
QUEUE_TIMEOUT_S = 420


def queue_status(repo: Path) -> str:
    return dvc(repo, "queue", "status").stdout


def tasks_pending(status: str) -> bool:
    return re.search(r"\b(Queued|Running)\b", status) is not None


def workers_alive(status: str) -> bool:
    workers = re.search(r"Worker status: (\d+) active, (\d+) idle", status)
    return workers is not None and workers.groups() != ("0", "0")


def wait_for_queue(repo: Path, timeout_s: float) -> str:
    """Poll `dvc queue status` until every task has finished, then stop the worker and wait for it to exit."""
    deadline = time.monotonic() + timeout_s
    status = queue_status(repo)
    while tasks_pending(status):
        if time.monotonic() > deadline:
            dvc(repo, "queue", "stop", "--kill", check=False)  # leave no worker behind
            pytest.fail(f"queued sweep did not finish within {timeout_s}s:\n{status}")
        time.sleep(3)
        status = queue_status(repo)
    # An idle worker would otherwise linger for a while, holding the repo's queue.
    dvc(repo, "queue", "stop")
    while workers_alive(queue_status(repo)) and time.monotonic() < deadline:
        time.sleep(1)
    return status


def ran_stages(log: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", log)


def restored_stages(log: str) -> list[str]:
    return re.findall(r"Stage '([^']+)' is cached - skipping run", log)


def experiments(exp_show: list[dict]) -> dict[float, dict]:
    """noise level -> the experiment's rev record, for the experiments under the baseline commit."""
    found = {}
    for baseline in exp_show:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                found[rev["data"]["params"]["params.yaml"]["data"]["noise"]] = rev
    return found


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, flower_folder: Path) -> tuple[Path, dict[float, dict]]:
    """A fresh clone (nothing reproduced, empty cache) that has run the sweep as a queue."""
    repo = make_project(tmp_path_factory.mktemp("sweep") / "project", flower_folder, {"train": {"epochs": 2}})
    # No experiments yet: the report says what to run.
    empty = run(repo, sys.executable, "-m", "report", check=False)
    assert empty.returncode == 2, empty.stderr
    assert "no finished experiment" in empty.stderr and "dvc queue start" in empty.stderr

    levels = ",".join(f"{noise:g}" for noise in NOISE_LEVELS)
    dvc(repo, "exp", "run", "--queue", "-S", f"noise={levels}")
    dvc(repo, "queue", "start", "-j", "1")
    status = wait_for_queue(repo, QUEUE_TIMEOUT_S)
    assert status.count("Success") == len(NOISE_LEVELS), status
    found = experiments(json.loads(dvc(repo, "exp", "show", "--json").stdout))
    return repo, found


def test_exp_show_lists_every_level_with_params_and_metrics(sweep: tuple[Path, dict[float, dict]]) -> None:
    _, found = sweep
    assert sorted(found) == list(NOISE_LEVELS)
    for noise, rev in found.items():
        metrics = rev["data"]["metrics"]["metrics/metrics.json"]["data"]
        assert set(metrics) == {*VARIANTS, *TWINS, "baseline"}
        assert set(metrics["bce-noisy"]) == {"balanced_accuracy", "auc", "accuracy", "ece"}
        assert rev["data"]["metrics"]["metrics/noise.json"]["data"]["flip_rate"] == noise  # exact per class
        comparisons = rev["data"]["metrics"]["metrics/comparisons.json"]["data"]
        assert set(comparisons) == {"l1-noisy vs bce-noisy", "bce-noisy vs bce-clean", "l1-noisy vs l1-clean"}
        for entry in comparisons.values():  # every number survives `dvc exp show` (it drops lists)
            assert set(entry) == {"delta_balanced_accuracy", "ci95_low", "ci95_high", "p_holm"}
    at_zero, at_half = (found[n]["data"]["metrics"]["metrics/metrics.json"]["data"] for n in NOISE_LEVELS)
    # The clean controls are the same models at every level; the noisy ones are not.
    assert at_zero["bce-clean"] == at_half["bce-clean"]
    assert at_zero["bce-noisy"] != at_half["bce-noisy"]


def test_shared_stages_run_once_and_come_from_the_run_cache(sweep: tuple[Path, dict[float, dict]]) -> None:
    repo, found = sweep
    logs = {noise: dvc(repo, "queue", "logs", rev["name"]).stdout for noise, rev in found.items()}
    ran = Counter(stage for log in logs.values() for stage in ran_stages(log))
    restored = Counter(stage for log in logs.values() for stage in restored_stages(log))
    for stage in SHARED_STAGES:
        assert ran[stage] == 1, (stage, ran)
        assert restored[stage] == 1, (stage, restored)
    for stage in PER_LEVEL_STAGES:
        assert ran[stage] == len(NOISE_LEVELS), (stage, ran)


def test_plots_diff_compares_the_experiments(sweep: tuple[Path, dict[float, dict]]) -> None:
    repo, found = sweep
    names = [found[noise]["name"] for noise in NOISE_LEVELS]
    result = json.loads(dvc(repo, "plots", "diff", *names, "--json").stdout)
    assert not result.get("errors"), result["errors"]
    plots = result["data"]
    expected = [f"metrics/curves/{v}/{m}.csv" for v in VARIANTS for m in ("loss", "accuracy")]
    expected += [f"metrics/plots/{kind}/{v}.csv" for v in VARIANTS for kind in ("confusion", "reliability", "roc")]
    assert sorted(plots) == sorted(expected)
    for plot_id in expected:
        (rendered,) = plots[plot_id]
        assert rendered["revisions"] == names
        revisions = {point["rev"] for point in rendered["content"]["data"]["values"]}
        assert revisions == set(names), plot_id
    # Training curves: steps on x (a head's optimiser iterates), the train and test means as two lines.
    curve = plots["metrics/curves/bce-noisy/accuracy.csv"][0]["content"]
    assert {point["field"] for point in curve["data"]["values"]} == {"train", "test"}
    assert curve["encoding"]["x"]["field"] == "step"


def test_report_holds_every_level(sweep: tuple[Path, dict[float, dict]]) -> None:
    repo, found = sweep
    result = run(repo, sys.executable, "-m", "report")
    assert "report: wrote reports/noise_curve.png and reports/results.md" in result.stderr
    with Image.open(repo / "reports/noise_curve.png") as image:
        assert image.format == "PNG" and image.size[0] > 1000
    text = (repo / "reports/results.md").read_text()
    tables = re.findall(r"^### (.+)\n\n((?:\|.*\n)+)", text, flags=re.MULTILINE)
    calibration = ["Expected calibration error (lower is better)", "Brier score (lower is better)"]
    assert [title for title, _ in tables] == ["Balanced accuracy", "AUC", "Accuracy", *calibration]
    for _, table in tables:
        rows = [line.split(" | ") for line in table.strip().splitlines()[2:]]
        assert [float(row[0].strip("| ")) for row in rows] == list(NOISE_LEVELS)
        assert [row[-1].strip("| `") for row in rows] == [found[noise]["name"] for noise in NOISE_LEVELS]
        assert all("±" in cell for row in rows for cell in row[1:5])  # two seeds: mean ± std per variant
    # One comparison table per noise level, a row per comparison.
    comparison_tables = re.findall(r"^#### noise (\S+) \(`(.+)`\)\n\n((?:\|.*\n)+)", text, flags=re.MULTILINE)
    assert [(float(noise), name) for noise, name, _ in comparison_tables] == [
        (noise, found[noise]["name"]) for noise in NOISE_LEVELS
    ]
    for _, _, table in comparison_tables:
        rows = [line.strip("| ").split(" | ")[0].rstrip(" *") for line in table.strip().splitlines()[2:]]
        assert rows == ["l1-noisy vs bce-noisy", "bce-noisy vs bce-clean", "l1-noisy vs l1-clean"]
    # Nothing was reproduced in the workspace itself: it is listed as left out, not as a row.
    assert "`workspace` (no metrics/metrics.json (not reproduced))" in text
