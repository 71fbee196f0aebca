"""Training a variant's seeds on several CPUs (stages.lib.train.pool.trained_by_seed): the same models, in seed
order, as one seed after the other; seeds with the same labels fit once; a worker's error reaches the stage;
the head trainer's oracle twin and what it logs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stages.lib.core import params as core_params
from stages.lib.core.errors import UserError
from stages.lib.core.variants import targets
from stages.lib.losses import settings as loss_settings
from stages.lib.train.head_trainer import HeadTrainer
from stages.lib.train.interface import SeedTargets, Setup, Trained
from stages.lib.train.logs import log_history, summary_line
from stages.lib.train.pool import trained_by_seed
from toolkit.project import DEFAULT_PARAMS_FILE

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2, 3)


def small_head_setup() -> tuple[Setup, tuple[np.ndarray, np.ndarray], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The train stage's head trainer at params.yaml's defaults (its grid, selection) on small Gaussian
    features: two classes; per seed its own noisy training and validation labels; the clean validation
    labels."""
    raw = loss_settings.load_checked_params(DEFAULT_PARAMS_FILE)
    settings = replace(loss_settings.train_params(raw), seeds=SEEDS)
    rng = np.random.default_rng(0)
    y = (rng.random(260) < 0.3).astype(np.int64)
    x = (rng.normal(size=(260, 16)) + 1.5 * y[:, None]).astype(np.float32)
    setup = Setup(
        "bce-noisy", x[:120], x[120:180], x[180:], targets(y[180:], "binary", 2), "binary", 2, "bce",
        settings, core_params.model_params(raw), 0, core_params.evaluate_metric(raw),
    )  # fmt: skip
    noisy = {}
    for repeat in SEEDS:
        given = np.where(np.random.default_rng(repeat).random(180) < 0.2, 1 - y[:180], y[:180])
        noisy[repeat] = targets(given[:120], "binary", 2), targets(given[120:], "binary", 2)
    return setup, (targets(y[:120], "binary", 2), targets(y[120:180], "binary", 2)), noisy


def test_seeds_trained_in_parallel_are_the_models_trained_one_after_the_other(capsys) -> None:
    setup, (clean_y, clean_val_y), noisy = small_head_setup()
    trainer = HeadTrainer(setup)

    def work(repeat: int) -> Trained:
        y, val_y = noisy[repeat]
        return trainer.fit(SeedTargets(y, 1000 + repeat, val_y, oracle_y=clean_y, oracle_val_y=clean_val_y), None)

    one_by_one = list(trained_by_seed(work, SEEDS, jobs=1))
    in_parallel = list(trained_by_seed(work, SEEDS, jobs=2))
    assert [repeat for repeat, _ in in_parallel] == list(SEEDS)
    for (_, a), (_, b) in zip(one_by_one, in_parallel, strict=True):
        assert np.array_equal(a.scores, b.scores)  # bit for bit
        assert a.history == b.history and a.chosen == b.chosen
        assert (a.epoch, a.threshold, a.val_accuracy) == (b.epoch, b.threshold, b.val_accuracy)
        assert np.array_equal(a.oracle.scores, b.oracle.scores) and a.oracle.chosen == b.oracle.chosen
    # The seeds' labels differ (else this test could not tell them apart).
    assert not np.array_equal(one_by_one[0][1].scores, one_by_one[1][1].scores)


@pytest.mark.parametrize("jobs", [1, 2])
def test_seeds_with_the_same_key_are_trained_once(jobs: int) -> None:
    calls = []

    def work(repeat: int) -> Trained:
        calls.append(repeat)
        return repeat * 10

    keys = {0: b"a", 1: b"b", 2: b"a", 3: b"a"}
    assert list(trained_by_seed(work, SEEDS, jobs, key=keys.get)) == [(0, 0), (1, 10), (2, 0), (3, 0)]
    if jobs == 1:  # the workers' calls happen in other processes
        assert calls == [0, 1]


def test_a_noisy_variant_s_oracle_twin_is_the_same_grid_chosen_with_true_labels() -> None:
    setup, (clean_y, clean_val_y), noisy = small_head_setup()
    y, val_y = noisy[0]
    trained = HeadTrainer(setup).fit(SeedTargets(y, 0, val_y, oracle_y=clean_y, oracle_val_y=clean_val_y), None)
    twin = trained.oracle
    assert trained.chosen["val_labels"] == "given" and twin.chosen["val_labels"] == "clean"
    assert "out-of-fold" in trained.chosen["threshold_data"] and "out-of-fold" in twin.chosen["threshold_data"]
    # The same heads (trained on the noisy labels), the grid point chosen on the clean validation labels.
    without_pooling = replace(setup, settings=replace(setup.settings, threshold_folds=0))
    direct = HeadTrainer(without_pooling).fit(SeedTargets(y, 0, clean_val_y), None)
    assert twin.chosen["hyper_parameters"] == direct.chosen["hyper_parameters"]
    assert HeadTrainer(setup).fit(SeedTargets(y, 0, val_y), None).oracle is None  # a clean variant has none


def test_the_threshold_pools_the_training_pool_s_out_of_fold_logits_with_the_validation_set() -> None:
    """With train.threshold_folds K, the threshold is the rule's on the validation logits and labels together
    with the chosen head's K-fold out-of-fold logits of the training pool and its labels."""
    from stages.lib.train.head import fit_head_grid, out_of_fold_logits
    from stages.lib.train.selection import smoothed_threshold_scores

    setup, _, noisy = small_head_setup()
    y, val_y = noisy[1]
    trained = HeadTrainer(setup).fit(SeedTargets(y, 0, val_y), None)
    grid = setup.settings.grid("bce")
    point = next(i for i, p in enumerate(grid) if p.tuned == trained.chosen["hyper_parameters"])
    heads = fit_head_grid(setup.inputs, y, task="binary", loss="bce", grid=grid)
    train_x = heads.coordinates(setup.inputs)
    oof = out_of_fold_logits(train_x, y, task="binary", loss="bce", point=grid[point], folds=5)
    val_logits = heads.logits(setup.val_inputs)
    logits = np.concatenate([oof[:, 0], val_logits[:, point, 0]])[:, None]
    labels = np.concatenate([y[:, 0], val_y[:, 0]]).astype(np.int64)
    _, (threshold,) = smoothed_threshold_scores(logits, labels, "balanced_accuracy", None)
    assert trained.threshold == threshold
    without_pooling = replace(setup, settings=replace(setup.settings, threshold_folds=0))
    alone = HeadTrainer(without_pooling).fit(SeedTargets(y, 0, val_y), None)
    assert alone.threshold != threshold and alone.chosen["threshold_data"] == "validation"


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
    setup, _, noisy = small_head_setup()
    y, val_y = noisy[0]
    trainer = HeadTrainer(setup)
    during, after = Recorder(), Recorder()
    trained = trainer.fit(SeedTargets(y, 7, val_y), during)
    log_history(after, trainer.fit(SeedTargets(y, 7, val_y), None).history)
    # One step per iterate of the chosen head's optimiser (the start first), and the empty step after them.
    assert during.steps == after.steps and len(during.steps) == trained.chosen["iterations"] + 2
    assert set(during.steps[0]) == {"train/loss", "train/accuracy", "test/loss", "test/accuracy"}
    assert trained.chosen["converged"] and trained.epoch is None


def test_the_logger_gathers_nothing_for_studio_unless_studio_is_set_up(tmp_path, monkeypatch) -> None:
    import dvclive

    from stages.lib.train.logs import live_log

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
    chosen.update(iterations=57, gradient_norm=2.1e-6, converged=True, select_by="log_loss")
    chosen.update(val_score=-0.61, val_metric=0.97421, corrected=corrected)
    return Trained(np.zeros(3), {}, lambda path: None, "seed_{seed}.npz", None, 0.98, 0.4123, chosen)


def test_the_per_seed_line_names_the_labels_it_chose_on_and_the_grid_it_chose_from() -> None:
    line = summary_line("bce-clean", 3, trained("noisy", corrected=False), 100)
    assert line == (
        "train bce-clean: seed 3: l2 10 (best of 8 grid points); converged in 57 iterations (|gradient| 2.1e-06); "
        "by val log_loss on clean labels; val auc 0.9742; threshold 0.412"
    )
    assert "by val log_loss on noisy labels; val auc 0.9742, corrected with the realised T;" in summary_line(
        "l1-noisy", 0, trained("corrected_true", corrected=True), 100
    )
    # T not invertible: scored uncorrected, and the line does not claim otherwise.
    assert "val auc 0.9742; threshold" in summary_line("l1-pruned", 0, trained("corrected_estimated", False), 9)
