"""End to end with `model.fine_tune: true`: the real `dvc repro` fine-tunes ResNet50's top block on the images,
LP-FT (the default `model.fine_tune_start`), one loss on clean and noisy labels, a grid of two learning rates;
per seed the grid point, epoch and threshold chosen on the validation labels and saved. From the prepared
data (a copy of tests/e2e/conftest.py's `prepared_project`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.project import FINGERPRINT, copy_project, dvc, ran_stages, run, write_params

LEARNING_RATES = [1e-4, 1e-3]
FINE_TUNE = {
    "model": {"fine_tune": True, "trainable_blocks": 1},
    "train": {
        "losses": ["bce"],
        "epochs": 2,
        "seeds": [0],
        "fine_tune_grid": {"bce": {"learning_rate": LEARNING_RATES}},
    },
}
VARIANTS = ("bce-clean", "bce-noisy")
TRAIN = {f"train@{variant}" for variant in VARIANTS}


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory, prepared_project: Path) -> tuple[Path, str]:
    repo = copy_project(prepared_project, tmp_path_factory.mktemp("fine_tune") / "project")
    write_params(repo, FINE_TUNE)
    result = dvc(repo, "repro")
    return repo, result.stdout + result.stderr


def test_repro_fine_tunes_every_variant_and_evaluate_scores_its_predictions(fine_tuned: tuple[Path, str]) -> None:
    repo, output = fine_tuned
    # Not download and subsample: the images are as prepared. corrupt: one seed now.
    assert ran_stages(output) == {"corrupt", "embed", "detect_clean", "detect", *TRAIN, "evaluate"}
    assert "embed: model.fine_tune is true: the train stage reads the images; no features computed" in output
    line = "fine-tuning ResNet50 on the images; backend tensorflow; devices: CPU (no GPU visible); one device; "
    assert output.count(line) == len(VARIANTS)
    assert "precision float32; XLA off" in output
    grid = "per seed 2 fine-tuning(s) of 2 epochs (train.fine_tune_grid), each from the variant's head fit on the"
    assert output.count(grid) == len(VARIANTS)
    assert output.count("fine-tuning on 60 images: epoch 1 (with tracing)") == 2 * len(VARIANTS)  # 2 grid points
    for split in ("train", "val", "test"):
        assert np.load(repo / f"data/features/{split}.npy").shape == (0, 2048)

    table = pd.read_csv(repo / "data/prepared/labels.csv")
    y_test = table.loc[table["split"] == "test", "label"].to_numpy()
    metrics = json.loads((repo / "metrics/details/metrics.json").read_text())
    assert set(metrics) == {*VARIANTS, "baseline"}
    for variant in VARIANTS:
        scores = np.load(repo / f"models/{variant}/test_scores_seed_0.npy")
        assert scores.shape == (len(y_test),) and scores.dtype == np.float32
        assert np.all((scores >= 0) & (scores <= 1))
        assert metrics[variant]["seeds"] == 1
        # What chose it, on the 20 validation labels: the heads' rule over both grid points' epochs.
        selection = json.loads((repo / f"models/{variant}/selection_seed_0.json").read_text())
        assert (selection["select_by"], selection["threshold_rule"]) == ("log_loss", "smoothed")
        assert (selection["threshold_data"], selection["fine_tune_start"]) == ("validation", "linear_probe")
        assert selection["grid_size"] == 2 and selection["hyper_parameters"]["learning_rate"] in LEARNING_RATES
        assert "l2" in selection["probe_hyper_parameters"]  # LP-FT: the head's grid point, chosen as heads choose
        # Chosen, not 0.5 (on a random-init backbone a diverging model's threshold can be 1: nothing positive).
        assert 0 <= selection["threshold"] <= 1 and selection["threshold"] != 0.5
        by_epoch = selection["val_score_by_epoch"]
        assert len(by_epoch) == 2 and selection["epoch"] == by_epoch.index(max(by_epoch)) + 1
        assert selection["val_score"] == max(by_epoch)
        # evaluate scores the saved predictions at the saved threshold.
        assert metrics[variant]["threshold"] == pytest.approx(selection["threshold"])
        assert metrics[variant]["accuracy"] == pytest.approx(np.mean((scores >= selection["threshold"]) == y_test))
        assert metrics[variant]["epoch"] == selection["epoch"]
        log = repo / f"metrics/train/{variant}/seed_0"
        assert (log / "plots/metrics/test/accuracy.tsv").exists() and (log / "plots/metrics/train/loss.tsv").exists()
        assert (log / "params.yaml").read_text() == "keras_backend: tensorflow\n"
        # DVCLive holds the kept grid point's epochs, its selection score among them.
        logged = (log / "plots/metrics/val/score.tsv").read_text()
        assert [float(line.split("\t")[-1]) for line in logged.splitlines()[1:]] == pytest.approx(by_epoch)


def test_the_saved_model_is_the_fine_tuned_network_that_made_the_scores(fine_tuned: tuple[Path, str]) -> None:
    import keras

    from stages.lib.backbone.resnet import preprocess
    from stages.lib.losses import probabilities

    repo, _ = fine_tuned
    model = keras.models.load_model(repo / "models/bce-noisy/seed_0.keras", compile=False)
    assert model.input_shape == (None, 32, 32, 3)
    test_images = np.load(repo / "data/prepared/test_images.npy")
    scores = np.load(repo / "models/bce-noisy/test_scores_seed_0.npy")
    logits = model.predict(preprocess(test_images), verbose=0)  # the model outputs logits; scores are sigmoids
    np.testing.assert_allclose(probabilities(logits, "binary")[:, 0], scores, atol=1e-5)
    # The top block moved away from the backbone's start; a frozen block did not.
    from stages.lib.backbone.resnet import build_backbone, seed_everything

    seed_everything(0)  # the embed stage's seed: the random init fine-tuning started from
    start = build_backbone("none", 32)
    tuned = model.get_layer("resnet50")
    for name, trained in (("conv5_block3_2_conv", True), ("conv4_block6_2_conv", False)):
        same = np.allclose(tuned.get_layer(name).kernel.numpy(), start.get_layer(name).kernel.numpy())
        assert same is not trained, name


def test_switching_to_a_head_reruns_embed_and_every_train_but_not_the_data(fine_tuned: tuple[Path, str]) -> None:
    repo, _ = fine_tuned
    write_params(repo, {"model": {"fine_tune": False}})
    try:
        changed = set(json.loads(dvc(repo, "status", "--json").stdout)) - {FINGERPRINT}  # always changed
    finally:
        write_params(repo, {"model": {"fine_tune": True}})
    # The fingerprint stage is always changed, by design. evaluate reads model.fine_tune: heads have oracle twins.
    assert changed - {FINGERPRINT} == {"embed", "detect_clean", "detect", *TRAIN, "evaluate"}


def test_fine_tuning_settings_with_a_head_fail_in_one_line(fine_tuned: tuple[Path, str]) -> None:
    repo, _ = fine_tuned
    write_params(repo, {"model": {"fine_tune": False}, "train": {"augment": True}})
    try:
        result = run(repo, sys.executable, "-m", "stages.train", "--loss", "bce", "--labels", "clean", check=False)
    finally:
        write_params(repo, {"model": {"fine_tune": True}, "train": {"augment": False}})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "train: error: train.augment = true: augmentation needs the images; it applies with model.fine_tune: true only"
    )
