"""The frozen backbone's features of every image (stages.lib.backbone.embedding), computed once for the whole study:
every head of every variant trains on them. With `model.fine_tune: true` the train stage reads the images
instead, and this stage writes empty (0×2048) files without running ResNet50.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from stages.lib.backbone.embedding import embed_images
from stages.lib.backbone.resnet import (
    FEATURE_DIM,
    build_backbone,
    require_weights_reachable,
    resolve_weights,
    seed_everything,
)
from stages.lib.backbone.runtime import devices_seen
from stages.lib.core.errors import run_stage
from stages.lib.core.io import SPLITS, features_path, images_path, load_array, save_array
from stages.lib.core.params import read_params


def main() -> None:
    params = read_params()
    model_params = params.model
    resolve_weights(model_params.weights)  # a missing file fails now, before TensorFlow loads
    if model_params.fine_tune:
        # The train stage fine-tunes on the images: nothing reads features. Empty files keep DVC's
        # outputs in place; a head-mode train stage refuses them (they do not match labels.csv).
        for split in SPLITS:
            save_array(features_path(split), np.empty((0, FEATURE_DIM), dtype=np.float32))
        print("embed: model.fine_tune is true: the train stage reads the images; no features computed", file=sys.stderr)
        return
    require_weights_reachable(model_params.weights)  # offline: the error now, before TensorFlow loads
    seed_everything(params.seed)  # fixes the random init of `model.weights: none`
    images = {split: load_array(images_path(split), mmap=True) for split in SPLITS}
    train_images = images["train"]
    model = build_backbone(model_params.weights, image_size=train_images.shape[1])
    print(f"embed: {devices_seen()}; float32", file=sys.stderr)
    # No separate warm-up batch: it would run ResNet50 on those images twice. The time logged below includes
    # tracing the model on the first batch (a second or two).
    started = time.perf_counter()
    outputs = {
        split: embed_images(model, split_images, model_params.embed_batch_size, desc=f"embed {split}")
        for split, split_images in images.items()
    }
    elapsed = time.perf_counter() - started
    for split, features in outputs.items():
        save_array(features_path(split), features)
    total = sum(len(split_images) for split_images in images.values())
    print(
        f"embed: {total} images through ResNet50 (weights: {model_params.weights}) in {elapsed:.1f}s "
        f"({total / max(elapsed, 1e-9):.1f} images/s, tracing included)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_stage("embed", main)
