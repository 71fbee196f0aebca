"""Train one variant (a loss on clean or noisy labels), once per repeat seed: `python -m stages.train --loss bce
--labels noisy` trains that variant for every seed in `train.seeds`. Every variant shares the inputs, the model,
the optimiser, the schedule and (per seed) the initial weights; only the labels and the loss differ.

`model.fine_tune` picks the trainer: a grid of heads on the cached features, each fit to its optimum
(stages.lib.train.training; `train.tune`: L2 strengths × the loss's own param, the same number of points for every
loss), or ResNet50 itself on the images (stages.lib.train.finetune.trainer; `train.fine_tune_grid`: learning rates ×
the loss's own param). Per seed, the grid point (fine-tuning: and the epoch) and the binary threshold are
chosen by one rule on the validation set's labels, noisy ones for a noisy variant (the corrupt stage draws
them like the training pool's): what a practitioner could choose with. A noisy head variant is also chosen on
the clean validation labels, its oracle twin (models/<variant>/oracle/). The per-step test curves use the
test set's true labels and are monitoring only: nothing is selected on them.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.core import params as P
from stages.lib.core.cpus import usable_cpus
from stages.lib.core.errors import UserError, run_stage
from stages.lib.core.io import (
    LABELS_TABLE,
    atomic_dir,
    features_path,
    images_path,
    label_names,
    load_array,
    read_prepared,
    save_array,
    write_json,
)
from stages.lib.core.seeds import derived_seed
from stages.lib.core.variants import (
    LABEL_SETS,
    ORACLE,
    SCORES_FILE,
    SELECTION_FILE,
    SUBSET_LABEL_SETS,
    curves_dir,
    model_dir,
    targets,
    training_log_dir,
    variant_name,
)
from stages.lib.losses import settings as L
from stages.lib.train.finetune.checkpoint import CHECKPOINTS_DIR
from stages.lib.train.progress import epoch_bar, say
from stages.lib.train.seed_labels import seed_labels
from stages.lib.train.training import (
    Setup,
    Trained,
    head_trainer,
    live_log,
    log_history,
    mean_curves,
    summary_line,
    trained_by_seed,
)


def save_trained(folder: Path, repeat: int, trained: Trained, select_epoch: str) -> None:
    """One seed's model, its test scores and what chose it, into `folder`."""
    trained.save(folder / trained.file_name.format(seed=repeat))
    save_array(folder / SCORES_FILE.format(seed=repeat), trained.scores.astype(np.float32))
    selection = {
        "select_epoch": select_epoch,
        "epoch": trained.epoch,
        "val_accuracy": trained.val_accuracy,
        "threshold": trained.threshold,
        **trained.chosen,
    }
    write_json(folder / SELECTION_FILE.format(seed=repeat), selection)


def check_rows(path: Path, rows: int, expected: int) -> None:
    if rows != expected:
        raise UserError(f"{path} has {rows} rows but {LABELS_TABLE} lists {expected} images: rerun `dvc repro`")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--loss", required=True, help="a loss name from train.losses")
    parser.add_argument("--labels", required=True, choices=LABEL_SETS)
    args = parser.parse_args(argv)

    raw = L.load_checked_params()
    settings, model_params = L.train_params(raw), P.model_params(raw)
    task, seed, fine_tune = P.task(raw), P.seed(raw), model_params.fine_tune
    if args.loss not in settings.losses:
        raise UserError(f"--loss {args.loss!r} is not in train.losses ({', '.join(settings.losses)})")
    if args.labels not in settings.labels:
        raise UserError(f"--labels {args.labels!r} is not in train.labels ({', '.join(settings.labels)})")
    if not fine_tune and (problem := P.fine_tune_settings_in_head_mode(settings)):
        raise UserError(problem)
    variant = variant_name(args.loss, args.labels)

    table, summary = read_prepared(task)
    num_classes = len(label_names(summary))
    train_ids = table.loc[table["split"] == "train", "id"].to_numpy()
    val_ids = table.loc[table["split"] == "val", "id"].to_numpy()
    test_y = targets(table.loc[table["split"] == "test", "label"].to_numpy(), task, num_classes)
    # The true labels: an oracle twin chooses with them (head mode; stages.lib.train.training.head_trainer).
    clean_y, clean_val_y = (
        targets(table.loc[table["split"] == split, "label"].to_numpy(), task, num_classes) for split in ("train", "val")
    )
    # Fine-tuning reads the images (memory-mapped: the pipeline caches them); a head, the cached features.
    input_path = images_path if fine_tune else features_path
    train_inputs, val_inputs, test_inputs = (
        load_array(input_path(split), mmap=fine_tune) for split in ("train", "val", "test")
    )
    check_rows(input_path("train"), len(train_inputs), len(train_ids))
    check_rows(input_path("val"), len(val_inputs), len(val_ids))
    check_rows(input_path("test"), len(test_inputs), len(test_y))
    forward_source = settings.loss_params[args.loss].get("T") if args.loss == "forward" else None
    select_source = P.SELECT_SCORE_TRANSITIONS[settings.select_score]
    per_seed = seed_labels(table, args.labels, variant, forward_source, settings.seeds, num_classes, select_source)

    setup = Setup(
        variant,
        train_inputs,
        val_inputs,
        test_inputs,
        test_y,
        task,
        num_classes,
        args.loss,
        settings,
        model_params,
        seed,
        P.evaluate_metric(raw),
    )
    if fine_tune:
        from stages.lib.train.finetune.trainer import fine_tune_trainer as make_trainer
    else:
        make_trainer = head_trainer
    if args.labels in SUBSET_LABEL_SETS:
        # Each seed keeps its own rows: a trainer per seed, on those rows only (features or images).
        trainers = {r: make_trainer(replace(setup, inputs=train_inputs[per_seed[r].rows])) for r in settings.seeds}
    else:
        trainers = dict.fromkeys(settings.seeds, make_trainer(setup))

    log_root = training_log_dir(variant)
    # DVCLive writes in place, inside the declared output (docs/reliability.md).
    shutil.rmtree(log_root, ignore_errors=True)  # logs of an earlier, interrupted run
    histories = []
    # A head's seed is one step of the bar; fine-tuning's, an epoch of each grid point.
    steps_per_seed = settings.epochs * len(settings.fine_tuning_grid(args.loss, len(val_ids) > 0)) if fine_tune else 1
    with atomic_dir(model_dir(variant)) as staging, epoch_bar(variant, len(settings.seeds) * steps_per_seed) as bar:

        def train_seed(repeat: int, live: Any = None) -> Trained:
            labels = per_seed[repeat]
            y, val_y = (targets(x, task, num_classes) for x in (labels.labels, labels.val_labels))
            # The selection's correction; a head's oracle twin is chosen with the true labels.
            extra: dict[str, Any] = {"val_transition": labels.val_transition}
            if fine_tune:
                extra["progress"] = bar.update
            else:
                twin = args.labels != "clean" and len(clean_val_y) > 0
                extra["oracle_val_y"] = clean_val_y if twin else None
                extra["oracle_y"] = clean_y[labels.rows] if twin else None
            return trainers[repeat](y, derived_seed(seed, repeat), live, labels.transition, val_y, **extra)

        def fine_tuned_by_seed() -> Iterator[tuple[int, Trained]]:
            for repeat in settings.seeds:
                with live_log(log_root / f"seed_{repeat}") as live:
                    trained = train_seed(repeat, live)
                yield repeat, trained

        if fine_tune:  # one seed at a time: each logs as it trains (and may hold every GPU)
            by_seed = fine_tuned_by_seed()
        else:  # heads: the seeds on every usable CPU, logged here as each finishes; seeds with the same
            # labels (every seed of a clean variant) share one fit, as a head is a function of its labels
            by_seed = trained_by_seed(train_seed, settings.seeds, usable_cpus(), key=lambda r: per_seed[r].key)
        for repeat, trained in by_seed:
            if not fine_tune:
                with live_log(log_root / f"seed_{repeat}") as live:
                    log_history(live, trained.history)
                bar.update(1)
            say(summary_line(variant, repeat, trained, settings.epochs))
            save_trained(staging, repeat, trained, settings.select_epoch)
            if trained.oracle is not None:
                (staging / ORACLE).mkdir(exist_ok=True)
                save_trained(staging / ORACLE, repeat, trained.oracle, settings.select_epoch)
            histories.append(trained.history)
    with atomic_dir(curves_dir(variant)) as staging:
        for metric, frame in mean_curves(histories).items():
            frame.to_csv(staging / f"{metric}.csv", index=False, lineterminator="\n")
    # Fine-tuning's per-epoch checkpoints (a killed run resumes from them) are spent once the outputs exist.
    shutil.rmtree(CHECKPOINTS_DIR / variant, ignore_errors=True)


if __name__ == "__main__":
    run_stage("train", main)
