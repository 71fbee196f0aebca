"""How fast is the study? The notebook's method, our pipeline and the floor, timed on the same images.

    python benchmarks/speed.py [--source FOLDER] [--positive-class C] [--images N] [--image-size S]
                               [--train-size T] [--notebook-models N] [--skip-notebook-method]
                               [--protocols like-for-like defaults] [--scaling [--scaling-images M]]

1. The notebook's method: its 11 models (a clean control, then BCE and L1 at each noise level), each a
   Keras model = frozen ResNet50 + sigmoid head trained with model.fit for 5 epochs on a tf.data pipeline
   that reads, decodes and resizes the JPEGs every epoch (no caching), then evaluated on the test images.
   Every model costs the same (same images, epochs and network), so `--notebook-models N` times N of them and
   reports the 11-model figure as measured × 11 / N; `--skip-notebook-method` times only ours and the floor.
2. Our pipeline, from an empty DVC cache in a fresh repo per protocol: `dvc repro` at the first noise level
   (subsample and embed once, every head), then `dvc exp run -S noise=…` for each other level (the noisy
   heads). Two protocols (`--protocols`): `like-for-like`, the notebook's (one repeat, no validation set, so
   one untuned head per variant: 12 heads, the notebook's 11 and an L1 control), and `defaults`, params.yaml's
   (its repeats and tuning grid, chosen on a noisy validation set; the split's sizes
   scaled to --images as tf_flowers' 3,670 are split: 600 training, 300 validation). Both run every stage,
   detection and the paired comparisons included. `--scaling` then times, per protocol, what one more noise
   level, repeat, loss and 1,000 images add (see time_scaling).
3. The floor: one bare forward pass of ResNet50 over every image used (already decoded and resized).
   Any method must compute at least this; no pipeline can do the study with less.

All three use the same images, the same ResNet50 (`--weights`: none, a random init, computes exactly what
ImageNet weights do) and the same batch size; the notebook's method and like-for-like the same train/test split
(the subsample stage's, with `--train-size` training images; by default 6 of 7, the notebook's 600 training /
100 test proportion). Without `--source`, synthetic flower_photos-style JPEGs (toolkit/synthetic.py) of
`--source-size` pixels are generated first. Only the timed parts count; generating, copying and decoding
the images for the floor do not. The last line printed is
`ratios: notebook/like-for-like=X like-for-like/floor=Y defaults/floor=Z` (the parts that ran).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stages.lib.data.images import decode_images, scan_folder  # noqa: E402
from stages.lib.data.split import stratified_split  # noqa: E402

DEFAULT_POSITIVE_CLASS = "sunflowers"
LIKE_FOR_LIKE, DEFAULTS_PROTOCOL = "like-for-like", "defaults"
# The defaults protocol's smallest training and validation sets at tiny sizes: detect's 5 folds need 5 noisy
# labels of each class in the training pool (25 training images, 5 positives, failed at noise 0.1).
MIN_SIZES = {"train_size": 50, "val_size": 10}
LOSSES = ("bce", "l1")
NOISE_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)  # the notebook's study
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
        "--notebook-models",
        type=int,
        help="time only this many of the notebook's models and scale to all of them (default: all)",
    )
    parser.add_argument("--images", type=int, default=350, help="images used in all (default: 350)")
    parser.add_argument("--image-size", type=int, default=96, help="pixels per side fed to ResNet50 (default: 96)")
    parser.add_argument("--train-size", type=int, help="training images (default: 6/7 of --images)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per model (default: 5, the notebook's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weights", default="none", help="ResNet50 weights: none, imagenet or a file (default: none)")
    parser.add_argument(
        "--noise-levels", type=float, nargs="+", default=list(NOISE_LEVELS), help="default: the notebook's five"
    )
    parser.add_argument("--source-size", type=int, default=320, help="side of the synthetic JPEGs (default: 320)")
    parser.add_argument("--workdir", type=Path, help="keep the images and the project here (default: a temp dir)")
    parser.add_argument(
        "--protocols",
        nargs="+",
        choices=(LIKE_FOR_LIKE, DEFAULTS_PROTOCOL),
        default=[LIKE_FOR_LIKE, DEFAULTS_PROTOCOL],
        help="how to run ours: the notebook's protocol, the project's defaults (default: both)",
    )
    parser.add_argument(
        "--skip-notebook-method",
        action="store_true",
        help="time only ours and the floor (the notebook's method takes hours)",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="also time what one more noise level, repeat, loss and 1,000 images add (more runs of ours)",
    )
    parser.add_argument(
        "--scaling-images", type=int, help="--scaling: the smaller study's images (default: half of --images)"
    )
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
    if args.scaling and len(args.noise_levels) < 2:
        parser.error("--scaling: give at least two --noise-levels (a level's cost is the mean of the later ones)")
    if args.scaling_images is None:
        args.scaling_images = max(args.images // 2, sum(MIN_SIZES.values()) + 5)
    if args.scaling and not 10 <= args.scaling_images < args.images:
        parser.error("--scaling-images: at least 10 and fewer than --images")
    total = len(notebook_models(args.noise_levels))
    if args.notebook_models is None:
        args.notebook_models = total
    if not 1 <= args.notebook_models <= total:
        parser.error(f"--notebook-models: 1 to {total} (the notebook's study has {total} models at these noise levels)")
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
    from toolkit.synthetic import CLASS_COLOURS, make_flower_folder

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
        decoded = decode_images(paths, image_size)
        self.pixels, good = decoded.pixels, decoded.good
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
    from stages.lib.backbone.resnet import build_backbone, preprocess

    model = build_backbone(weights, study.image_size)
    batches = [preprocess(study.pixels[i : i + batch_size]) for i in range(0, len(study.pixels), batch_size)]
    model.predict_on_batch(batches[0])  # traces the function: not part of a forward pass
    started = time.perf_counter()
    for batch in batches:
        model.predict_on_batch(batch)
    return time.perf_counter() - started


# --- 1. the notebook's method -----------------------------------------------------------------------


def notebook_models(levels: list[float]) -> list[tuple[str, float]]:
    """(loss, noise) of the notebook's models: a clean BCE control, then each loss at each level."""
    return [("bce", 0.0)] + [(loss, level) for loss in LOSSES for level in levels]


def time_notebook_method(
    study: Study, weights: str, epochs: int, batch_size: int, levels: list[float], count: int
) -> list[float]:
    """Seconds per model of the notebook's method for the first `count` models of notebook_models(levels)."""
    import keras
    import tensorflow as tf

    from stages.lib.backbone.resnet import resolve_weights
    from stages.lib.noise.models import corrupt_labels

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
        # Parallel decoding and prefetching: more than the notebook did, to time its method at its best.
        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    clean = study.labels[study.train].astype(np.int64)
    rng = np.random.default_rng(SEED)
    seconds = []
    for loss, level in notebook_models(levels)[:count]:
        labels = clean if level == 0 else corrupt_labels(clean, 2, level, "notebook", rng)
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

# The project's defaults for what the notebook's protocol changes (epochs, repeats, how the epoch is chosen,
# a validation set), read from params.yaml. tf_flowers' 3,670 images give the default split's proportions.
DEFAULTS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
TF_FLOWERS_IMAGES = 3670
EXTRA_LOSS = "gce"  # the loss the scaling runs add


@dataclass(frozen=True)
class Protocol:
    """How our pipeline is run: its name, what it means, and the params that set it."""

    name: str
    description: str
    params: dict

    def heads(self, levels: int) -> int:
        """Heads trained in the study: each loss on clean labels once, on noisy labels once per level."""
        train = self.params["train"]
        return len(train["losses"]) * (1 + levels) * len(train["seeds"])


def protocol(name: str, args: argparse.Namespace, images: int, train_size: int) -> Protocol:
    data = {"image_size": args.image_size, "test_size": None, "positive_class": args.positive_class}
    model = {"weights": args.weights, "embed_batch_size": args.batch_size, "fine_tune": False}
    if name == LIKE_FOR_LIKE:
        # The notebook's protocol: one repeat, its epochs, no validation set, the last epoch's model.
        train = {"epochs": args.epochs, "select_epoch": "last", "batch_size": args.batch_size, "seeds": [SEED]}
        data |= {"train_size": train_size, "val_size": 0}
        description = "the notebook's protocol: 1 repeat, no validation set, one untuned head per variant"
    else:
        # params.yaml's training and split; the split's sizes scaled to these images as tf_flowers' 3,670 are split.
        defaults = DEFAULTS["train"]
        train = {key: defaults[key] for key in ("epochs", "select_epoch", "batch_size", "seeds")}
        scale = min(1.0, images / TF_FLOWERS_IMAGES)
        sizes = {key: max(least, round(DEFAULTS["data"][key] * scale)) for key, least in MIN_SIZES.items()}
        data |= sizes
        description = (
            f"the project's defaults: {len(train['seeds'])} repeats, the grid point chosen on "
            f"{sizes['val_size']} validation images, {sizes['train_size']} training images"
        )
    train["losses"] = list(LOSSES)
    return Protocol(name, description, {"noise": args.noise_levels[0], "data": data, "model": model, "train": train})


def exp_run(project: Path, noise: float, train: dict) -> float:
    """Seconds of one `dvc exp run` at this noise level with these repeats and losses (set every time: -S
    changes persist in the workspace)."""
    from toolkit.project import dvc

    seeds, losses = ",".join(map(str, train["seeds"])), ",".join(train["losses"])
    started = time.perf_counter()
    dvc(project, "exp", "run", "-S", f"noise={noise}", "-S", f"train.seeds=[{seeds}]", "-S", f"train.losses=[{losses}]")
    return time.perf_counter() - started


def time_our_pipeline(images: Path, project: Path, study: Protocol, levels: list[float]) -> list[tuple[str, float]]:
    """(step, seconds) of the whole study through DVC, from a fresh repo with an empty cache."""
    from toolkit.project import dvc, make_project, run

    make_project(project, images, study.params | {"noise": levels[0]})
    steps = []
    started = time.perf_counter()
    dvc(project, "repro")
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "study at the first noise level")
    steps.append((f"dvc repro (noise={levels[0]})", time.perf_counter() - started))
    for level in levels[1:]:
        steps.append((f"dvc exp run -S noise={level}", exp_run(project, level, study.params["train"])))
    return steps


def unused_levels(levels: list[float], count: int) -> list[float]:
    """Noise levels the sweep did not run, for steps that must rerun what a new level reruns."""
    candidates = [round(0.05 + 0.1 * i, 2) for i in range(10)] + [round(0.01 * i, 2) for i in range(1, 100)]
    return [level for level in dict.fromkeys(candidates) if level not in levels][:count]


@dataclass(frozen=True)
class Scaling:
    per_level: float
    per_repeat: float
    per_loss: float
    per_1000_images: float
    smaller_images: int


def time_scaling(
    project: Path,
    study: Protocol,
    steps: list[tuple[str, float]],
    levels: list[float],
    smaller: tuple[Path, int, Protocol],
    images: int,
) -> Scaling:
    """What one more noise level, repeat, loss or 1,000 images add to the study, each as a difference of two runs.

    A level: the mean `dvc exp run -S noise=…` of the sweep. A repeat: a new level's `dvc exp run` with one
    more seed, minus the mean level. A loss: a new level's run with that seed and EXTRA_LOSS too, minus the
    repeat's run (so it is a loss at one repeat more than the protocol's). The clean-label heads these runs
    need are computed first, untimed, so each timed run reruns what a new level reruns. Images: the study
    again in a fresh repo on fewer images (`smaller`: the same protocol; its first `dvc repro` and one level
    timed, the other levels taken as that one).
    """
    level_steps = [seconds for _, seconds in steps[1:]]
    per_level = sum(level_steps) / len(level_steps)
    train = study.params["train"]
    more_seeds = train | {"seeds": [*train["seeds"], max(train["seeds"]) + 1]}
    more_losses = more_seeds | {"losses": [*train["losses"], EXTRA_LOSS]}
    repeat_level, loss_level = unused_levels(levels, 2)
    exp_run(project, levels[0], more_losses)  # untimed: the clean heads of the extra seed and the extra loss
    with_repeat = exp_run(project, repeat_level, more_seeds)
    with_loss = exp_run(project, loss_level, more_losses)
    per_repeat, per_loss = with_repeat - per_level, with_loss - with_repeat

    small_images, small_count, small_protocol = smaller
    small_steps = time_our_pipeline(
        small_images, project.parent / f"{project.name}-smaller", small_protocol, levels[:2]
    )
    small_study = small_steps[0][1] + small_steps[1][1] * (len(levels) - 1)
    ours = sum(seconds for _, seconds in steps)
    per_1000 = (ours - small_study) / (images - small_count) * 1000
    return Scaling(per_level, per_repeat, per_loss, per_1000, small_count)


# --- report -------------------------------------------------------------------------------------


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    from stages.lib.core.tf_import import import_tensorflow

    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), {len(gpus)} GPUs, TensorFlow {tf.__version__}, "
        f"Python {platform.python_version()}"
    )


def scaled_train_size(images: int, args: argparse.Namespace) -> int:
    """The like-for-like training set for fewer images: --train-size's share of --images, a test image per class."""
    return max(5, min(round(args.train_size * images / args.images), images - 5))


def check_fits(study: Protocol, images: int, option: str) -> None:
    data = study.params["data"]
    if data["train_size"] + data["val_size"] + 5 > images:
        raise SystemExit(
            f"{option} {images}: too few for the {study.name} protocol's {data['train_size']} training and "
            f"{data['val_size']} validation images and a test image per class"
        )


def print_study(study: Protocol, steps: list[tuple[str, float]], levels: int) -> float:
    ours = sum(seconds for _, seconds in steps)
    print(f"ours, {study.name} ({study.description}):", flush=True)
    print(f"  the study through DVC ({study.heads(levels)} heads): {ours:.1f} s", flush=True)
    for step, seconds in steps:
        print(f"  {step}: {seconds:.1f} s", flush=True)
    return ours


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="speed-") as scratch:
        workdir = args.workdir or Path(scratch)
        if args.workdir and workdir.exists():
            raise SystemExit(f"--workdir {workdir}: already exists; give a new folder")
        source = args.source or synthetic_images(args.images, args.source_size, workdir / "source")
        images = pick_images(source, args.images, workdir / "images")
        studies = [protocol(name, args, args.images, args.train_size) for name in args.protocols]
        for study in studies:
            check_fits(study, args.images, "--images")
        smaller = {}
        if args.scaling:
            small_images = pick_images(source, args.scaling_images, workdir / "images-smaller")
            for study in studies:
                # Like for like: the same share of the images trains. Defaults: the same split sizes, fewer tested.
                count = args.scaling_images
                small = protocol(study.name, args, args.images, scaled_train_size(count, args))
                check_fits(small, count, "--scaling-images")
                smaller[study.name] = (small_images, count, small)
        study_images = Study(images, args.image_size, args.train_size, args.positive_class)
        print(
            f"benchmark: {len(study_images.paths)} images ({len(study_images.train)} train, "
            f"{len(study_images.test)} test) at {args.image_size} px from "
            f"{args.source or f'synthetic {args.source_size} px JPEGs'}; ResNet50 weights {args.weights}; "
            f"{args.epochs} epochs; batch {args.batch_size}",
            flush=True,
        )
        print(f"machine: {machine()}", flush=True)

        floor = time_floor(study_images, args.weights, args.batch_size)
        print(f"floor: one forward pass over {len(study_images.paths)} images: {floor:.1f} s", flush=True)

        levels = args.noise_levels
        floor_per_1000 = floor / len(study_images.paths) * 1000
        ours = {}
        for study in studies:
            project = workdir / f"project-{study.name}"
            steps = time_our_pipeline(images, project, study, levels)
            ours[study.name] = print_study(study, steps, len(levels))
            if args.scaling:
                grows = time_scaling(project, study, steps, levels, smaller[study.name], args.images)
                print(
                    f"scaling, {study.name}: {grows.per_level:+.1f} s per noise level, {grows.per_repeat:+.1f} s "
                    f"per repeat, {grows.per_loss:+.1f} s per loss, {grows.per_1000_images:+.1f} s per 1,000 images "
                    f"({args.images} vs {grows.smaller_images} images; the floor: {floor_per_1000:+.1f} s)",
                    flush=True,
                )

        ratios = {f"{name}/floor": seconds / floor for name, seconds in ours.items()}
        if not args.skip_notebook_method:
            per_model = time_notebook_method(
                study_images, args.weights, args.epochs, args.batch_size, levels, args.notebook_models
            )
            models = len(notebook_models(levels))
            notebook = sum(per_model) * models / len(per_model)
            scaled = (
                ""
                if len(per_model) == models
                else f", scaled from {len(per_model)} timed: {sum(per_model):.1f} s × {models} / {len(per_model)}"
            )
            print(
                f"notebook's method: {models} models × {args.epochs} epochs, JPEGs decoded every epoch: "
                f"{notebook:.1f} s ({notebook / models:.1f} s per model{scaled})",
                flush=True,
            )
            if LIKE_FOR_LIKE in ours:
                ratios = {f"notebook/{LIKE_FOR_LIKE}": notebook / ours[LIKE_FOR_LIKE], **ratios}
        print("ratios: " + " ".join(f"{name}={ratio:.2f}" for name, ratio in ratios.items()))


if __name__ == "__main__":
    main()
