"""Resuming fine-tuning (stages.lib.train.finetune.checkpoint), through the trainer itself, as the train stage runs it:
a seed stopped in its second grid point, mid-way, and run again skips the finished point, resumes the other
after its last finished epoch and ends with the model and choice of an uninterrupted run.
tests/e2e/test_finetune_resume.py kills the real stage under `dvc repro` and resumes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.lib.core import params as core_params
from stages.lib.losses import settings as loss_settings
from stages.lib.train.finetune.checkpoint import GRID_FILE, RUN_DIR, STATE_FILE, checkpoint_dir, start_seed
from stages.lib.train.finetune.trainer import FineTuneTrainer
from stages.lib.train.interface import SeedTargets, Setup
from toolkit.project import PROJECT_ROOT

keras = pytest.importorskip("keras")
IMAGES = np.random.default_rng(0).integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
TARGETS = (np.arange(24) % 2).astype(np.float32)[:, None]
VAL_IMAGES, TEST_IMAGES = (
    np.random.default_rng(seed).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8) for seed in (1, 2)
)
VAL_TARGETS = TEST_TARGETS = (np.arange(8) % 2).astype(np.float32)[:, None]
EPOCHS = 2


class Live:
    """What the trainer asks of a DVCLive logger, the values kept."""

    dir = "seed_0"

    def __init__(self) -> None:
        self.logged: dict[str, list[float]] = {}

    def log_param(self, name, value):
        pass

    def log_metric(self, name, value):
        self.logged.setdefault(name, []).append(value)

    def next_step(self):
        pass


class Stopped(Exception):
    """Stands in for the kill: raised at the end of an epoch, before that epoch's checkpoint is saved."""


def fine_tuning_setup() -> Setup:
    raw = yaml.safe_load((PROJECT_ROOT / "toolkit/default_params.yaml").read_text())
    raw["model"].update({"weights": "none", "fine_tune": True, "trainable_blocks": 1, "fine_tune_start": "fresh_head"})
    raw["train"].update({"losses": ["bce"], "epochs": EPOCHS, "batch_size": 8, "augment": True, "select_epoch": "val"})
    raw["train"]["fine_tune_grid"] = {"bce": {"learning_rate": [1e-4, 1e-3]}}  # two points
    settings, model = loss_settings.train_params(raw), core_params.model_params(raw)
    return Setup("bce-clean", IMAGES, VAL_IMAGES, TEST_IMAGES, TEST_TARGETS, "binary", 2, "bce", settings, model, 0)


def test_a_seed_stopped_in_its_second_grid_point_resumes_to_the_uninterrupted_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the checkpoints folder is relative to the project's root
    trainer = FineTuneTrainer(fine_tuning_setup())
    targets = SeedTargets(TARGETS, 5, VAL_TARGETS)
    folder = checkpoint_dir("bce-clean", Live.dir)
    uninterrupted = trainer.fit(targets, Live())
    finished = json.loads((folder / GRID_FILE).read_text())["finished"]
    assert [len(point["epochs"]) for point in finished] == [EPOCHS, EPOCHS]
    for point in (0, 1):
        scores = [epoch["score"] for epoch in finished[point]["epochs"]]
        assert scores == finished[point]["history"]["val_score"]
    shutil.rmtree(folder)  # the stage removes it once its outputs are written

    ends = []

    def stop_in_the_second_point_after_its_first_epoch(epochs: int) -> None:
        ends.append(epochs)
        if len(ends) == EPOCHS + 2:  # the second point's second epoch: its first is checkpointed
            raise Stopped

    with pytest.raises(Stopped):
        trainer.fit(targets, Live(), progress=stop_in_the_second_point_after_its_first_epoch)
    assert len(json.loads((folder / GRID_FILE).read_text())["finished"]) == 1
    state = json.loads((folder / RUN_DIR / STATE_FILE).read_text())
    assert (state["point"], state["epochs_done"]) == (1, 1)

    steps = []
    live = Live()
    resumed = trainer.fit(targets, live, progress=steps.append)
    assert steps == [EPOCHS, 1, 1]  # the finished point, the second's finished epoch, its last epoch
    assert (resumed.epoch, resumed.chosen["hyper_parameters"]) == (
        uninterrupted.epoch,
        uninterrupted.chosen["hyper_parameters"],
    )
    assert resumed.threshold == pytest.approx(uninterrupted.threshold, abs=1e-6)
    np.testing.assert_allclose(resumed.history["loss"], uninterrupted.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(resumed.scores, uninterrupted.scores, atol=1e-6)
    assert live.logged["train/loss"] == resumed.history["loss"]  # the kept point's epochs, logged once each
    assert len(live.logged["val/score"]) == EPOCHS


def test_a_checkpoint_of_another_run_is_discarded(tmp_path: Path) -> None:
    folder = tmp_path / "seed_0"
    first = start_seed(folder, "a")
    first.best = (0, 1)
    (folder / RUN_DIR).mkdir()
    assert start_seed(folder, "a").finished == [] and (folder / RUN_DIR).exists()  # the same run: kept
    assert start_seed(folder, "b").best is None
    assert not (folder / RUN_DIR).exists()
    assert json.loads((folder / GRID_FILE).read_text())["key"] == "b"
