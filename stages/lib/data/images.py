"""Finding and decoding the images of a flower_photos-style folder (`ROOT/<class name>/<image>`)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stages.lib.core.errors import UserError, one_line

# Lower-cased; file names are matched case-insensitively (cameras write .JPG).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclasses.dataclass(frozen=True)
class FolderScan:
    """What a class-per-folder tree holds: candidate images and the files that are not images."""

    root: Path
    classes: tuple[str, ...]  # sorted; a class's index is its position here
    images: tuple[tuple[str, str], ...]  # (path relative to root, class name), sorted by path
    stray_files: tuple[str, ...]  # relative paths of files in class folders without an image suffix
    outside_classes: tuple[str, ...] = ()  # files beside the class folders (tf_flowers' LICENSE.txt)


def _visible(name: str) -> bool:
    return not name.startswith(".")  # .DS_Store, ._resource forks, editors' swap files


def _identity(folder: Path) -> tuple[int, int]:
    """What a folder is, whatever link it was reached through."""
    info = folder.stat()
    return info.st_dev, info.st_ino


def find_class_root(root: Path) -> Path:
    """The folder whose subfolders are the classes.

    tf_flowers' archive unpacks to `flower_photos/<class>/`, beside a LICENSE.txt; a root that holds a
    single folder and no class folders of its own is descended into.
    """
    current, seen = root, set()
    while _identity(current) not in seen:  # a link back up: stop, and the walk below refuses the loop
        seen.add(_identity(current))
        subdirs = [d for d in current.iterdir() if d.is_dir() and _visible(d.name)]
        has_images = any(f.suffix.lower() in IMAGE_SUFFIXES for d in subdirs for f in d.iterdir() if f.is_file())
        if has_images or len(subdirs) != 1:
            return current
        current = subdirs[0]
    return current


def _check_utf8(relative: str, name: str) -> None:
    # Python keeps undecodable bytes of a file name as surrogates, which no UTF-8 file (labels.csv) can hold.
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(
            f"{name}: the file name {relative!a} is not valid UTF-8 (labels.csv stores file names as UTF-8); rename it"
        ) from None


def _not_a_file(path: Path) -> str:
    """Why a directory entry that is neither a folder nor a file cannot be copied."""
    if path.is_symlink() and not path.exists():
        return "a link to nothing: No such file or directory"
    if path.is_fifo():
        return "a named pipe, not a file"
    return "not a regular file"


def walk_files(folder: Path, class_root: Path, name: str, ancestors: frozenset = frozenset()) -> Iterator[str]:
    """Every file below `folder` as a path relative to `class_root`: a folder's files (sorted) before its
    subfolders'. Links are followed, to folders too; hidden folders are skipped. The download stage copies
    exactly these files and the fingerprint hashes exactly these. A link back to a folder it is inside (a
    loop), a broken link or a special file is refused with a UserError naming it (`name`: the source)."""
    identity = _identity(folder)
    if identity in ancestors:
        relative = one_line(folder.relative_to(class_root).as_posix(), 120)
        raise UserError(f"{name}: {relative} is a link to a folder that contains it (a loop); remove the link")
    ancestors = ancestors | {identity}
    subfolders = []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        path = Path(entry.path)
        if entry.is_dir():  # follows links
            if _visible(entry.name):
                subfolders.append(path)
            continue
        relative = path.relative_to(class_root).as_posix()
        _check_utf8(relative, name)
        if not entry.is_file():
            raise UserError(
                f"{name}: cannot read {one_line(relative, 120)} ({_not_a_file(path)}); "
                "remove it or make it readable (a link must point to a file)"
            )
        yield relative
    for subfolder in subfolders:
        yield from walk_files(subfolder, class_root, name, ancestors)


def scan_folder(root: Path | str, name: str | None = None) -> FolderScan:
    """List a class-per-folder tree (walk_files in each visible class folder). Raises UserError if it is
    missing or holds no images, or holds something walk_files refuses.

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
    above = frozenset({_identity(root), _identity(class_root)})  # a link up to these is a loop too
    for class_dir in sorted(d for d in class_root.iterdir() if d.is_dir() and _visible(d.name)):
        for relative in walk_files(class_dir, class_root, name, above):
            file_name = relative.rpartition("/")[2]
            if _visible(file_name) and Path(file_name).suffix.lower() in IMAGE_SUFFIXES:
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


# How a decoded image was changed to become what a viewer shows, as 8-bit RGB; data/prepared/summary.json
# counts each. exif_orientation: turned upright as its EXIF Orientation tag says (phones store photos sideways
# and tag them); 16_bit: 16 bits per channel scaled to 8 (65535 -> 255; grayscale is scaled here, colour by
# Pillow's decoder); grayscale, palette, cmyk: expanded to RGB (CMYK by Pillow's formula, without an ICC
# profile); transparency: composited on white, as a page or viewer shows it; other_mode: any other Pillow mode.
CONVERSIONS = ("exif_orientation", "16_bit", "grayscale", "palette", "cmyk", "transparency", "other_mode")
_ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 is upright, 2-8 a mirror and/or a rotation
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La"})
_PALETTE_MODES = frozenset({"P", "PA"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # "I": Pillow's 16-bit PGM


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """One image as the pipeline uses it, and what it took to get there."""

    pixels: np.ndarray  # (size, size, 3) uint8
    # sha256 of the full-size 8-bit RGB pixels and their shape: the same picture gives the same digest,
    # whatever file format or metadata it was stored with (stages.lib.data.duplicates)
    digest: str
    conversions: tuple[str, ...]  # of CONVERSIONS
    oversized: tuple[int, int] | None = None  # (width, height) above Pillow's decompression-bomb warning limit
    warnings: tuple[str, ...] = ()  # what Pillow warned while decoding it (decode_images), e.g. damaged EXIF


def _is_sixteen_bit(image: Image.Image) -> bool:
    """Before load(): 16 bits per channel, which Pillow's decoder turns into 8 for colour modes."""
    if image.mode in _SIXTEEN_BIT_GRAY_MODES:
        return True
    rawmodes = (tile.args if isinstance(tile.args, str) else (tile.args or ("",))[0] for tile in image.tile)
    return any(";16" in str(rawmode) for rawmode in rawmodes)


def _sixteen_bit_gray_to_l(image: Image.Image) -> Image.Image:
    """16-bit grayscale scaled by its bit depth (65535 -> 255, rounded), not clipped at 255 as convert() does."""
    values = np.asarray(image).astype(np.uint32)
    return Image.fromarray(((np.minimum(values, 65535) * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def _on_white(image: Image.Image) -> tuple[Image.Image, bool]:
    """RGB of an image that may hold transparency: composited on white where any pixel is not opaque."""
    rgba = image.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] == 255:
        return rgba.convert("RGB"), False
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB"), True


def to_viewed_rgb(image: Image.Image, sixteen_bit: bool = False) -> tuple[Image.Image, tuple[str, ...]]:
    """A loaded image as a viewer shows it, in 8-bit RGB, and the CONVERSIONS it took.

    `sixteen_bit`: the file stored 16 bits per channel (checked before load(), when Pillow still says so).
    """
    conversions: list[str] = []
    if image.getexif().get(_ORIENTATION_TAG, 1) in range(2, 9):
        image = ImageOps.exif_transpose(image)
        conversions.append("exif_orientation")
    if sixteen_bit:
        conversions.append("16_bit")
    if image.mode in _SIXTEEN_BIT_GRAY_MODES:
        image = _sixteen_bit_gray_to_l(image)
    mode = image.mode
    if mode in _GRAYSCALE_MODES:
        conversions.append("grayscale")
    elif mode in _PALETTE_MODES:
        conversions.append("palette")
    elif mode == "CMYK":
        conversions.append("cmyk")
    elif mode not in ("RGB", "RGBA", "RGBa"):
        conversions.append("other_mode")
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgb, composited = _on_white(image)
        if composited:
            conversions.append("transparency")
    else:
        rgb = image.convert("RGB")
    return rgb, tuple(conversions)


def decode_image(path: Path | str, size: int) -> DecodedImage:
    """Decode any PIL-readable image as a viewer shows it (to_viewed_rgb) and resize it to (size, size, 3) uint8.

    The image is resized to a square without keeping its aspect ratio, as the original experiment did with
    tf.image.resize. Raises one of DECODE_ERRORS for an unreadable or truncated file.
    """
    with Image.open(path) as image:
        width, height = image.size
        limit = Image.MAX_IMAGE_PIXELS
        oversized = (width, height) if limit is not None and width * height > limit else None
        sixteen_bit = _is_sixteen_bit(image)
        image.load()  # decodes fully here: a truncated file fails now, not later
        rgb, conversions = to_viewed_rgb(image, sixteen_bit)
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}\0".encode())
    digest.update(rgb.tobytes())
    resized = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return DecodedImage(np.asarray(resized, dtype=np.uint8), digest.hexdigest(), conversions, oversized)


def load_image(path: Path | str, size: int) -> np.ndarray:
    """decode_image's pixels alone."""
    return decode_image(path, size).pixels


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


@dataclasses.dataclass(frozen=True)
class DecodedFolder:
    """What decode_images made of a list of files."""

    pixels: np.ndarray  # stacked in input order, for the images that decoded
    good: list[int]  # their input indices
    failed: dict[int, str]  # input index -> why it could not be decoded
    digests: list[str]  # per decoded image (DecodedImage.digest), in the order of `good`
    conversions: dict[str, list[int]]  # each of CONVERSIONS -> the input indices of the images it took
    oversized: dict[int, tuple[int, int]]  # input index -> (width, height), above Pillow's decompression-bomb limit
    warnings: dict[int, str]  # input index -> what Pillow warned while decoding it


# The warnings Pillow gives while this thread decodes one image: Pillow's own do not say which file.
_decoding = threading.local()


def _attributed(show: Callable[..., None]) -> Callable[..., None]:
    """A warnings.showwarning that keeps a warning given while a decode_images thread decodes an image with
    that image (`_decoding.warnings`), and shows any other with `show`."""

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        notes = getattr(_decoding, "warnings", None)
        if notes is None:
            show(message, category, filename, lineno, file, line)
        else:
            notes.append(one_line(message, 200))

    return showwarning


def decode_images(
    paths: Iterable[Path],
    size: int,
    workers: int | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> DecodedFolder:
    """Decode many images (decode_image) in parallel threads (PIL releases the GIL while decoding)."""
    paths = list(paths)
    # Decoded straight into one array: a list of images plus np.stack of it would need twice the memory.
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def attempt(index: int) -> DecodedImage | str:
        _decoding.warnings = []
        try:
            decoded = decode_image(paths[index], size)
        except DECODE_ERRORS as error:
            return one_line(f"{type(error).__name__}: {error}")
        finally:
            notes, _decoding.warnings = _decoding.warnings, None
        images[index] = decoded.pixels
        # The row, not a second copy of the pixels; each distinct warning once.
        return dataclasses.replace(decoded, pixels=images[index], warnings=tuple(dict.fromkeys(notes)))

    # Pillow's warnings do not name the file: each is kept with the image it came from (DecodedFolder.warnings),
    # every time (not once per place in Pillow's code). An image above MAX_IMAGE_PIXELS is reported in
    # DecodedFolder.oversized instead of warned about (above twice the limit it fails, DecompressionBombError).
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        warnings.filterwarnings("always", module=r"PIL(\.|$)")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.showwarning = _attributed(warnings.showwarning)
        results: Iterable = pool.map(attempt, range(len(paths)))
        if progress is not None:
            results = progress(results)
        outcomes = list(results)
    failed = {i: outcome for i, outcome in enumerate(outcomes) if isinstance(outcome, str)}
    decoded = {i: outcome for i, outcome in enumerate(outcomes) if not isinstance(outcome, str)}
    good = list(decoded)
    return DecodedFolder(
        pixels=images[good] if failed else images,
        good=good,
        failed=failed,
        digests=[decoded[i].digest for i in good],
        conversions={kind: [i for i in good if kind in decoded[i].conversions] for kind in CONVERSIONS},
        oversized={i: decoded[i].oversized for i in good if decoded[i].oversized is not None},
        warnings={i: "; ".join(decoded[i].warnings) for i in good if decoded[i].warnings},
    )
