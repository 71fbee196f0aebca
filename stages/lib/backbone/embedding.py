"""Running the frozen backbone over images in batches: the features every head trains on."""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from stages.lib.backbone.resnet import FEATURE_DIM, preprocess


def embed_images(model, images: np.ndarray, batch_size: int, desc: str = "embed") -> np.ndarray:
    """Run the backbone over images (N×S×S×3 uint8, may be memory-mapped) in batches."""
    features = np.empty((len(images), FEATURE_DIM), dtype=np.float32)
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", file=sys.stderr):
        batch = preprocess(images[start : start + batch_size])
        features[start : start + batch_size] = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
    return features
