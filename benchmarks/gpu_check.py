"""On a GPU machine: run the fine-tuning pipeline on a few hundred images and print what it ran on and how fast.

    benchmarks/gpu_check.sh            (or: python benchmarks/gpu_check.py [--images N] [--image-size S] ...)

In a fresh copy of the project, on synthetic flower_photos-style JPEGs, with ResNet50's weights `none`
(a random init: the same computation as ImageNet's weights, and no download):
1. `dvc repro` with heads on cached features: the embed stage's images/second (float32, one device);
2. `dvc exp run -S model.fine_tune=true`: the whole pipeline fine-tuning ResNet50 (`--blocks`, default all)
   with mixed precision where the GPUs support it, on every visible GPU;
3. unless --no-xla, one variant again with `train.xla=true`.
It prints the devices found, then each figure as the stages logged it. Images/second of fine-tuning leave
out the first epoch (tracing, and XLA's compilation) and the per-epoch validation pass. At the defaults
it takes about two minutes on one modern GPU, well under five.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EMBED_LINE = re.compile(r"embed: (\d+) images through ResNet50 .*?\(([\d.]+) images/s")
RUNTIME_LINE = re.compile(r"train (\S+): fine-tuning ResNet50 on the images; (.*)")
THROUGHPUT_LINE = re.compile(r"fine-tuning on (\d+) images: (.*)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="images in all, 80 %% for training (default: 600)")
    parser.add_argument("--image-size", type=int, default=224, help="default: 224, the study's")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default: 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (default: 64)")
    parser.add_argument("--blocks", default="all", help="model.trainable_blocks (default: all)")
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA run")
    parser.add_argument("--workdir", type=Path, help="keep the project here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.images < 20:
        parser.error("--images: at least 20")
    return args


def devices() -> list[str]:
    """The GPUs as the driver and as TensorFlow see them, and the runtime the train stage will choose."""
    from stages.lib.backbone.runtime import select_runtime, visible_gpus

    lines = []
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        smi = subprocess.run(query, capture_output=True, text=True)
        lines += [f"nvidia-smi: {line}" for line in smi.stdout.strip().splitlines()] or ["nvidia-smi: (no output)"]
    else:
        lines.append("nvidia-smi: not found")
    gpus = visible_gpus()
    lines += [f"TensorFlow: {gpu.describe()}" for gpu in gpus] or ["TensorFlow: no GPU visible: CPU figures below"]
    lines.append(f"train stage would use: {select_runtime('auto', False, 64, gpus).describe()}")
    return lines


def make_study(workdir: Path, args: argparse.Namespace) -> Path:
    from toolkit.project import make_project
    from toolkit.synthetic import CLASS_COLOURS, make_flower_folder

    per_class = -(-args.images // len(CLASS_COLOURS))
    images = make_flower_folder(workdir / "flower_photos", per_class=per_class, size=max(args.image_size, 256))
    blocks = args.blocks if args.blocks == "all" else int(args.blocks)
    params = {
        # A speed check: no validation pass per epoch (val_size 0, so the last epoch's model).
        "data": {
            "image_size": args.image_size,
            "train_size": round(args.images * 0.8),
            "val_size": 0,
            "test_size": None,
        },
        "model": {"weights": "none", "embed_batch_size": args.batch_size, "trainable_blocks": blocks},
        "train": {
            "losses": ["bce"],
            "epochs": args.epochs,
            "select_epoch": "last",
            "batch_size": args.batch_size,
            "seeds": [0],
        },
    }
    return make_project(workdir / "project", images, params)


def dvc_logged(repo: Path, *args: str) -> tuple[str, float]:
    from toolkit.project import dvc

    started = time.perf_counter()
    result = dvc(repo, *args)
    return result.stdout + result.stderr, time.perf_counter() - started


def commit(repo: Path) -> None:
    """`dvc exp run` starts from the last commit: commit the head-mode run as the baseline."""
    from toolkit.project import run

    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline: heads on cached features")


def report(title: str, output: str, seconds: float) -> list[str]:
    lines = [f"{title} ({seconds:.0f} s):"]
    lines += [f"  embed: {m[0]} images, {m[1]} images/s (float32)" for m in EMBED_LINE.findall(output)]
    lines += [f"  train {m[0]}: {m[1]}" for m in RUNTIME_LINE.findall(output)]
    lines += [f"  fine-tuning on {m[0]} images: {m[1]}" for m in THROUGHPUT_LINE.findall(output)]
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    for line in devices():
        print(line, flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        workdir = args.workdir or Path(scratch)
        repo = make_study(workdir, args)
        print(f"study: {args.images} synthetic images at {args.image_size} px, weights none, in {repo}", flush=True)

        output, seconds = dvc_logged(repo, "repro")
        print("\n".join(report("dvc repro (heads on cached features)", output, seconds)), flush=True)
        commit(repo)
        output, seconds = dvc_logged(repo, "exp", "run", "-S", "model.fine_tune=true")
        print("\n".join(report("dvc exp run -S model.fine_tune=true", output, seconds)), flush=True)
        metrics = json.loads((repo / "metrics/metrics.json").read_text())
        print(f"  evaluate wrote metrics for: {', '.join(sorted(metrics))}", flush=True)
        if not args.no_xla:
            xla = ("exp", "run", "-S", "model.fine_tune=true", "-S", "train.xla=true", "train@bce-clean")
            output, seconds = dvc_logged(repo, *xla)
            print("\n".join(report("the same with train.xla=true (train@bce-clean)", output, seconds)), flush=True)
    print(f"gpu check: done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
