"""benchmarks/calibration.py at a tiny size: it trains the project's heads on simulated null and
alternative data sets and ends with the two lines the README and benchmarks/README.md quote."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_calibration_benchmark_ends_with_false_positive_rate_and_power() -> None:
    command = [sys.executable, "benchmarks/calibration.py", "--datasets", "4", "--effect-datasets", "2"]
    command += ["--repeats", "3", "--epochs", "3", "--train-size", "120", "--val-size", "60", "--test-size", "150"]
    done = subprocess.run([*command, "--workers", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    fpr = re.fullmatch(r"false_positive_rate: (\d\.\d{3}) \(4 null data sets, alpha 0\.05\)", lines[-2])
    power_line = r"power: (\d\.\d{3}) \(effect: noise 0\.3 -> 0\.2, mean Δ balanced_accuracy [+-]\d\.\d{3}; "
    power = re.fullmatch(power_line + r"2 data sets, 3 repeats, alpha 0\.05\)", lines[-1])
    assert fpr and power, lines[-2:]
    assert float(fpr.group(1)) in (0.0, 0.25, 0.5, 0.75, 1.0)  # a count of 4
    assert float(power.group(1)) in (0.0, 0.5, 1.0)
    assert lines[-3].startswith("image-only bootstrap (models held fixed), null rejections: ")
