"""Small flower_photos-style image folders with a learnable signal, for tests and the benchmark.

Each class has its own petal colour (sunflowers: yellow petals round a brown disk), drawn at a random
place and size on a random greenish background with pixel noise, so a classifier on any reasonable
features can tell sunflowers apart, but not trivially from one pixel.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_COLOURS = {
    "daisy": (245, 245, 240),
    "dandelion": (250, 210, 40),
    "roses": (200, 30, 60),
    "sunflowers": (250, 190, 0),
    "tulips": (230, 90, 160),
}
TF_FLOWERS_COUNTS = {"daisy": 633, "dandelion": 898, "roses": 641, "sunflowers": 699, "tulips": 799}


def flower_image(class_name: str, size: int, rng: np.random.Generator) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size]
    background = np.array([40, 110, 40]) + rng.integers(-30, 30, size=3)
    image = np.broadcast_to(background, (size, size, 3)).astype(np.float64).copy()
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    radius = rng.uniform(0.2, 0.35) * size
    distance = np.hypot(yy - cy, xx - cx)
    petals = distance < radius
    image[petals] = np.array(CLASS_COLOURS[class_name]) + rng.integers(-20, 20, size=3)
    if class_name == "sunflowers":
        image[distance < radius * 0.45] = (90, 50, 15)  # the dark disk that makes a sunflower
    image += rng.normal(0, 12, size=image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def make_flower_folder(root: Path | str, per_class: int | dict[str, int] = 20, size: int = 48, seed: int = 0) -> Path:
    """Write ROOT/<class>/<n>.jpg for the five tf_flowers classes; returns ROOT."""
    root = Path(root)
    counts = per_class if isinstance(per_class, dict) else dict.fromkeys(CLASS_COLOURS, per_class)
    rng = np.random.default_rng(seed)
    for class_name, count in counts.items():
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            flower_image(class_name, size, rng).save(folder / f"{class_name}_{index:04d}.jpg", quality=90)
    return root


def make_flower_archive(archive: Path | str, per_class: int = 20, size: int = 48, seed: int = 0) -> Path:
    """A .tgz laid out like tf_flowers' own: flower_photos/LICENSE.txt and flower_photos/<class>/*.jpg."""
    archive = Path(archive)
    folder = archive.parent / "flower_photos"
    make_flower_folder(folder, per_class, size, seed)
    (folder / "LICENSE.txt").write_text("synthetic test images\n")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="flower_photos")
    return archive
