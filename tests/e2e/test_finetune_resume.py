"""A fine-tuning run killed mid-way resumes from its last finished epoch on the next `dvc repro`, logs every
epoch once and spends its checkpoint (stages/lib/train/finetune/checkpoint.py). That the resumed run ends with the
model of an uninterrupted one is proved in-process, through the same trainer: tests/unit/tf/
test_finetune_checkpoint.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from toolkit.project import dvc, tool_env, write_params

PARAMS = {
    "model": {"fine_tune": True, "trainable_blocks": 1},
    "train": {
        "losses": ["bce"],
        "epochs": 3,
        "seeds": [0],
        "augment": True,
        "select_epoch": "last",
        "fine_tune_grid": {"bce": {"learning_rate": [1e-3]}},  # one grid point (tests/unit/tf: two)
    },
}
STAGE = "train@bce-clean"
STATE = Path("checkpoints/bce-clean/seed_0/run/state.json")  # the grid point in training


def kill_after_first_epoch(repo: Path) -> None:
    """Run the stage and kill it (its whole process group, as a lost node would) once epoch 1 is saved."""
    command = [sys.executable, "-m", "dvc", "repro", STAGE]
    process = subprocess.Popen(command, cwd=repo, env=tool_env(), start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if json.loads((repo / STATE).read_text())["epochs_done"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        assert process.poll() is None, "the stage ended before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_killed_fine_tuning_run_resumes_from_its_last_epoch(prepared_copy: Path) -> None:
    repo = prepared_copy  # the images prepared; embed (fine_tune: no features) and train run
    write_params(repo, PARAMS)
    kill_after_first_epoch(repo)
    assert json.loads((repo / STATE).read_text())["epochs_done"] in (1, 2)
    assert not (repo / "models/bce-clean").exists()  # nothing half-written

    resumed = dvc(repo, "repro", STAGE)
    output = resumed.stdout + resumed.stderr
    assert "train bce-clean: grid point 1/1 resumes after epoch " in output
    assert not (repo / "checkpoints/bce-clean").exists()  # spent once the outputs are written
    log = repo / "metrics/train/bce-clean/seed_0/plots/metrics"
    for name in ("train/loss", "test/accuracy", "val/accuracy"):
        steps = [line.split("\t")[0] for line in (log / f"{name}.tsv").read_text().splitlines()[1:]]
        assert steps == ["0", "1", "2"], name  # every epoch logged once, the resumed ones included
    scores = np.load(repo / "models/bce-clean/test_scores_seed_0.npy")
    assert scores.shape == (40,) and np.all((scores >= 0) & (scores <= 1))
