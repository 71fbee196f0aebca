"""Per-epoch checkpoints: a run stopped after an epoch and resumed ends with the weights of an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stages.lib.backbone import build_backbone, seed_everything
from stages.lib.finetune.checkpoint import checkpoint_callback, load_checkpoint, run_key
from stages.lib.finetune.model import EpochLog, build_fine_tune_model, build_head, set_trainable_blocks
from stages.lib.finetune.pipeline import epoch_follower, image_pipeline
from stages.lib.losses import make_loss

keras = pytest.importorskip("keras")
IMAGES = np.random.default_rng(0).integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
TARGETS = (np.arange(24) % 2).astype(np.float32)[:, None]


class Live:
    dir = "seed_0"

    def log_metric(self, name, value):
        pass

    def next_step(self):
        pass


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


def test_stopped_after_one_epoch_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    key = run_key("test", IMAGES, TARGETS)
    uninterrupted = compiled_model()
    full = fit(uninterrupted, tmp_path / "full", key, 0, 3)
    expected = [np.array(w) for w in uninterrupted.get_weights()]

    fit(compiled_model(), tmp_path / "stopped", key, 0, 1)  # the run "killed" after its first epoch
    resumed_model = compiled_model()
    resumed = load_checkpoint(tmp_path / "stopped", key, resumed_model)
    assert resumed.epochs_done == 1 and len(resumed.history["loss"]) == 1
    log = fit(resumed_model, tmp_path / "stopped", key, 1, 3, resumed.history)
    np.testing.assert_allclose(log.history["loss"], full.history["loss"], rtol=1e-6)
    for got, want in zip(resumed_model.get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_a_checkpoint_with_another_key_is_discarded(tmp_path: Path) -> None:
    model = compiled_model()
    fit(model, tmp_path / "run", run_key("a"), 0, 1)
    assert load_checkpoint(tmp_path / "run", run_key("b"), compiled_model()).epochs_done == 0
    assert not (tmp_path / "run").exists()
