"""benchmarks/calibration.py at a tiny size, on Gaussian and on a project's (here: made up) features: it trains
the project's heads on simulated null and alternative data sets and ends with the two lines the README and
benchmarks/README.md quote."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def embedded_project(root: Path) -> Path:
    """What the benchmark reads of a project after `dvc repro embed`: features per split and the labels table."""
    rng = np.random.default_rng(0)
    (root / "data/features").mkdir(parents=True)
    (root / "data/prepared").mkdir(parents=True)
    rows = []
    for split, n in (("train", 60), ("val", 40), ("test", 80)):
        labels = (rng.random(n) < 0.25).astype(np.int64)
        features = rng.normal(size=(n, 12)) + 1.5 * labels[:, None]
        np.save(root / f"data/features/{split}.npy", features.astype(np.float32))
        rows += [{"split": split, "label": int(label)} for label in labels]
    pd.DataFrame(rows).to_csv(root / "data/prepared/labels.csv", index=False)
    return root


@pytest.mark.parametrize("real", [False, True])
def test_calibration_benchmark_ends_with_false_positive_rate_and_power(tmp_path: Path, real: bool) -> None:
    command = [sys.executable, "benchmarks/calibration.py", "--datasets", "4", "--effect-datasets", "2"]
    command += ["--repeats", "3", "--train-size", "60", "--val-size", "40", "--params", "toolkit/default_params.yaml"]
    command += ["--project", str(embedded_project(tmp_path))] if real else ["--test-size", "150"]
    done = subprocess.run([*command, "--workers", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert ("real features of" in lines[0]) == real, lines[0]
    assert ("80 test" if real else "150 test") in lines[0], lines[0]
    fpr = re.fullmatch(r"false_positive_rate: (\d\.\d{3}) \(4 null data sets, alpha 0\.05\)", lines[-2])
    power_line = r"power: (\d\.\d{3}) \(effect: noise 0\.3 -> 0\.2, mean Δ balanced_accuracy [+-]\d\.\d{3}; "
    power = re.fullmatch(power_line + r"2 data sets, 3 repeats, alpha 0\.05\)", lines[-1])
    assert fpr and power, lines[-2:]
    assert float(fpr.group(1)) in (0.0, 0.25, 0.5, 0.75, 1.0)  # a count of 4
    assert float(power.group(1)) in (0.0, 0.5, 1.0)
    assert lines[-3].startswith("image-only bootstrap (models held fixed), null rejections: ")
