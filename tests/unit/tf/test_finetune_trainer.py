"""LP-FT (model.fine_tune_start: linear_probe): the fine-tuned model starts from the variant's head as the head
trainer fits and chooses it on the same backbone's features; a fresh head does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.lib.backbone.resnet import build_backbone, seed_everything
from stages.lib.core import params as core_params
from stages.lib.losses import settings as loss_settings
from stages.lib.train.finetune.model import backbone_features
from stages.lib.train.finetune.trainer import FineTuneTrainer
from stages.lib.train.head_trainer import HeadTrainer
from stages.lib.train.interface import SeedTargets, Setup
from toolkit.project import PROJECT_ROOT

keras = pytest.importorskip("keras")
RNG = np.random.default_rng(0)
LABELS = {"train": np.arange(30) % 3 == 0, "val": np.arange(15) % 3 == 0, "test": np.arange(15) % 3 == 0}
# A tinted image is positive: the random backbone's features separate the classes, and the heads' grid has
# a clear optimum.
IMAGES = {}
for split, positive in LABELS.items():
    images = RNG.integers(0, 160, size=(len(positive), 32, 32, 3)).astype(np.int16)
    images[positive, :, :, 0] += 90
    IMAGES[split] = images.astype(np.uint8)
TARGETS = {split: positive.astype(np.float32)[:, None] for split, positive in LABELS.items()}


class Live:
    dir = "seed_0"

    def log_param(self, name, value):
        pass

    def log_metric(self, name, value):
        pass

    def next_step(self):
        pass


def setup(start: str, inputs: dict[str, np.ndarray], loss: str = "gce") -> Setup:
    raw = yaml.safe_load((PROJECT_ROOT / "toolkit/default_params.yaml").read_text())
    # The backbone frozen and a negligible learning rate, one epoch: the model kept is its start.
    raw["model"].update({"weights": "none", "fine_tune": True, "trainable_blocks": 0, "fine_tune_start": start})
    raw["train"].update({"losses": [loss], "epochs": 1, "batch_size": 15})
    raw["train"]["fine_tune_grid"] = {loss: {"learning_rate": [1e-12]}}
    settings, model = loss_settings.train_params(raw), core_params.model_params(raw)
    return Setup(
        f"{loss}-noisy",
        inputs["train"],
        inputs["val"],
        inputs["test"],
        TARGETS["test"],
        "binary",
        2,
        loss,
        settings,
        model,
        0,
    )


def test_lp_ft_starts_from_the_head_the_head_trainer_fits_on_the_starting_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    seed_everything(0)  # the global seed: the backbone every fine-tuned model starts from
    backbone = build_backbone("none", image_size=32)
    features = {split: backbone_features(backbone, images, 15) for split, images in IMAGES.items()}
    seed_targets = SeedTargets(TARGETS["train"], 3, TARGETS["val"])
    headed = HeadTrainer(setup("linear_probe", features)).fit(seed_targets, None)

    probed = FineTuneTrainer(setup("linear_probe", IMAGES)).fit(
        SeedTargets(TARGETS["train"], 3, TARGETS["val"]), Live()
    )
    assert probed.chosen["probe_hyper_parameters"] == headed.chosen["hyper_parameters"]  # its l2 and q
    assert probed.chosen["fine_tune_start"] == "linear_probe"
    np.testing.assert_allclose(probed.scores, headed.scores, atol=1e-4)

    fresh = FineTuneTrainer(setup("fresh_head", IMAGES)).fit(seed_targets, Live())
    assert "probe_hyper_parameters" not in fresh.chosen
    assert np.abs(fresh.scores - headed.scores).max() > 0.05
