"""Per-epoch checkpoints: a run stopped after an epoch and resumed ends with the model of an uninterrupted one,
through the fine-tuning trainer itself (its seeds, data pipeline, epoch selection and checkpoints wired as the
train stage runs them). tests/e2e/test_finetune_resume.py kills the real stage under `dvc repro` and resumes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.lib import params as P
from stages.lib.backbone import build_backbone, seed_everything
from stages.lib.finetune.checkpoint import STATE_FILE, checkpoint_callback, checkpoint_dir, load_checkpoint, run_key
from stages.lib.finetune.model import EpochLog, build_fine_tune_model, build_head, set_trainable_blocks
from stages.lib.finetune.pipeline import epoch_follower, image_pipeline
from stages.lib.finetune.trainer import fine_tune_trainer
from stages.lib.losses import make_loss
from stages.lib.params import loss_settings as L
from stages.lib.training import Setup
from toolkit.project import PROJECT_ROOT

keras = pytest.importorskip("keras")
IMAGES = np.random.default_rng(0).integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
TARGETS = (np.arange(24) % 2).astype(np.float32)[:, None]
VAL_IMAGES, TEST_IMAGES = (
    np.random.default_rng(seed).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8) for seed in (1, 2)
)
VAL_TARGETS = TEST_TARGETS = (np.arange(8) % 2).astype(np.float32)[:, None]


class Live:
    """What the trainer asks of a DVCLive logger (the stage's writes files; nothing here reads them)."""

    dir = "seed_0"

    def log_param(self, name, value):
        pass

    def log_metric(self, name, value):
        pass

    def next_step(self):
        pass


class Stopped(Exception):
    """Stands in for the kill: raised at the end of an epoch, before that epoch's checkpoint is saved."""


def fine_tuning_setup() -> Setup:
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["model"].update({"weights": "none", "fine_tune": True, "trainable_blocks": 1})
    raw["train"].update({"losses": ["bce"], "epochs": 3, "batch_size": 8, "learning_rate": 1e-4, "augment": True})
    raw["train"]["select_epoch"] = "val"  # the best epoch's weights are part of the checkpoint too
    settings, model = L.train_params(raw), P.model_params(raw)
    return Setup("bce-clean", IMAGES, VAL_IMAGES, TEST_IMAGES, TEST_TARGETS, "binary", 2, "bce", settings, model, 0)


def test_the_trainer_stopped_after_an_epoch_resumes_to_the_uninterrupted_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the checkpoints folder is relative to the project's root
    train = fine_tune_trainer(fine_tuning_setup())
    folder = checkpoint_dir("bce-clean", Live.dir)
    uninterrupted = train(TARGETS, 5, Live(), None, VAL_TARGETS)
    assert json.loads((folder / STATE_FILE).read_text())["epochs_done"] == 3
    for leftover in folder.iterdir():  # the stage removes them once its outputs are written
        leftover.unlink()

    ends = []

    def stop_at_the_second_epoch_end(epochs: int) -> None:
        ends.append(epochs)
        if len(ends) == 2:
            raise Stopped

    with pytest.raises(Stopped):
        train(TARGETS, 5, Live(), None, VAL_TARGETS, progress=stop_at_the_second_epoch_end)
    assert json.loads((folder / STATE_FILE).read_text())["epochs_done"] == 1
    resumed = train(TARGETS, 5, Live(), None, VAL_TARGETS)
    np.testing.assert_allclose(resumed.history["loss"], uninterrupted.history["loss"], rtol=1e-6)
    assert resumed.epoch == uninterrupted.epoch and resumed.history.keys() == uninterrupted.history.keys()
    np.testing.assert_allclose(resumed.scores, uninterrupted.scores, atol=1e-6)


def compiled_model():
    keras.backend.clear_session()
    seed_everything(0)
    backbone = build_backbone("none", image_size=32)
    set_trainable_blocks(backbone, 1)
    model = build_fine_tune_model(backbone, build_head(np.ones((4, 2048), np.float32), "binary", 2))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=make_loss("bce", "binary", {}), jit_compile=False)
    return model


def fit(model, folder: Path, key: str, first: int, last: int, history=None) -> EpochLog:
    log = EpochLog(Live(), None, history)
    batches = image_pipeline(IMAGES, TARGETS, batch_size=8, shuffle_seed=3, augment=True, first_epoch=first)
    callbacks = [epoch_follower(batches), log, checkpoint_callback(folder, key, log, None)]
    model.fit(batches, initial_epoch=first, epochs=last, callbacks=callbacks, shuffle=False, verbose=0)
    return log


def test_a_checkpoint_with_another_key_is_discarded(tmp_path: Path) -> None:
    model = compiled_model()
    fit(model, tmp_path / "run", run_key("a"), 0, 1)
    assert load_checkpoint(tmp_path / "run", run_key("b"), compiled_model()).epochs_done == 0
    assert not (tmp_path / "run").exists()
