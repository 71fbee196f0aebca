"""How fast is the study? The seed's method, our pipeline and the floor, timed on the same images.

    python benchmarks/speed.py [--source FOLDER] [--positive-class C] [--images N] [--image-size S]
                               [--train-size T] [--seed-models N]

1. The seed's method: its 11 models (a clean control, then BCE and L1 at each noise level), each a
   Keras model = frozen ResNet50 + sigmoid head trained with model.fit for 5 epochs on a tf.data pipeline
   that reads, decodes and resizes the JPEGs every epoch (no caching), then evaluated on the test images.
   Every model costs the same (same images, epochs and network), so `--seed-models N` times N of them and
   reports the 11-model figure as measured × 11 / N, which fits a run at the real size in about 20 minutes.
2. Our pipeline, from an empty DVC cache in a fresh repo: `dvc repro` at the first noise level (subsample
   and embed once, 4 heads), then `dvc exp run -S noise=…` for each other level (2 noisy heads each):
   12 heads, the seed's 11 models and one more (an L1 control).
3. The floor: one bare forward pass of ResNet50 over every image used (already decoded and resized).
   Any method must compute at least this; no pipeline can do the study with less.

All three use the same images and the same train/test split (the subsample stage's, with `--train-size`
training images; by default 6 of 7, the seed's 600 training / 100 test proportion), the same ResNet50
(`--weights`: none, a random init, computes exactly what ImageNet weights do) and the same batch size.
Without `--source`, synthetic flower_photos-style JPEGs (tests/synthetic.py) of `--source-size` pixels
are generated first. Only the three timed parts count; generating, copying and decoding the images for
the floor do not. The last line printed is `ratios: seed/ours=X ours/floor=Y`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stages.lib.images import decode_images, scan_folder  # noqa: E402
from stages.lib.split import stratified_split  # noqa: E402

DEFAULT_POSITIVE_CLASS = "sunflowers"
LOSSES = ("bce", "l1")
NOISE_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)  # the seed's study
SEED = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="a flower_photos-style folder (default: synthetic images)")
    parser.add_argument(
        "--positive-class",
        default=DEFAULT_POSITIVE_CLASS,
        help=f"the class folder that is the positive label (default: {DEFAULT_POSITIVE_CLASS})",
    )
    parser.add_argument(
        "--seed-models",
        type=int,
        help="time only this many of the seed's models and scale to all of them (default: all)",
    )
    parser.add_argument("--images", type=int, default=350, help="images used in all (default: 350)")
    parser.add_argument("--image-size", type=int, default=96, help="pixels per side fed to ResNet50 (default: 96)")
    parser.add_argument("--train-size", type=int, help="training images (default: 6/7 of --images)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per model (default: 5, the seed's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weights", default="none", help="ResNet50 weights: none, imagenet or a file (default: none)")
    parser.add_argument(
        "--noise-levels", type=float, nargs="+", default=list(NOISE_LEVELS), help="default: the seed's five"
    )
    parser.add_argument("--source-size", type=int, default=320, help="side of the synthetic JPEGs (default: 320)")
    parser.add_argument("--workdir", type=Path, help="keep the images and the project here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.images < 10:
        parser.error("--images: at least 10")
    if args.train_size is None:
        # The stratified split needs a test image per class (tf_flowers has 5).
        args.train_size = min(round(args.images * 6 / 7), args.images - 5)
    if not 5 <= args.train_size < args.images:
        parser.error("--train-size: at least 5 and fewer than --images")
    if not 32 <= args.image_size <= 1024:
        parser.error("--image-size: 32 to 1024")
    total = len(seed_models(args.noise_levels))
    if args.seed_models is None:
        args.seed_models = total
    if not 1 <= args.seed_models <= total:
        parser.error(f"--seed-models: 1 to {total} (the seed's study has {total} models at these noise levels)")
    return args


# --- the images ---------------------------------------------------------------------------------


def pick_images(source: Path, count: int, target: Path) -> Path:
    """Copy a class-stratified sample of `count` images of source into target/<class>/."""
    scan = scan_folder(source)
    classes = [name for _, name in scan.images]
    if count > len(classes):
        raise SystemExit(f"--images {count}: {source} holds only {len(classes)} images")
    chosen = range(len(classes)) if count == len(classes) else stratified_split(classes, count, None, SEED)[0]
    for index in chosen:
        relative = scan.images[index][0]
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(scan.root / relative, target / relative)
    return target


def synthetic_images(count: int, size: int, target: Path) -> Path:
    from tests.synthetic import CLASS_COLOURS, make_flower_folder

    per_class = -(-count // len(CLASS_COLOURS))  # enough for a stratified sample of `count`
    return make_flower_folder(target, per_class=per_class, size=size, seed=SEED)


class Study:
    """The images every method uses: paths, binary labels, the split, and the decoded pixels."""

    def __init__(self, folder: Path, image_size: int, train_size: int, positive_class: str) -> None:
        scan = scan_folder(folder)
        if positive_class not in scan.classes:
            raise SystemExit(f"--positive-class {positive_class}: not a class of {folder} ({', '.join(scan.classes)})")
        paths = [scan.root / relative for relative, _ in scan.images]
        # Decoded as the subsample stage decodes them; only images it can read take part.
        self.pixels, good, _ = decode_images(paths, image_size)
        self.paths = [str(paths[i]) for i in good]
        classes = [scan.images[i][1] for i in good]
        if len(classes) - train_size < len(set(classes)):
            count = len(set(classes))
            raise SystemExit(f"--train-size {train_size}: leaves fewer test images than the {count} classes")
        self.labels = np.array([int(name == positive_class) for name in classes], dtype=np.float32)
        self.train, _, self.test = stratified_split(classes, train_size, None, SEED)  # the subsample stage's split
        self.image_size = image_size


# --- 3. the floor -------------------------------------------------------------------------------


def time_floor(study: Study, weights: str, batch_size: int) -> float:
    """Seconds for one forward pass of ResNet50 over every image, decoded and preprocessed beforehand."""
    from stages.lib.backbone import build_backbone, preprocess

    model = build_backbone(weights, study.image_size)
    batches = [preprocess(study.pixels[i : i + batch_size]) for i in range(0, len(study.pixels), batch_size)]
    model.predict_on_batch(batches[0])  # traces the function: not part of a forward pass
    started = time.perf_counter()
    for batch in batches:
        model.predict_on_batch(batch)
    return time.perf_counter() - started


# --- 1. the seed's method -----------------------------------------------------------------------


def seed_models(levels: list[float]) -> list[tuple[str, float]]:
    """(loss, noise) of the seed's models: a clean BCE control, then each loss at each level."""
    return [("bce", 0.0)] + [(loss, level) for loss in LOSSES for level in levels]


def time_seed_method(
    study: Study, weights: str, epochs: int, batch_size: int, levels: list[float], count: int
) -> list[float]:
    """Seconds per model of the seed's method for the first `count` models of seed_models(levels)."""
    import keras
    import tensorflow as tf

    from stages.lib.backbone import resolve_weights
    from stages.lib.noise import corrupt_labels

    size = study.image_size

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(image, (size, size))
        return keras.applications.resnet50.preprocess_input(image), label

    def jpeg_pipeline(indices: np.ndarray, labels: np.ndarray, shuffle: bool):
        paths = [study.paths[i] for i in indices]
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels.astype(np.float32)))
        if shuffle:
            dataset = dataset.shuffle(len(paths), seed=SEED, reshuffle_each_iteration=True)
        # Parallel decoding and prefetching: more than the seed did, to time its method at its best.
        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    clean = study.labels[study.train].astype(np.int64)
    rng = np.random.default_rng(SEED)
    seconds = []
    for loss, level in seed_models(levels)[:count]:
        labels = clean if level == 0 else corrupt_labels(clean, 2, level, "seed", rng)
        started = time.perf_counter()
        backbone = keras.applications.ResNet50(
            include_top=False, weights=resolve_weights(weights), input_shape=(size, size, 3), pooling="avg"
        )
        backbone.trainable = False
        model = keras.Sequential([keras.Input((size, size, 3)), backbone, keras.layers.Dense(1, activation="sigmoid")])
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="binary_crossentropy" if loss == "bce" else "mean_absolute_error",
            metrics=["accuracy"],
        )
        # shuffle=False: the pipeline shuffles (Keras ignores the flag for a tf.data input, with a warning).
        model.fit(jpeg_pipeline(study.train, labels, shuffle=True), epochs=epochs, shuffle=False, verbose=0)
        model.evaluate(jpeg_pipeline(study.test, study.labels[study.test], shuffle=False), verbose=0)
        seconds.append(time.perf_counter() - started)
        keras.backend.clear_session()
    return seconds


# --- 2. our pipeline ----------------------------------------------------------------------------


def time_our_pipeline(images: Path, project: Path, args: argparse.Namespace) -> list[tuple[str, float]]:
    """(step, seconds) of the whole study through DVC, from a fresh repo with an empty cache."""
    from tests.project import dvc, make_project, run

    params = {
        "noise": args.noise_levels[0],
        # Like for like with the seed's method: no validation set, the last epoch's model.
        "data": {
            "image_size": args.image_size,
            "train_size": args.train_size,
            "val_size": 0,
            "test_size": None,
            "positive_class": args.positive_class,
        },
        "model": {"weights": args.weights, "embed_batch_size": args.batch_size, "fine_tune": False},
        "train": {
            "losses": list(LOSSES),
            "epochs": args.epochs,
            "select_epoch": "last",
            "batch_size": args.batch_size,
            "seeds": [SEED],
        },
    }
    make_project(project, images, params)
    steps = []
    started = time.perf_counter()
    dvc(project, "repro")
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "study at the first noise level")
    steps.append((f"dvc repro (noise={args.noise_levels[0]})", time.perf_counter() - started))
    for level in args.noise_levels[1:]:
        started = time.perf_counter()
        dvc(project, "exp", "run", "-S", f"noise={level}")
        steps.append((f"dvc exp run -S noise={level}", time.perf_counter() - started))
    return steps


# --- report -------------------------------------------------------------------------------------


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    from stages.lib.tf_import import import_tensorflow

    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), {len(gpus)} GPUs, TensorFlow {tf.__version__}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="speed-") as scratch:
        workdir = args.workdir or Path(scratch)
        if args.workdir and workdir.exists():
            raise SystemExit(f"--workdir {workdir}: already exists; give a new folder")
        source = args.source or synthetic_images(args.images, args.source_size, workdir / "source")
        images = pick_images(source, args.images, workdir / "images")
        study = Study(images, args.image_size, args.train_size, args.positive_class)
        print(
            f"benchmark: {len(study.paths)} images ({len(study.train)} train, {len(study.test)} test) at "
            f"{args.image_size} px from {args.source or f'synthetic {args.source_size} px JPEGs'}; "
            f"ResNet50 weights {args.weights}; {args.epochs} epochs; batch {args.batch_size}",
            flush=True,
        )
        print(f"machine: {machine()}", flush=True)

        floor = time_floor(study, args.weights, args.batch_size)
        print(f"floor: one forward pass over {len(study.paths)} images: {floor:.1f} s", flush=True)

        steps = time_our_pipeline(images, workdir / "project", args)
        ours = sum(seconds for _, seconds in steps)
        heads = len(LOSSES) * 2 + len(LOSSES) * (len(args.noise_levels) - 1)
        print(f"ours: the study through DVC ({heads} heads): {ours:.1f} s", flush=True)
        for step, seconds in steps:
            print(f"  {step}: {seconds:.1f} s", flush=True)

        per_model = time_seed_method(
            study, args.weights, args.epochs, args.batch_size, args.noise_levels, args.seed_models
        )
        models = len(seed_models(args.noise_levels))
        seed = sum(per_model) * models / len(per_model)
        scaled = (
            ""
            if len(per_model) == models
            else f", scaled from {len(per_model)} timed: {sum(per_model):.1f} s × {models} / {len(per_model)}"
        )
        print(
            f"seed's method: {models} models × {args.epochs} epochs, JPEGs decoded every epoch: "
            f"{seed:.1f} s ({seed / models:.1f} s per model{scaled})",
            flush=True,
        )
        print(f"ratios: seed/ours={seed / ours:.2f} ours/floor={ours / floor:.2f}")


if __name__ == "__main__":
    main()
