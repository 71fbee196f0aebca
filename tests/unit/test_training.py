"""Training a variant's seeds on several CPUs (stages.lib.training.trained_by_seed): the same models, in seed
order, as one seed after the other; a worker's error reaches the stage."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stages.lib import params as P
from stages.lib.errors import UserError
from stages.lib.labels import targets
from stages.lib.params import loss_settings as L
from stages.lib.training import Setup, Trained, head_trainer, log_history, summary_line, trained_by_seed
from toolkit.project import DEFAULT_PARAMS_FILE

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2, 3)


def small_head_setup() -> tuple[Setup, np.ndarray, np.ndarray]:
    """The train stage's head trainer at params.yaml's defaults (its grid, selection), 12 epochs, on small
    Gaussian features: two classes, noisy training and validation labels."""
    raw = L.load_checked_params(DEFAULT_PARAMS_FILE)
    settings = replace(L.train_params(raw), epochs=12, seeds=SEEDS)
    rng = np.random.default_rng(0)
    y = (rng.random(260) < 0.3).astype(np.int64)
    x = (rng.normal(size=(260, 16)) + 1.5 * y[:, None]).astype(np.float32)
    noisy = np.where(rng.random(260) < 0.2, 1 - y, y)
    setup = Setup(
        "bce-noisy", x[:120], x[120:180], x[180:], targets(y[180:], "binary", 2), "binary", 2, "bce",
        settings, P.model_params(raw), 0, P.evaluate_metric(raw),
    )  # fmt: skip
    return setup, targets(noisy[:120], "binary", 2), targets(noisy[120:180], "binary", 2)


def test_seeds_trained_in_parallel_are_the_models_trained_one_after_the_other(capsys) -> None:
    setup, y, val_y = small_head_setup()
    trainer = head_trainer(setup)

    def work(repeat: int) -> Trained:
        return trainer(y, 1000 + repeat, None, None, val_y, val_transition=None)

    one_by_one = list(trained_by_seed(work, SEEDS, jobs=1))
    in_parallel = list(trained_by_seed(work, SEEDS, jobs=2))
    assert [repeat for repeat, _ in in_parallel] == list(SEEDS)
    for (_, a), (_, b) in zip(one_by_one, in_parallel, strict=True):
        assert np.array_equal(a.scores, b.scores)  # bit for bit
        assert a.history == b.history and a.chosen == b.chosen
        assert (a.epoch, a.threshold, a.val_accuracy) == (b.epoch, b.threshold, b.val_accuracy)
    # The seeds differ (else this test could not tell them apart).
    assert not np.array_equal(one_by_one[0][1].scores, one_by_one[1][1].scores)


def test_a_worker_s_error_is_raised_in_the_stage() -> None:
    def work(repeat: int) -> Trained | None:
        if repeat == 2:
            raise UserError(f"seed {repeat}: no labels")
        return None

    with pytest.raises(UserError, match=r"^seed 2: no labels$"):
        list(trained_by_seed(work, (2, 3), jobs=2))


class Recorder:
    """DVCLive's two calls the head logs with, recorded."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = [{}]

    def log_metric(self, name: str, value: float) -> None:
        self.steps[-1][name] = value

    def next_step(self) -> None:
        self.steps.append({})


def test_the_history_logged_after_training_is_what_the_trainer_logs_while_training() -> None:
    setup, y, val_y = small_head_setup()
    trainer = head_trainer(setup)
    during, after = Recorder(), Recorder()
    trained = trainer(y, 7, during, None, val_y, val_transition=None)
    log_history(after, trainer(y, 7, None, None, val_y, val_transition=None).history)
    assert during.steps == after.steps and len(during.steps) == setup.settings.epochs + 1
    assert set(during.steps[0]) >= {"train/loss", "test/accuracy", "val/accuracy"}
    assert trained.history["loss"]


def test_the_logger_gathers_nothing_for_studio_unless_studio_is_set_up(tmp_path, monkeypatch) -> None:
    import dvclive

    from stages.lib.training import live_log

    gathered = []
    monkeypatch.setattr(dvclive.Live, "post_data_to_studio", lambda self: gathered.append(self.step))
    for name in ("DVC_STUDIO_TOKEN", "STUDIO_TOKEN", "DVC_STUDIO_URL"):
        monkeypatch.delenv(name, raising=False)
    with live_log(tmp_path / "off") as live:
        log_history(live, {"loss": [0.5, 0.4], "accuracy": [0.7, 0.8]})
    assert gathered == []
    assert (tmp_path / "off/plots/metrics/train/loss.tsv").read_text().count("\n") == 3  # header + 2 epochs
    with live_log(tmp_path / "on") as live:
        live._studio_events_to_skip.discard("data")  # as DVCLive sets it when Studio is configured
        log_history(live, {"loss": [0.5, 0.4], "accuracy": [0.7, 0.8]})
    assert gathered[:2] == [0, 1]  # each step (and once more as the logger ends)


def trained(select_score: str, corrected: bool) -> Trained:
    chosen = {"hyper_parameters": {"l2": 10.0}, "grid_size": 8, "select_score": select_score, "metric": "auc"}
    chosen.update(val_score=0.97421, corrected=corrected)
    return Trained(np.zeros(3), {}, lambda path: None, "seed_{seed}.npz", 42, 0.98, 0.4123, chosen)


def test_the_per_seed_line_names_the_labels_it_chose_on_and_the_grid_it_chose_from() -> None:
    line = summary_line("bce-clean", 3, trained("noisy", corrected=False), 100)
    assert line == (
        "train bce-clean: seed 3: epoch 42/100; val auc 0.9742 on clean labels; val accuracy 0.9800; "
        "l2 10 (best of 8 grid points); threshold 0.412"
    )
    assert "val auc 0.9742 on noisy labels, corrected with the realised T;" in summary_line(
        "l1-noisy", 0, trained("corrected_true", corrected=True), 100
    )
    # T not invertible: scored uncorrected, and the line does not claim otherwise.
    assert "on noisy labels; val accuracy" in summary_line("l1-pruned", 0, trained("corrected_estimated", False), 9)
