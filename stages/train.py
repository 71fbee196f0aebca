"""Train one variant (a loss on clean or noisy labels), once per repeat seed: `python -m stages.train --loss bce
--labels noisy` trains that variant for every seed in `train.seeds`. Every variant shares the inputs, the model,
the optimiser, the schedule and (per seed) the initial weights; only the labels and the loss differ.

`model.fine_tune` picks the trainer (stages.lib.train.interface): heads on the cached features, or ResNet50
itself on the images. Per seed, the model and the binary threshold are chosen on the validation set's labels,
noisy ones for a noisy variant: what a practitioner could choose with. A noisy head variant is also chosen on
the clean validation labels, its oracle twin (models/<variant>/oracle/). The test curves are monitoring only.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace

from stages.lib.core.errors import UserError, run_stage
from stages.lib.core.io import atomic_dir, label_names, read_prepared
from stages.lib.core.params import LABEL_SETS
from stages.lib.core.seeds import derived_seed
from stages.lib.core.variants import (
    SUBSET_LABEL_SETS,
    curves_dir,
    has_oracle_twin,
    model_dir,
    targets,
    training_log_dir,
    variant_name,
)
from stages.lib.losses.settings import read_params_with_losses
from stages.lib.noise.transition import SELECT_SCORE_TRANSITIONS
from stages.lib.train.finetune.checkpoint import CHECKPOINTS_DIR
from stages.lib.train.interface import SeedTargets, Setup
from stages.lib.train.logs import epoch_bar, mean_curves, say, summary_line
from stages.lib.train.seed_labels import seed_labels
from stages.lib.train.trainers import trainer_class


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--loss", required=True, help="a loss name from train.losses")
    parser.add_argument("--labels", required=True, choices=LABEL_SETS)
    args = parser.parse_args(argv)

    params = read_params_with_losses()
    settings, model_params, task, seed = params.train, params.model, params.task, params.seed
    for flag, value, param in (("loss", args.loss, "losses"), ("labels", args.labels, "labels")):
        if value not in (allowed := getattr(settings, param)):
            raise UserError(f"--{flag} {value!r} is not in train.{param} ({', '.join(allowed)})")
    variant, kind = variant_name(args.loss, args.labels), trainer_class(model_params)

    table, summary = read_prepared(task)
    num_classes = len(label_names(summary))
    split_y = {split: table.loc[table["split"] == split, "label"].to_numpy() for split in ("train", "val", "test")}
    inputs = kind.read_inputs({split: len(labels) for split, labels in split_y.items()})
    clean_y, clean_val_y, test_y = (targets(split_y[split], task, num_classes) for split in ("train", "val", "test"))
    forward_source = settings.loss_params[args.loss].get("T") if args.loss == "forward" else None
    select_source = SELECT_SCORE_TRANSITIONS[settings.select_score]
    per_seed = seed_labels(table, args.labels, variant, forward_source, settings.seeds, num_classes, select_source)

    setup = Setup(variant, inputs["train"], inputs["val"], inputs["test"], test_y, task, num_classes, args.loss,
                  settings, model_params, seed, params.evaluate.metric)  # fmt: skip
    if args.labels in SUBSET_LABEL_SETS:  # each seed keeps its own rows: a trainer per seed, on those rows only
        trainers = {r: kind(replace(setup, inputs=inputs["train"][per_seed[r].rows])) for r in settings.seeds}
    else:
        trainers = dict.fromkeys(settings.seeds, kind(setup))
    twin = has_oracle_twin(args.labels, fine_tune=model_params.fine_tune, validating=len(clean_val_y) > 0)
    seed_targets = {
        r: SeedTargets(
            y=targets(given.labels, task, num_classes),
            seed=derived_seed(seed, r),
            val_y=targets(given.val_labels, task, num_classes),
            transition=given.transition,
            val_transition=given.val_transition,
            oracle_y=clean_y[given.rows] if twin else None,
            oracle_val_y=clean_val_y if twin else None,
        )
        for r, given in per_seed.items()
    }

    log_root = training_log_dir(variant)
    shutil.rmtree(log_root, ignore_errors=True)  # logs of an interrupted run: DVCLive writes in place
    histories = []
    steps = sum(trainers[r].steps_per_seed() for r in settings.seeds)
    with atomic_dir(model_dir(variant)) as staging, epoch_bar(variant, steps) as bar:
        by_seed = kind.trained_by_seed(trainers, seed_targets, log_root, bar.update, key=lambda r: per_seed[r].key)
        for repeat, trained in by_seed:
            say(summary_line(variant, repeat, trained, settings.epochs))
            trained.write(staging, repeat, settings.select_epoch)
            histories.append(trained.history)
    with atomic_dir(curves_dir(variant)) as staging:
        for metric, frame in mean_curves(histories).items():
            frame.to_csv(staging / f"{metric}.csv", index=False, lineterminator="\n")
    # Fine-tuning's per-epoch checkpoints (a killed run resumes from them) are spent once the outputs exist.
    shutil.rmtree(CHECKPOINTS_DIR / variant, ignore_errors=True)


if __name__ == "__main__":
    run_stage("train", main)
