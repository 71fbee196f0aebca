"""The GPU check of the kit: what the machine is, how fast ResNet50 embeds and fine-tunes, and one short
fine-tuning run of the train stage's own trainer — on the Keras backend of KERAS_BACKEND (jax or torch
where there is no TensorFlow). Each figure on its own line, `name: value`.

    python benchmarks/gpu_kit/check.py [--image-size 224] [--images 512] [--batch-sizes 64,128,256] ...

1. versions: Python, Keras, the backend and its accelerator libraries, the GPUs (backend and nvidia-smi);
2. embed: images/s through the frozen ResNet50 (random init: the same computation as ImageNet's
   weights, no download), float32 and mixed_bfloat16; features come out float32 either way;
3. fine-tuning: images/s of the training step, every block trained, mixed_bfloat16, XLA on, per batch
   size (the first epoch, which compiles, left out);
4. the trainer of `model.fine_tune: true` (stages.lib.finetune.trainer: the runtime choice, input
   pipeline, epoch selection, checkpoints, scoring) on synthetic images at --run-size px, its test
   accuracy and seconds. DVC and DVCLive are not in the kit: a stand-in logger takes the metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224, help="embed and fine-tuning throughput (default 224)")
    parser.add_argument("--images", type=int, default=1024, help="images per throughput figure (default 1024)")
    parser.add_argument("--embed-batch-size", type=int, default=256)
    parser.add_argument("--batch-sizes", default="64,128,256", help="fine-tuning throughput batches (64,128,256)")
    parser.add_argument("--epochs", type=int, default=3, help="throughput epochs, the first left out (default 3)")
    parser.add_argument("--run-size", type=int, default=64, help="the trainer run's image side (default 64)")
    parser.add_argument("--run-images", type=int, default=240, help="the trainer run's images in all (default 240)")
    parser.add_argument("--run-epochs", type=int, default=2)
    return parser.parse_args(argv)


def line(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def versions() -> None:
    from stages.lib.backend import backend_name, import_keras
    from stages.lib.finetune.runtime import visible_gpus

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


def synthetic_images(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose label (1 for half of them) shows as a redder tint: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 2).astype(np.int64)
    images = rng.integers(0, 160, size=(count, size, size, 3)).astype(np.int16)
    images[labels == 1, :, :, 0] += 90
    return np.clip(images, 0, 255).astype(np.uint8), labels


def embed_throughput(args: argparse.Namespace) -> None:
    import keras

    from stages.lib.backbone import build_backbone
    from stages.lib.embedding import embed_images

    images, _ = synthetic_images(args.images, args.image_size)
    for policy in ("float32", "mixed_bfloat16"):
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy(policy)
        model = build_backbone("none", args.image_size)
        embed_images(model, images[: args.embed_batch_size], args.embed_batch_size, desc="warm-up")  # compiles
        started = time.perf_counter()
        features = embed_images(model, images, args.embed_batch_size, desc=f"embed {policy}")
        seconds = time.perf_counter() - started
        assert features.dtype == np.float32 and np.isfinite(features).all()
        line(
            f"embed images/s {policy} {args.image_size}px batch {args.embed_batch_size}", f"{len(images) / seconds:.1f}"
        )
    keras.mixed_precision.set_global_policy("float32")


def fine_tune_throughput(args: argparse.Namespace) -> None:
    import keras

    from stages.lib.backbone import build_backbone
    from stages.lib.finetune.model import TrainingClock, build_fine_tune_model, build_head, set_trainable_blocks
    from stages.lib.finetune.pipeline import epoch_follower, image_pipeline
    from stages.lib.losses import make_loss

    images, labels = synthetic_images(args.images, args.image_size)
    targets = labels[:, None].astype(np.float32)
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
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
        name = f"fine-tune images/s mixed_bfloat16 xla {args.image_size}px batch {batch_size}"
        line(name, f"{rate:.1f} (first epoch, compiling, {clock.seconds[0]:.1f} s)")
    keras.mixed_precision.set_global_policy("float32")


class StandInLive:
    """What the trainer asks of DVCLive's Live, keeping the metrics in memory (DVCLive needs DVC)."""

    def __init__(self, folder: Path) -> None:
        self.dir = str(folder)
        self.metrics: dict[str, list[float]] = {}
        self.params: dict[str, object] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def log_param(self, name: str, value: object) -> None:
        self.params[name] = value

    def next_step(self) -> None:
        pass


def trainer_run(args: argparse.Namespace) -> None:
    import yaml

    from stages.lib import params as P
    from stages.lib.finetune.trainer import fine_tune_trainer
    from stages.lib.labels import targets
    from stages.lib.metrics import predict_labels
    from stages.lib.params import loss_settings as L
    from stages.lib.training import Setup

    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["model"].update({"weights": "none", "fine_tune": True, "trainable_blocks": 3})
    raw["train"].update({"epochs": args.run_epochs, "batch_size": 32, "learning_rate": 1e-4, "augment": True})
    settings, model_params = L.train_params(raw), P.model_params(raw)
    images, labels = synthetic_images(args.run_images, args.run_size, seed=1)
    train, val, test = np.split(np.arange(args.run_images), [args.run_images // 2, args.run_images * 3 // 4])
    y = targets(labels[train], "binary", 2)
    setup = Setup(
        "bce-clean", images[train], images[val], images[test], targets(labels[test], "binary", 2),
        "binary", 2, "bce", settings, model_params, 0,
    )  # fmt: skip
    started = time.perf_counter()
    trained = fine_tune_trainer(setup)(
        y, 0, StandInLive(Path("gpu-check-run/seed_0")), None, targets(labels[val], "binary", 2)
    )
    seconds = time.perf_counter() - started
    accuracy = float(np.mean(predict_labels(trained.scores, "binary") == labels[test]))
    line(
        f"fine_tune trainer run {len(train)} images {args.run_size}px {args.run_epochs} epochs",
        f"test accuracy {accuracy:.3f}, epoch kept {trained.epoch}, {seconds:.1f} s",
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    versions()
    embed_throughput(args)
    fine_tune_throughput(args)
    trainer_run(args)
    line("gpu check seconds", f"{time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
