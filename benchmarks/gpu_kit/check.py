"""The GPU check of the kit: what the machine is, how fast ResNet50 embeds and trains on the digits at 224 px,
whether its numbers equal the CPU's, and the train stage of the study's fine-tuning itself, timed — on the
Keras backend of KERAS_BACKEND (jax where there is no TensorFlow). Each figure on its own line, `name: value`,
printed as it is measured: a check stopped by its time limit keeps what it printed.

    python benchmarks/gpu_kit/check.py [--image-size 224] [--study-size 224] [--study-seeds 2] ...

The data: the digits as the pipeline prepares them (benchmarks/gpu_kit/digits.py, made where the kit is
prepared: 600 training, 300 validation, 897 test images, positive class 8, the default noise), at 32 px,
each pixel repeated to reach the size asked for (the scans are 8×8). ResNet50's weights: a random init, the
same computation as ImageNet's weights and no download.

1. versions: Python, Keras, the backend and its accelerator libraries, the GPUs (backend and nvidia-smi);
2. embed: images/s through the frozen ResNet50, float32 and mixed_bfloat16 (features float32 either way);
3. training: images/s of a training epoch (every block trained, Adam, XLA), float32 and mixed_bfloat16, per
   batch size (the first epoch, which compiles, left out);
4. equality: the same computations in a process on the GPU and in one on the CPU (JAX_PLATFORMS=cpu),
   float32 at JAX's highest matmul precision: embed features at --image-size, and the fine-tuning trainer's
   test P(positive) after two epochs at 32 px (64 training images), each against its stated tolerance;
5. study: the train stage (stages.train, DVCLive replaced by a stand-in: the kit has no DVC) of one variant
   of the default fine-tuning study on the digits at --study-size: LP-FT, the default grid and epochs,
   mixed precision as `auto` chooses; seed 0 (compiling) and seed 1 timed, and from them the wall time of
   the default study (2 losses x 2 label sets x 10 seeds) estimated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import types
from importlib import metadata
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))
from benchmarks.gpu_kit.digits import COPIED, IMAGES_FILE  # noqa: E402  (the project's root on the path first)

DIGITS = Path(__file__).resolve().parent / "digits"  # prepare.sh puts benchmarks/gpu_kit/digits.py's output here
PREPARED_SIZE = 32
# Stated before any GPU run (docs/fine-tuning.md, "The GPU check"): float32 on both devices, highest matmul
# precision. Features: convolution algorithms differ, ~1e-6 of the largest value expected (TensorFlow and JAX
# on one CPU differ by 7.5e-6 of the largest logit: tests/unit/tf/test_finetune_backends.py). Fine-tuning:
# two epochs of Adam can amplify rounding (its step is the gradient's sign where gradients are tiny).
FEATURE_TOLERANCE = 1e-4  # of the largest |feature|
SCORE_TOLERANCE = 1e-3  # absolute, on P(positive)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224, help="embed, training and equality (default 224)")
    parser.add_argument("--images", type=int, default=1024, help="images per throughput figure (default 1024)")
    parser.add_argument("--embed-batch-size", type=int, default=256)
    parser.add_argument("--batch-sizes", default="32", help="training throughput batches (default 32, the study's)")
    parser.add_argument("--epochs", type=int, default=3, help="throughput epochs, the first left out (default 3)")
    parser.add_argument("--study-size", type=int, default=224, help="the study's image side (default 224)")
    parser.add_argument("--study-seeds", type=int, default=2, help="seeds of the study's variant timed (default 2)")
    parser.add_argument("--study-variant", default="bce-noisy")
    parser.add_argument("--study-epochs", type=int, help="train.epochs (default: the project's)")
    parser.add_argument("--study-learning-rates", help="e.g. 1e-4,1e-3: the variant's grid (default: the project's)")
    parser.add_argument("--study-images", type=int, help="N images of each split, evenly spread (default: all)")
    parser.add_argument("--skip", default="", help="sections to leave out, e.g. study,equality")
    parser.add_argument("--equality-run", type=Path, help=argparse.SUPPRESS)  # one side of the equality check
    return parser.parse_args(argv)


def line(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def versions() -> None:
    from stages.lib.backbone.backend import backend_name, import_keras
    from stages.lib.backbone.runtime import visible_gpus

    keras = import_keras()
    line("python", platform.python_version())
    line("keras", keras.__version__)
    line("keras from", Path(keras.__file__).parent)
    line("backend", backend_name())
    for package in ("jax", "jaxlib", "jax-cuda12-plugin", "torch", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            line(f"version {package}", metadata.version(package))
    line("tensorflow importable", "tensorflow" in sys.modules or _findable("tensorflow"))
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        for gpu in subprocess.run(query, capture_output=True, text=True).stdout.strip().splitlines():
            line("nvidia-smi", gpu)
    gpus = visible_gpus()
    for gpu in gpus:
        line("gpu", gpu.describe())
    if not gpus:
        line("gpu", "none visible: the figures below are the CPU's")


def _findable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def digits(size: int) -> dict[str, np.ndarray]:
    """The prepared digits per split, uint8, each pixel repeated (nearest neighbour) to `size` px."""
    with np.load(DIGITS / IMAGES_FILE) as saved:
        images = {split: saved[split] for split in saved.files}
    rows = np.arange(size) * PREPARED_SIZE // size
    return {split: split_images[:, rows][:, :, rows] for split, split_images in images.items()}


def clean_labels() -> dict[str, np.ndarray]:
    import pandas as pd

    table = pd.read_csv(DIGITS / "data/prepared/labels.csv")
    return {split: table.loc[table["split"] == split, "label"].to_numpy() for split in ("train", "val", "test")}


def images_of(count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` digits (training pool, then validation and test, repeated as needed) and their labels."""
    images, labels = digits(size), clean_labels()
    pool = np.concatenate([images[split] for split in ("train", "val", "test")])
    pool_labels = np.concatenate([labels[split] for split in ("train", "val", "test")])
    rows = np.arange(count) % len(pool)
    return pool[rows], pool_labels[rows]


def embed_throughput(args: argparse.Namespace) -> None:
    import keras

    from stages.lib.backbone.embedding import embed_images
    from stages.lib.backbone.resnet import build_backbone

    images, _ = images_of(args.images, args.image_size)
    for policy in ("float32", "mixed_bfloat16"):
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy(policy)
        model = build_backbone("none", args.image_size)
        embed_images(model, images[: args.embed_batch_size], args.embed_batch_size, desc="warm-up")  # compiles
        started = time.perf_counter()
        features = embed_images(model, images, args.embed_batch_size, desc=f"embed {policy}")
        seconds = time.perf_counter() - started
        assert features.dtype == np.float32 and np.isfinite(features).all()
        name = f"embed images/s {policy} digits {args.image_size}px batch {args.embed_batch_size}"
        line(name, f"{len(images) / seconds:.1f}")
    keras.mixed_precision.set_global_policy("float32")


def training_throughput(args: argparse.Namespace) -> None:
    import keras

    from stages.lib.backbone.resnet import build_backbone
    from stages.lib.losses import make_loss
    from stages.lib.train.finetune.model import TrainingClock, build_fine_tune_model, build_head, set_trainable_blocks
    from stages.lib.train.finetune.pipeline import epoch_follower, image_pipeline

    images, labels = images_of(args.images, args.image_size)
    targets = labels[:, None].astype(np.float32)
    for policy in ("float32", "mixed_bfloat16"):
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            keras.backend.clear_session()
            keras.mixed_precision.set_global_policy(policy)
            backbone = build_backbone("none", args.image_size)
            set_trainable_blocks(backbone, None)
            head = build_head(np.random.default_rng(0).normal(size=(16, 2048)).astype(np.float32), "binary", 2)
            model = build_fine_tune_model(backbone, head)
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=make_loss("bce", "binary", {}), jit_compile=True)
            usable = len(images) // batch_size * batch_size  # whole batches only: one compiled step shape
            clock = TrainingClock()
            batches = image_pipeline(images[:usable], targets[:usable], batch_size=batch_size, shuffle_seed=0)
            model.fit(batches, epochs=args.epochs, callbacks=[epoch_follower(batches), clock], shuffle=False, verbose=0)
            rate = usable * (len(clock.seconds) - 1) / sum(clock.seconds[1:])
            name = f"training images/s {policy} xla digits {args.image_size}px batch {batch_size}"
            line(name, f"{rate:.1f} (first epoch, compiling, {clock.seconds[0]:.1f} s)")
    keras.mixed_precision.set_global_policy("float32")


class StandInLive:
    """What the stages ask of DVCLive's Live, the values kept in memory (DVCLive needs DVC; the kit has neither)."""

    def __init__(self, dir: str = "dvclive", **_: object) -> None:
        self.dir = str(dir)
        self.metrics: dict[str, list[float]] = {}
        self.params: dict[str, object] = {}

    def __enter__(self) -> StandInLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def log_metric(self, name: str, value: float, **_: object) -> None:
        self.metrics.setdefault(name, []).append(value)

    def log_param(self, name: str, value: object) -> None:
        self.params[name] = value

    def next_step(self) -> None:
        pass


def project_params() -> dict:
    import yaml

    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def equality_run(args: argparse.Namespace) -> None:
    """One side of the equality check (a child process): features at --image-size and a short fine-tuning at
    32 px, saved to --equality-run."""
    from stages.lib.backbone.backend import import_keras
    from stages.lib.backbone.resnet import build_backbone, seed_everything
    from stages.lib.backbone.runtime import visible_gpus
    from stages.lib.core import params as core_params
    from stages.lib.core.variants import targets
    from stages.lib.losses import settings as loss_settings
    from stages.lib.train.finetune.model import backbone_features
    from stages.lib.train.finetune.trainer import FineTuneTrainer
    from stages.lib.train.interface import SeedTargets, Setup

    import_keras()
    device = visible_gpus()[0].describe() if visible_gpus() else "CPU"
    seed_everything(0)
    features = backbone_features(build_backbone("none", args.image_size), digits(args.image_size)["test"][:16], 16)

    raw = project_params()
    raw["model"].update({"weights": "none", "fine_tune": True, "trainable_blocks": 1})
    raw["train"].update({"losses": ["bce"], "epochs": 2, "batch_size": 16, "mixed_precision": False})
    raw["train"]["fine_tune_grid"] = {"bce": {"learning_rate": [1e-4]}}
    images, labels = digits(PREPARED_SIZE), clean_labels()
    sizes = {"train": 64, "val": 32, "test": 32}
    x = {split: images[split][:n] for split, n in sizes.items()}
    y = {split: targets(labels[split][:n], "binary", 2) for split, n in sizes.items()}
    settings, model = loss_settings.train_params(raw), core_params.model_params(raw)
    setup = Setup("bce-clean", x["train"], x["val"], x["test"], y["test"], "binary", 2, "bce", settings, model, 0)
    os.chdir(args.equality_run.parent)  # its checkpoints
    trained = FineTuneTrainer(setup).fit(SeedTargets(y["train"], 0, y["val"]), StandInLive("seed_0"))
    np.savez(args.equality_run, features=features, scores=trained.scores, epoch=trained.epoch, device=device)


def equality(args: argparse.Namespace, own_args: list[str]) -> None:
    env = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest")
    runs = {}
    for side, platforms in (("default", None), ("cpu", "cpu")):
        side_env = dict(env, JAX_PLATFORMS=platforms) if platforms else env
        out = Path(f"equality-{side}").resolve()
        out.mkdir(exist_ok=True)
        command = [sys.executable, __file__, *own_args, "--equality-run", str(out / "run.npz")]
        subprocess.run(command, env=side_env, check=True, stdout=subprocess.DEVNULL)
        with np.load(out / "run.npz") as saved:
            runs[side] = {key: saved[key] for key in saved.files}
    device, cpu = runs["default"], runs["cpu"]
    line("equality devices", f"{device['device']} against {cpu['device']} (float32, highest matmul precision)")
    difference = float(np.abs(device["features"] - cpu["features"]).max() / np.abs(cpu["features"]).max())
    verdict = "PASS" if difference <= FEATURE_TOLERANCE else "FAIL"
    name = f"equality embed features {args.image_size}px"
    line(name, f"max |difference| / max |feature| {difference:.2e} (tolerance {FEATURE_TOLERANCE:g}): {verdict}")
    difference = float(np.abs(device["scores"] - cpu["scores"]).max())
    same_epoch = int(device["epoch"]) == int(cpu["epoch"])
    verdict = "PASS" if difference <= SCORE_TOLERANCE and same_epoch else "FAIL"
    epochs = f"epoch kept {int(device['epoch'])} and {int(cpu['epoch'])}"
    line(
        "equality fine-tuning 32px 2 epochs",
        f"max |difference| of test P(positive) {difference:.2e} (tolerance {SCORE_TOLERANCE:g}), {epochs}: {verdict}",
    )


def study_project(root: Path, size: int, args: argparse.Namespace) -> np.ndarray:
    """A project folder holding what the train stage reads, the digits at `size` px; returns the rows of the
    prepared test set it holds."""
    import pandas as pd
    import yaml

    from stages.lib.core.io import images_path

    table = pd.read_csv(DIGITS / "data/prepared/labels.csv")
    images = digits(size)
    # Rows of each split kept (the files are in class order: spread, so that every class stays).
    kept = {split: np.arange(len(split_images)) for split, split_images in images.items()}
    if args.study_images:
        kept = {
            split: np.unique(np.linspace(0, len(rows) - 1, args.study_images).round().astype(int))
            for split, rows in kept.items()
        }
    ids = np.concatenate([table.loc[table["split"] == split, "id"].to_numpy()[rows] for split, rows in kept.items()])
    for name in COPIED:  # what the train stage reads besides the images
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        rows = pd.read_csv(DIGITS / name) if name.endswith(".csv") else None
        if rows is None:
            shutil.copyfile(DIGITS / name, root / name)
        else:  # the images kept, in their order (the arrays' rows)
            rows[rows["id"].isin(ids)].to_csv(root / name, index=False, lineterminator="\n")
    for split, split_images in images.items():
        np.save(root / images_path(split), split_images[kept[split]])
    raw = project_params()
    raw["data"].update({"source": str(DIGITS), "positive_class": "8", "image_size": size})
    raw["model"].update({"weights": "none", "fine_tune": True})
    loss = args.study_variant.rpartition("-")[0]
    raw["train"]["losses"] = [loss]  # the stage trains this variant only
    if args.study_epochs:
        raw["train"]["epochs"] = args.study_epochs
    if args.study_learning_rates:
        rates = [float(rate) for rate in args.study_learning_rates.split(",")]
        raw["train"]["fine_tune_grid"] = {loss: {"learning_rate": rates}}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return kept["test"]


def stand_in_dvclive() -> None:
    """`import dvclive` gives the stand-in: stages.lib.train.logs.live_log subclasses its Live."""
    module = types.ModuleType("dvclive")
    module.Live = StandInLive  # type: ignore[attr-defined]
    sys.modules["dvclive"] = module


def study(args: argparse.Namespace) -> None:
    import yaml

    from stages.lib.core.variants import SCORES_FILE, SELECTION_FILE, model_dir, parse_variant
    from stages.lib.evaluate.metrics import predict_labels
    from stages.lib.losses import settings as loss_settings

    root = Path("study").resolve()
    variant = args.study_variant
    test_rows = study_project(root, args.study_size, args)
    loss, labels = parse_variant(variant)
    stand_in_dvclive()
    from stages.train import main as train_stage

    os.chdir(root)
    raw = yaml.safe_load(Path("params.yaml").read_text())
    defaults = project_params()["train"]
    grid = len(loss_settings.train_params(raw).fine_tuning_grid(loss))
    test_labels = clean_labels()["test"][test_rows]
    seconds = []
    for seed in range(args.study_seeds):
        raw["train"]["seeds"] = [seed]
        Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        started = time.perf_counter()
        train_stage(["--loss", loss, "--labels", labels])
        seconds.append(time.perf_counter() - started)
        chosen = json.loads((model_dir(variant) / SELECTION_FILE.format(seed=seed)).read_text())
        scores = np.load(model_dir(variant) / SCORES_FILE.format(seed=seed))
        predicted = predict_labels(scores.astype(np.float64), "binary", chosen["threshold"])
        recall = [float(np.mean(predicted[test_labels == c] == c)) for c in (0, 1)]
        name = f"study {variant} seed {seed} {args.study_size}px {grid} grid points x {raw['train']['epochs']} epochs"
        kept = ", ".join(f"{key} {value:g}" for key, value in chosen["hyper_parameters"].items())
        line(
            name,
            f"{seconds[-1]:.1f} s{' (compiling)' if seed == 0 else ''}; kept {kept}, epoch {chosen['epoch']}, "
            f"threshold {chosen['threshold']:.3f}; test balanced accuracy {np.mean(recall):.3f}",
        )
    if len(seconds) >= 2:
        variants = len(defaults["losses"]) * len(defaults["labels"])
        repeats = len(defaults["seeds"])
        total = variants * (seconds[0] + (repeats - 1) * seconds[1])
        line(
            "study estimate",
            f"{total / 60:.1f} min for {variants} variants x {repeats} seeds at these settings "
            f"(= {variants} x (seed 0 + {repeats - 1} x seed 1); each variant is its own process)",
        )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.equality_run:
        equality_run(args)
        return
    skip = set(filter(None, args.skip.split(",")))
    started = time.perf_counter()
    versions()
    if "embed" not in skip:
        embed_throughput(args)
    if "training" not in skip:
        training_throughput(args)
    if "equality" not in skip:
        equality(args, argv)
    if "study" not in skip:
        study(args)
    line("gpu check seconds", f"{time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
