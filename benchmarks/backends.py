"""Fine-tuning on TensorFlow and on JAX side by side, from the same weights: step time and agreement.

    python benchmarks/backends.py [--images 64] [--image-size 32] [--batch-size 16] [--epochs 3] [--blocks all]

One model (the fine-tuning model of stages.lib.train.finetune: ResNet50, random init, and the head) is built
once, on TensorFlow, and its weights saved; then, each in its own process, TensorFlow (XLA off, the
default; then XLA on) and JAX (XLA always; TensorFlow blocked from loading) load those weights and
fine-tune it on the same batches (the project's PyDataset pipeline, seeded) with plain SGD for
--epochs epochs (--runs picks the runs). It prints, each on its own line: how far training moved the
logits; each run's steady step time (epochs 2 on: the first traces and compiles); how far each run's
logits are from TensorFlow's (XLA off) before and after training, relative to the largest logit; the
ratio of JAX's step time to TensorFlow's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
NO_TENSORFLOW = PROJECT_ROOT / "tests/no_tensorflow"  # a sitecustomize that makes `import tensorflow` fail


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="at least 2: the first one compiles")
    parser.add_argument("--blocks", default="all", help="model.trainable_blocks (default: all)")
    # Small: a random-init ResNet50 with frozen batch norm has huge activations; 1e-3 diverges to NaN.
    parser.add_argument("--learning-rate", type=float, default=1e-7)
    parser.add_argument("--runs", default="tensorflow:off,tensorflow:on,jax:on", help="backend:xla, comma-separated")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: one run, results there
    parser.add_argument("--xla", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs: at least 2")
    return args


def inputs(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, args.image_size, args.image_size, 3), dtype=np.uint8)
    return images, (rng.random((args.images, 1)) < 0.5).astype(np.float32)


def worker(args: argparse.Namespace) -> None:
    """In a process on one backend: build (or load) the model, fine-tune it, write logits and epoch times."""
    from stages.lib.backbone.backend import import_keras
    from stages.lib.backbone.resnet import build_backbone, seed_everything

    keras = import_keras()
    from stages.lib.losses import make_loss
    from stages.lib.train.finetune.model import (
        TrainingClock,
        backbone_features,
        build_fine_tune_model,
        build_head,
        set_trainable_blocks,
    )
    from stages.lib.train.finetune.pipeline import epoch_follower, image_pipeline

    images, targets = inputs(args)
    weights = args.worker / "start.weights.h5"
    seed_everything(0, deterministic=not args.xla)
    backbone = build_backbone("none", args.image_size)
    start_features = backbone_features(backbone, images, args.batch_size)
    set_trainable_blocks(backbone, None if args.blocks == "all" else int(args.blocks))
    model = build_fine_tune_model(backbone, build_head(start_features, "binary", 2))
    if weights.exists():
        model.load_weights(weights)
    else:
        model.save_weights(weights)
    before = model.predict(image_pipeline(images, batch_size=args.batch_size), verbose=0)
    model.compile(
        optimizer=keras.optimizers.SGD(args.learning_rate), loss=make_loss("bce", "binary", {}), jit_compile=args.xla
    )
    clock = TrainingClock()
    batches = image_pipeline(images, targets, batch_size=args.batch_size, shuffle_seed=0)
    model.fit(batches, epochs=args.epochs, callbacks=[epoch_follower(batches), clock], shuffle=False, verbose=0)
    after = model.predict(image_pipeline(images, batch_size=args.batch_size), verbose=0)
    name = f"{keras.backend.backend()}-{'xla' if args.xla else 'noxla'}"
    np.savez(args.worker / f"{name}.npz", before=before, after=after, seconds=np.array(clock.seconds))


def run(args: argparse.Namespace, folder: Path, backend: str, xla: bool) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if backend != "tensorflow":
        env["PYTHONPATH"] = os.pathsep.join([str(NO_TENSORFLOW), env.get("PYTHONPATH", "")])
    command = [sys.executable, __file__, "--worker", str(folder), *forwarded(args)] + (["--xla"] if xla else [])
    subprocess.run(command, env=env, check=True)
    result = np.load(folder / f"{backend}-{'xla' if xla else 'noxla'}.npz")
    steps = -(-args.images // args.batch_size)
    return {key: result[key] for key in ("before", "after")} | {"step": float(np.mean(result["seconds"][1:]) / steps)}


def forwarded(args: argparse.Namespace) -> list[str]:
    return [
        f"--images={args.images}",
        f"--image-size={args.image_size}",
        f"--batch-size={args.batch_size}",
        f"--epochs={args.epochs}",
        f"--blocks={args.blocks}",
        f"--learning-rate={args.learning_rate}",
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    print(
        f"backends: {args.images} images at {args.image_size} px, batch {args.batch_size}, {args.epochs} epochs "
        f"of SGD, trainable blocks {args.blocks}, float32, from the same weights",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="backends-") as scratch:
        runs = [(backend, xla == "on") for backend, xla in (item.split(":") for item in args.runs.split(","))]
        results = {(backend, xla): run(args, Path(scratch), backend, xla) for backend, xla in runs}
    reference = results[("tensorflow", False)]  # the first run builds and saves the weights: list it first
    scale = float(np.max(np.abs(reference["after"])))
    moved = float(np.max(np.abs(reference["after"] - reference["before"]))) / scale
    print(f"logit_change_by_training tensorflow xla=off: {moved:.2e}")
    for (backend, xla), result in results.items():
        print(f"step_seconds {backend} xla={'on' if xla else 'off'}: {result['step']:.4f}")
    for (backend, xla), result in results.items():
        before = float(np.max(np.abs(result["before"] - reference["before"])))
        before /= float(np.max(np.abs(reference["before"])))
        after = float(np.max(np.abs(result["after"] - reference["after"]))) / scale
        print(f"logit_difference {backend} xla={'on' if xla else 'off'}: before {before:.2e} after {after:.2e}")
    jax_step = results[("jax", True)]["step"]
    for xla in (x for x in (False, True) if ("tensorflow", x) in results):
        ratio = jax_step / results[("tensorflow", xla)]["step"]
        print(f"step_time_ratio jax/tensorflow xla={'on' if xla else 'off'}: {ratio:.2f}")


if __name__ == "__main__":
    main()
