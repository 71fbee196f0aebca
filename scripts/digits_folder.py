"""Write scikit-learn's copy of the UCI hand-written digits as a flower_photos-style folder, for offline runs.

    python scripts/digits_folder.py /abs/path/digits    # then: dvc exp run -S data.source=/abs/path/digits \
                                                        #   -S data.positive_class=8 -S model.weights=none

The data set is "Optical Recognition of Handwritten Digits" (UCI ML repository; Alpaydin & Kaynak, 1998) as
scikit-learn ships it inside its wheel (`sklearn.datasets.load_digits`): 1,797 scans of 8×8 pixels, 16 grey
levels, 10 classes of about 180 each. Nothing is downloaded. Each image becomes ROOT/<digit>/<index>.png
(grey levels 0–16 scaled to 0–255), so the pipeline reads it like tf_flowers' folders.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digits_folder(root: Path) -> int:
    """Write every digit image under root/<digit>/; returns the number written."""
    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    for index, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    return len(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder to create (must not exist)")
    args = parser.parse_args()
    if args.root.exists():
        parser.error(f"{args.root} already exists: give a new folder")
    count = write_digits_folder(args.root)
    print(f"wrote {count} images into {args.root}/<digit>/")


if __name__ == "__main__":
    main()
