"""Finding and decoding the images of a flower_photos-style folder (`ROOT/<class name>/<image>`)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from stages.lib.errors import UserError, one_line

# Lower-cased; file names are matched case-insensitively (cameras write .JPG).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class FolderScan:
    """What a class-per-folder tree holds: candidate images and the files that are not images."""

    root: Path
    classes: tuple[str, ...]  # sorted; a class's index is its position here
    images: tuple[tuple[str, str], ...]  # (path relative to root, class name), sorted by path
    stray_files: tuple[str, ...]  # relative paths of files in class folders without an image suffix
    outside_classes: tuple[str, ...] = ()  # files beside the class folders (tf_flowers' LICENSE.txt)


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


def _check_utf8(relative: str, name: str) -> None:
    # Python keeps undecodable bytes of a file name as surrogates, which no UTF-8 file (labels.csv) can hold.
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(
            f"{name}: the file name {relative!a} is not valid UTF-8 (labels.csv stores file names as UTF-8); rename it"
        ) from None


def scan_folder(root: Path | str, name: str | None = None) -> FolderScan:
    """List a class-per-folder tree. Raises UserError if it is missing or holds no images.

    `name` says what the folder is in error messages (default: its path), e.g. the param it came from.
    """
    root = Path(root)
    name = name or str(root)
    if not root.is_dir():
        raise UserError(f"{name}: not a folder")
    class_root = find_class_root(root)
    images: list[tuple[str, str]] = []
    stray: list[str] = []
    classes: set[str] = set()
    for class_dir in sorted(d for d in class_root.iterdir() if d.is_dir() and _visible(d.name)):
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            for file_name in sorted(filenames):
                relative = (Path(dirpath) / file_name).relative_to(class_root).as_posix()
                _check_utf8(relative, name)
                if not _visible(file_name):
                    stray.append(relative)
                elif Path(file_name).suffix.lower() in IMAGE_SUFFIXES:
                    images.append((relative, class_dir.name))
                    classes.add(class_dir.name)
                else:
                    stray.append(relative)
    if not images:
        raise UserError(
            f"{name}: holds no images; expected ROOT/<class name>/<image> "
            f"with a suffix {', '.join(sorted(IMAGE_SUFFIXES))} (any case)"
        )
    return FolderScan(
        root=class_root,
        classes=tuple(sorted(classes)),
        images=tuple(sorted(images)),
        stray_files=tuple(stray),
        outside_classes=tuple(sorted(f.name for f in class_root.iterdir() if f.is_file())),
    )


def load_image(path: Path | str, size: int) -> np.ndarray:
    """Decode any PIL-readable image to RGB uint8 of shape (size, size, 3).

    Grayscale, CMYK, palette and alpha images are converted to RGB. The image is resized to a square
    without keeping its aspect ratio, as the original experiment did with tf.image.resize.
    Raises one of DECODE_ERRORS for an unreadable or truncated file.
    """
    with Image.open(path) as image:
        image.load()  # decodes fully here: a truncated file fails now, not later
        rgb = image.convert("RGB")
    resized = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


# What a broken file can make PIL raise: besides OSError ("image file is truncated") and
# UnidentifiedImageError, its format plugins let SyntaxError, EOFError, struct.error and IndexError
# through from load() on some corrupt files.
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
)


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
    # Decoded straight into one array: a list of images plus np.stack of it would need twice the memory.
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def attempt(index: int) -> str | None:
        try:
            images[index] = load_image(paths[index], size)
        except DECODE_ERRORS as error:
            return one_line(f"{type(error).__name__}: {error}")
        return None

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results: Iterable = pool.map(attempt, range(len(paths)))
        if progress is not None:
            results = progress(results)
        outcomes = list(results)
    failed = {i: message for i, message in enumerate(outcomes) if message is not None}
    good = [i for i in range(len(paths)) if i not in failed]
    return (images[good] if failed else images), good, failed
