"""The README's Quick start as typed: its commands, read from the README (not copied here), run one by one in a
fresh copy of the project, and what `dvc metrics diff` prints is what the README promises.

The one step taken for the reader is the one the README tells an offline reader to do by hand: params.yaml's
`data.source` points at local images (small synthetic ones, as every e2e test's), since tf_flowers cannot be
downloaded here. The install line is the environment this test runs in.
"""

from __future__ import annotations

import re
from pathlib import Path

from toolkit.project import PROJECT_ROOT, make_project, run

HEADLINE_FILES = {"metrics/metrics.json", "metrics/comparisons.json", "metrics/detection.json", "metrics/noise.json"}


def quick_start_commands() -> list[str]:
    """The Quick start's shell lines after the install line."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"^## Quick start\n.*?^```bash\n(.*?)^```", readme, re.M | re.S)
    assert block, "README.md has no ```bash block under ## Quick start"
    install, *commands = [line for line in block[1].splitlines() if line.strip()]
    assert "pip install -r requirements.txt" in install, install
    return commands


def test_the_quick_start_runs_as_typed_and_metrics_diff_shows_the_noisy_side(
    tmp_path: Path, flower_folder: Path
) -> None:
    repo = make_project(tmp_path / "project", flower_folder)
    commands = quick_start_commands()
    assert commands[0].startswith("dvc repro") and any(c.startswith("dvc metrics diff") for c in commands)
    printed = {}
    for command in commands:
        result = run(repo, "bash", "-c", command)  # comments and `&&` as a shell reads them
        printed[command] = result.stdout + result.stderr
    everything = "\n".join(printed.values())
    # Nothing that reads like a failure: no metrics missing from the commit, no output DVC cannot restore.
    assert "failed to load" not in everything
    assert "No file hash info" not in everything
    assert "WARNING" not in everything, everything

    (diff,) = [text for command, text in printed.items() if command.startswith("dvc metrics diff")]
    header, *lines = [line for line in diff.splitlines() if line.strip()]
    assert header.split() == ["Path", "Metric", "HEAD", "workspace", "Change"], diff
    rows = [line.split() for line in lines]
    # A screenful, each row a number a researcher reads: the noisy variants' means (and their oracle twins'), the
    # verdicts, detection and the realised noise; the clean controls did not change.
    assert 0 < len(rows) <= 60, diff
    assert {row[0] for row in rows} == HEADLINE_FILES, diff
    variants = {row[1].split(".")[0] for row in rows if row[0] == "metrics/metrics.json"}
    assert variants == {"bce-noisy", "l1-noisy", "bce-noisy:oracle", "l1-noisy:oracle"}, diff
    # The commit the README makes holds no pipeline output but the headline metrics.
    tracked = run(repo, "git", "ls-files").stdout.split()
    assert not [path for path in tracked if path.startswith(("data/", "models/", "metrics/details/"))]
