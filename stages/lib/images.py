"""Finding and decoding the images of a flower_photos-style folder (`ROOT/<class name>/<image>`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stages.lib.errors import UserError

# Lower-cased; file names are matched case-insensitively (cameras write .JPG).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class FolderScan:
    """What a class-per-folder tree holds: candidate images and the files that are not images."""

    root: Path
    classes: tuple[str, ...]  # sorted; a class's index is its position here
    images: tuple[tuple[str, str], ...]  # (path relative to root, class name), sorted by path
    stray_files: tuple[str, ...]  # relative paths of files without an image suffix


def _visible(name: str) -> bool:
    return not name.startswith(".")  # .DS_Store, ._resource forks, editors' swap files


def find_class_root(root: Path) -> Path:
    """The folder whose subfolders are the classes.

    tf_flowers' archive unpacks to `flower_photos/<class>/`, beside a LICENSE.txt; a root that holds a
    single folder and no class folders of its own is descended into.
    """
    current = root
    while True:
        subdirs = [d for d in current.iterdir() if d.is_dir() and _visible(d.name)]
        has_images = any(f.suffix.lower() in IMAGE_SUFFIXES for d in subdirs for f in d.iterdir() if f.is_file())
        if has_images or len(subdirs) != 1:
            return current
        current = subdirs[0]


def scan_folder(root: Path | str) -> FolderScan:
    """List a class-per-folder tree. Raises UserError if it is missing or holds no images."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    class_root = find_class_root(root)
    images: list[tuple[str, str]] = []
    stray: list[str] = []
    classes: set[str] = set()
    for class_dir in sorted(d for d in class_root.iterdir() if d.is_dir() and _visible(d.name)):
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            for name in sorted(filenames):
                relative = (Path(dirpath) / name).relative_to(class_root).as_posix()
                if not _visible(name):
                    stray.append(relative)
                elif Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    images.append((relative, class_dir.name))
                    classes.add(class_dir.name)
                else:
                    stray.append(relative)
    if not images:
        raise UserError(
            f"{root} holds no images: expected ROOT/<class name>/<image>.jpg "
            f"(suffixes {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return FolderScan(
        root=class_root,
        classes=tuple(sorted(classes)),
        images=tuple(sorted(images)),
        stray_files=tuple(stray),
    )


def load_image(path: Path | str, size: int) -> np.ndarray:
    """Decode any PIL-readable image to RGB uint8 of shape (size, size, 3).

    Grayscale, CMYK, palette and alpha images are converted to RGB. The image is resized to a square
    without keeping its aspect ratio, as the original experiment did with tf.image.resize.
    Raises OSError / UnidentifiedImageError / ValueError for unreadable or truncated files.
    """
    with Image.open(path) as image:
        image.load()  # decodes fully here: a truncated file fails now, not later
        rgb = image.convert("RGB")
    resized = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


def decode_images(
    paths: Iterable[Path],
    size: int,
    workers: int | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """Decode many images in parallel threads (PIL releases the GIL while decoding).

    Returns (images stacked in input order for those that decoded, their input indices,
    {input index: error message} for those that did not).
    """
    paths = list(paths)

    def attempt(path: Path) -> np.ndarray | str:
        try:
            return load_image(path, size)
        except DECODE_ERRORS as error:
            return f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results: Iterable = pool.map(attempt, paths)
        if progress is not None:
            results = progress(results)
        decoded = list(results)
    good = [i for i, result in enumerate(decoded) if isinstance(result, np.ndarray)]
    failed = {i: result for i, result in enumerate(decoded) if isinstance(result, str)}
    stack = np.stack([decoded[i] for i in good]) if good else np.zeros((0, size, size, 3), np.uint8)
    return stack, good, failed
