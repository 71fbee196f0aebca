"""Stage 5: train one variant (a loss on clean or noisy labels), once per repeat seed.

`python -m stages.train --loss bce --labels noisy` trains that variant for every seed in `train.seeds`
and writes models/<loss>-<labels>/seed_<s>.npz (a head) or seed_<s>.keras (a fine-tuned ResNet50), the
model's predictions on the test set beside it
(test_scores_seed_<s>.npy, what the evaluate stage scores), per-epoch DVCLive logs in
metrics/train/<loss>-<labels>/seed_<s>/, and the mean curves over seeds in
metrics/curves/<loss>-<labels>/{loss,accuracy}.csv (what `dvc plots show` draws). Every variant shares
the inputs, the model, the optimiser, the schedule and (per seed) the initial weights; only the labels
and the loss differ.

Two modes, by `model.fine_tune`:
- false (default): the head alone, on the backbone features the embed stage cached, trained in NumPy
  (stages.lib.linear_head): the process never loads TensorFlow, which would take longer than the training.
- true: ResNet50 itself (`model.trainable_blocks` of it) with the head, on the prepared images through
  a tf.data pipeline; on every visible GPU, in mixed precision where they support it (stages.lib.runtime).

The per-epoch test (`eval`) curves are measured on the test set with its true labels, to show how fitting the
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
from stages.lib.backbone import build_backbone, derived_seed, seed_everything
from stages.lib.errors import UserError, run_stage
from stages.lib.head import (
    HEAD_FILE,
    MODEL_FILE,
    SCORES_FILE,
    accuracy_metric,
    build_head,
    labels_for_seed,
    targets,
)
from stages.lib.io import (
    LABELS_TABLE,
    METRICS_DIR,
    MODELS_DIR,
    atomic_dir,
    features_path,
    images_path,
    label_file,
    label_names,
    load_array,
    read_csv,
    read_prepared,
    save_array,
)
from stages.lib.linear_head import LinearHead, fit_linear_head
from stages.lib.runtime import Runtime
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


def live_logger(log_dir: Path):
    """A DVCLive logger writing into log_dir only (dvc.yaml declares the plots itself)."""
    from dvclive import Live

    return Live(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False, report=None)


def live_callback(log_dir: Path):
    """DVCLive's Keras callback, for fine-tuning."""
    from dvclive.keras import DVCLiveCallback

    return DVCLiveCallback(live=live_logger(log_dir))


def train_head(
    features: np.ndarray,
    y: np.ndarray,
    test_features: np.ndarray,
    test_y: np.ndarray,
    *,
    task: str,
    loss: str,
    settings: P.TrainParams,
    seed: int,
    log_dir: Path,
) -> tuple[LinearHead, dict[str, list[float]]]:
    """Fit one head from a seeded initialisation, logging each epoch to DVCLive in log_dir under the
    names DVCLive's Keras callback uses in fine-tuning (train/loss, eval/loss, ...). Returns the head and
    its history (per-epoch `loss`, `accuracy`, `val_loss`, `val_accuracy`)."""
    from dvclive.utils import standardize_metric_name

    live = live_logger(log_dir)

    def log_epoch(epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            live.log_metric(standardize_metric_name(name, "dvclive.keras"), value)
        live.next_step()
        print(f"epoch {epoch + 1}/{settings.epochs}: " + " ".join(f"{k} {v:.4f}" for k, v in values.items()))

    head, history = fit_linear_head(
        features,
        y,
        test_features,
        test_y,
        task=task,
        loss=loss,
        loss_params=settings.loss_params[loss],
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        seed=seed,
        on_epoch=log_epoch,
    )
    live.end()
    return head, history


def fine_tune(
    images: np.ndarray,
    y: np.ndarray,
    test_images: np.ndarray,
    test_y: np.ndarray,
    *,
    task: str,
    num_classes: int,
    loss_fn,
    settings: P.TrainParams,
    model_params: P.ModelParams,
    runtime: Runtime,
    strategy,
    backbone_seed: int,
    seed: int,
    log_dir: Path,
) -> tuple[object, np.ndarray, dict[str, list[float]]]:
    """Fine-tune ResNet50 and the head from a seeded start; returns the model, its test-set scores and
    its Keras history.

    The backbone starts as the embed stage's would (`model.weights`; a random init is drawn from
    backbone_seed, the global seed), the head from `seed`, as in head mode.
    """
    import keras

    from stages.lib.datasets import image_pipeline
    from stages.lib.finetune import (
        TrainingClock,
        backbone_features,
        build_fine_tune_model,
        predict_scores,
        set_trainable_blocks,
        throughput,
    )
    from stages.lib.runtime import apply_precision

    deterministic = not runtime.xla
    keras.backend.clear_session()  # the previous seed's model and graphs
    apply_precision(runtime)
    seed_everything(backbone_seed, deterministic)
    with strategy.scope():
        backbone = build_backbone(model_params.weights, image_size=images.shape[1])
    # The head standardises the untrained backbone's features, as in head mode.
    start_features = backbone_features(backbone, images, settings.batch_size)
    seed_everything(seed, deterministic)
    with strategy.scope():
        set_trainable_blocks(backbone, model_params.trainable_blocks)
        model = build_fine_tune_model(backbone, build_head(start_features, task, num_classes))
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
            loss=loss_fn,
            metrics=[accuracy_metric(task)],
            jit_compile=runtime.xla,
        )
    clock = TrainingClock()
    history = model.fit(
        image_pipeline(images, y, batch_size=settings.batch_size, shuffle_seed=seed, augment=settings.augment),
        epochs=settings.epochs,
        validation_data=image_pipeline(test_images, test_y, batch_size=settings.batch_size),
        callbacks=[clock, live_callback(log_dir)],
        shuffle=False,  # ignored for a tf.data input (the pipeline shuffles); False silences Keras' warning
        verbose=2,
    )
    print(f"fine-tuning on {len(images)} images: {throughput(len(images), clock.seconds)}", file=sys.stderr)
    return model, predict_scores(model, test_images, task, settings.batch_size), history.history


def select_fine_tune_runtime(settings: P.TrainParams) -> tuple[Runtime, object]:
    from stages.lib.runtime import distribution_strategy, select_runtime, visible_gpus

    runtime = select_runtime(settings.mixed_precision, settings.xla, settings.batch_size, visible_gpus())
    return runtime, distribution_strategy(runtime)


def check_rows(path: Path, rows: int, expected: int) -> None:
    if rows != expected:
        raise UserError(f"{path} has {rows} rows but {LABELS_TABLE} lists {expected} images: rerun `dvc repro`")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--loss", required=True, help="a loss name from train.losses")
    parser.add_argument("--labels", required=True, choices=P.LABEL_SETS)
    args = parser.parse_args(argv)

    raw = P.load_checked_params()
    settings, model_params = P.train_params(raw), P.model_params(raw)
    task, seed = P.task(raw), P.seed(raw)
    if args.loss not in settings.losses:
        raise UserError(f"--loss {args.loss!r} is not in train.losses ({', '.join(settings.losses)})")
    if not model_params.fine_tune and (problem := P.fine_tune_settings_in_head_mode(settings)):
        raise UserError(problem)
    variant = P.variant_name(args.loss, args.labels)

    table, report = read_prepared(task)
    num_classes = len(label_names(report))
    train_ids = table.loc[table["split"] == "train", "id"].to_numpy()
    test_y = targets(table.loc[table["split"] == "test", "label"].to_numpy(), task, num_classes)
    # Fine-tuning reads the images (memory-mapped: the pipeline caches them); a head, the cached features.
    input_path = images_path if model_params.fine_tune else features_path
    train_inputs = load_array(input_path("train"), mmap=model_params.fine_tune)
    test_inputs = load_array(input_path("test"), mmap=model_params.fine_tune)
    check_rows(input_path("train"), len(train_inputs), len(train_ids))
    check_rows(input_path("test"), len(test_inputs), len(test_y))
    if model_params.fine_tune:
        import_tensorflow()  # quietly, before anything else loads it
        runtime, strategy = select_fine_tune_runtime(settings)
        print(f"train {variant}: fine-tuning ResNet50 on the images; {runtime.describe()}", file=sys.stderr)
    else:
        print(f"train {variant}: a head on the cached features; NumPy on the CPU; float32", file=sys.stderr)
    label_source = label_file(args.labels)
    label_table = read_csv(label_source)
    # Every seed's labels are checked before the first head trains.
    labels_by_seed = {
        repeat: labels_for_seed(label_table, repeat, train_ids, label_source) for repeat in settings.seeds
    }
    if any(labels.min() < 0 or labels.max() >= num_classes for labels in labels_by_seed.values()):
        raise UserError(f"{label_source}: labels outside [0, {num_classes - 1}]: rerun `dvc repro`")

    log_root = training_log_dir(variant)
    # DVCLive writes in place, inside the declared output (see the README, "Reliability").
    shutil.rmtree(log_root, ignore_errors=True)  # logs of an earlier, interrupted run
    histories = []
    with atomic_dir(MODELS_DIR / variant) as staging:
        for repeat in settings.seeds:
            print(f"train {variant}: seed {repeat}", file=sys.stderr)
            y = targets(labels_by_seed[repeat], task, num_classes)
            log_dir = log_root / f"seed_{repeat}"
            if model_params.fine_tune:
                from stages.lib.losses import make_loss

                model, scores, history = fine_tune(
                    train_inputs,
                    y,
                    test_inputs,
                    test_y,
                    task=task,
                    num_classes=num_classes,
                    loss_fn=make_loss(args.loss, task, settings.loss_params[args.loss]),
                    settings=settings,
                    model_params=model_params,
                    runtime=runtime,
                    strategy=strategy,
                    backbone_seed=seed,
                    seed=derived_seed(seed, repeat),
                    log_dir=log_dir,
                )
                model.save(staging / MODEL_FILE.format(seed=repeat))
            else:
                head, history = train_head(
                    train_inputs,
                    y,
                    test_inputs,
                    test_y,
                    task=task,
                    loss=args.loss,
                    settings=settings,
                    seed=derived_seed(seed, repeat),
                    log_dir=log_dir,
                )
                scores = head.predict_proba(test_inputs)
                head.save(staging / HEAD_FILE.format(seed=repeat))
            save_array(staging / SCORES_FILE.format(seed=repeat), scores.astype(np.float32))
            histories.append(history)
    with atomic_dir(curves_dir(variant)) as staging:
        for metric, frame in mean_curves(histories).items():
            frame.to_csv(staging / f"{metric}.csv", index=False, lineterminator="\n")


if __name__ == "__main__":
    run_stage("train", main)
