"""Stage 5: train one variant (a loss on clean or noisy labels), once per repeat seed.

`python -m stages.train --loss bce --labels noisy` trains the shared head on the cached backbone
features with that loss, for every seed in `train.seeds`, and writes models/<loss>-<labels>/seed_<s>.keras
plus per-epoch DVCLive logs in metrics/train/<loss>-<labels>/seed_<s>/ and the mean curves over seeds in
metrics/curves/<loss>-<labels>/{loss,accuracy}.csv (what `dvc plots show` draws). Every variant shares the
features, the head, the optimiser, the schedule and (per seed) the head's initial weights; only the
labels and the loss differ.

The per-epoch `eval` curves are measured on the test set with its true labels, to show how fitting the
noisy labels erodes test accuracy epoch by epoch (the memorisation effect). They are monitoring only:
nothing is selected or stopped early on them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib import params as P
from stages.lib.backbone import derived_seed, seed_everything
from stages.lib.errors import UserError, run_stage
from stages.lib.head import MODEL_FILE, accuracy_metric, build_head, labels_for_seed, targets
from stages.lib.io import (
    METRICS_DIR,
    MODELS_DIR,
    atomic_dir,
    features_path,
    label_file,
    label_names,
    load_array,
    read_csv,
    read_prepared,
)
from stages.lib.tf_import import import_tensorflow

CURVE_METRICS = ("loss", "accuracy")


def training_log_dir(variant: str) -> Path:
    return METRICS_DIR / "train" / variant


def curves_dir(variant: str) -> Path:
    return METRICS_DIR / "curves" / variant


def mean_curves(histories: Sequence[dict[str, list[float]]]) -> dict[str, pd.DataFrame]:
    """Per metric, the per-epoch mean over seeds of the training value and of the test value.

    `histories` are Keras `History.history` dicts (`loss`, `val_loss`, ...), one per seed. Columns:
    epoch (from 1), train, test, and their sample standard deviations over seeds (0 for one seed).
    """
    curves = {}
    for metric in CURVE_METRICS:
        columns = {"epoch": np.arange(1, len(histories[0][metric]) + 1)}
        for split, key in (("train", metric), ("test", f"val_{metric}")):
            values = np.array([history[key] for history in histories], dtype=np.float64)
            columns[split] = values.mean(axis=0)
            columns[f"{split}_std"] = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
        curves[metric] = pd.DataFrame(columns)
    return curves


def train_head(
    features, y, test_features, test_y, *, task, num_classes, loss_fn, settings: P.TrainParams, seed, log_dir
):
    """Fit one head from a seeded initialisation; logs each epoch to DVCLive in log_dir.

    Returns the model and its Keras history (per-epoch `loss`, `accuracy`, `val_loss`, `val_accuracy`)."""
    import keras
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    seed_everything(seed)
    model = build_head(features, task, num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss=loss_fn,
        metrics=[accuracy_metric(task)],
    )
    live = Live(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    history = model.fit(
        features,
        y,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        shuffle=True,
        validation_data=(test_features, test_y),
        callbacks=[DVCLiveCallback(live=live)],
        verbose=2,
    )
    return model, history.history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--loss", required=True, help="a loss name from train.losses")
    parser.add_argument("--labels", required=True, choices=P.LABEL_SETS)
    args = parser.parse_args(argv)

    raw = P.load_checked_params()
    settings = P.train_params(raw)
    task, seed = P.task(raw), P.seed(raw)
    if args.loss not in settings.losses:
        raise UserError(f"--loss {args.loss!r} is not in train.losses ({', '.join(settings.losses)})")
    from stages.lib.losses import make_loss

    loss_fn = make_loss(args.loss, task, settings.loss_params[args.loss])
    variant = P.variant_name(args.loss, args.labels)

    table, report = read_prepared(task)
    num_classes = len(label_names(report))
    train_ids = table.loc[table["split"] == "train", "id"].to_numpy()
    test_y = targets(table.loc[table["split"] == "test", "label"].to_numpy(), task, num_classes)
    features = load_array(features_path("train"))
    test_features = load_array(features_path("test"))
    if len(features) != len(train_ids) or len(test_features) != len(test_y):
        raise UserError("data/features do not match data/prepared/labels.csv: rerun `dvc repro`")
    label_source = label_file(args.labels)
    label_table = read_csv(label_source)
    # Every seed's labels are checked before the first head trains.
    labels_by_seed = {
        repeat: labels_for_seed(label_table, repeat, train_ids, label_source) for repeat in settings.seeds
    }
    if any(labels.min() < 0 or labels.max() >= num_classes for labels in labels_by_seed.values()):
        raise UserError(f"{label_source}: labels outside [0, {num_classes - 1}]: rerun `dvc repro`")
    import_tensorflow()

    log_root = training_log_dir(variant)
    # DVCLive writes in place, inside the declared output (see the README, "Reliability").
    shutil.rmtree(log_root, ignore_errors=True)  # logs of an earlier, interrupted run
    histories = []
    with atomic_dir(MODELS_DIR / variant) as staging:
        for repeat in settings.seeds:
            print(f"train {variant}: seed {repeat}", file=sys.stderr)
            y = targets(labels_by_seed[repeat], task, num_classes)
            model, history = train_head(
                features,
                y,
                test_features,
                test_y,
                task=task,
                num_classes=num_classes,
                loss_fn=loss_fn,
                settings=settings,
                seed=derived_seed(seed, repeat),
                log_dir=log_root / f"seed_{repeat}",
            )
            model.save(staging / MODEL_FILE.format(seed=repeat))
            histories.append(history)
    with atomic_dir(curves_dir(variant)) as staging:
        for metric, frame in mean_curves(histories).items():
            frame.to_csv(staging / f"{metric}.csv", index=False, lineterminator="\n")


if __name__ == "__main__":
    run_stage("train", main)
