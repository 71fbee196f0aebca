"""Here, for the GPU kit: the study's data as the pipeline prepares it, on the digits (scripts/digits_folder.py),
for a GPU machine that has neither DVC nor the images' decoders.

    python benchmarks/gpu_kit/digits.py KIT_DIR/digits

A throw-away copy of the project runs `dvc repro corrupt` on scikit-learn's 1,797 digit scans (positive class
8, the default split sizes: 600 training, 300 validation, 897 test images; the default noise, every default
seed), at 32 px (the smallest side ResNet50 takes; the scans are 8×8). The folder receives what the train
stage reads: data/prepared/{labels.csv, summary.json}, data/labels/{clean,noisy}.csv, and the images as
images.npz (uint8, one array per split). The kit's check (check.py) repeats each pixel to reach 224 px.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))

SPLITS = ("train", "val", "test")
IMAGES_FILE = "images.npz"
# The prepared files the train stage reads, relative to a project's root.
COPIED = ("data/prepared/labels.csv", "data/prepared/summary.json", "data/labels/clean.csv", "data/labels/noisy.csv")


def study_params() -> dict:
    """The project's defaults where the tests' small ones differ (toolkit.project.SMALL_PARAMS), but 32 px."""
    from toolkit.project import default_params

    defaults = default_params()
    sizes = {key: defaults["data"][key] for key in ("train_size", "val_size", "test_size")}
    return {
        "data": {"positive_class": "8", "image_size": 32, **sizes},
        "model": {"weights": "none"},
        "train": {"seeds": defaults["train"]["seeds"]},
    }


def prepare(destination: Path) -> None:
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    from digits_folder import write_digits_folder

    from toolkit.project import dvc, make_project

    with tempfile.TemporaryDirectory(prefix="gpu-kit-digits-") as scratch:
        folder = Path(scratch) / "digits"
        write_digits_folder(folder)
        repo = make_project(Path(scratch) / "project", folder, study_params())
        dvc(repo, "repro", "corrupt")
        destination.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(repo / name, destination / name)
        arrays = {split: np.load(repo / f"data/prepared/{split}_images.npy") for split in SPLITS}
        np.savez_compressed(destination / IMAGES_FILE, **arrays)
    sizes = ", ".join(f"{split} {len(images)}" for split, images in arrays.items())
    print(f"digits for the gpu kit: {sizes} images at 32 px in {destination}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destination", type=Path)
    prepare(parser.parse_args().destination)


if __name__ == "__main__":
    main()
