"""Filling a folder with tf_flowers' images, <class name>/<image>, from the configured source.

`data.source: tfds` downloads it with tensorflow-datasets; a path takes a local flower_photos-style
folder or a .tgz of one, so the pipeline runs with no network. Either way the folder holds the same
layout, and what reads it never cares where it came from.
"""

from __future__ import annotations

import lzma
import os
import shutil
import sys
import tarfile
import zlib
from pathlib import Path

from stages.lib.core.errors import TARGET_FAULTS, UserError, one_line
from stages.lib.core.network import NetworkUnreachable, require_tfds_reachable
from stages.lib.core.tf_import import import_tensorflow
from stages.lib.data.images import scan_folder
from stages.lib.data.sources import TFDS_DATASET, resolve_source

TFDS_DIR = Path("data/.tfds")  # tensorflow-datasets' own download cache; git-ignored, not a DVC output
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What a damaged archive makes tarfile raise: ReadError (not a tar, a bad header), OSError (bad gzip or bzip2
# data, a gzip CRC mismatch), EOFError (a compressed stream cut short), zlib and lzma errors (corrupt blocks).
DAMAGED_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


def image_suffix(data: bytes) -> str:
    """The file suffix for encoded image bytes: tf_flowers holds JPEGs, tfds' mock data PNGs."""
    return ".png" if data.startswith(PNG_SIGNATURE) else ".jpg"


def export_tfds(target: Path, data_dir: Path = TFDS_DIR) -> int:
    """Download tf_flowers with tensorflow-datasets and write each example's image bytes to target.

    The bytes are the archive's own (no re-encoding), named by the example's position in the
    unshuffled split so the export is identical run after run.
    """
    import tensorflow_datasets as tfds  # TensorFlow itself loads later, in import_tensorflow()

    builder = tfds.builder(TFDS_DATASET, data_dir=str(data_dir))
    try:
        require_tfds_reachable(builder)  # offline: the error in seconds, before TensorFlow loads
    except NetworkUnreachable as error:
        raise _tfds_error(error) from None
    import_tensorflow()
    # The first run fetches a 218 MiB archive: say so, or a silent minute looks like a hang.
    print(f"download: {TFDS_DATASET} with tensorflow-datasets (218 MiB, once) into {data_dir}/", file=sys.stderr)
    try:
        builder.download_and_prepare()
    except ImportError:
        raise  # an incomplete installation, not something the offline advice below would fix
    except Exception as error:  # tfds wraps network failures in many types
        raise _tfds_error(error) from None
    names = builder.info.features["label"].names
    dataset = builder.as_dataset(split="train", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    count = 0
    for index, example in enumerate(tfds.as_numpy(dataset)):
        class_dir = target / names[int(example["label"])]
        class_dir.mkdir(parents=True, exist_ok=True)
        (class_dir / f"{index:05d}{image_suffix(example['image'])}").write_bytes(example["image"])
        count += 1
    return count


def _tfds_error(error: Exception) -> UserError:
    """The one-line error for a tf_flowers download that failed or cannot start, with the offline fix."""
    return UserError(
        f"data.source = tfds: downloading {TFDS_DATASET} failed ({type(error).__name__}: {one_line(error, 300)}). "
        "Offline, set data.source to a local flower_photos folder or .tgz "
        "(e.g. `dvc exp run -S data.source=/path/flower_photos.tgz`)"
    )


def copy_folder(source: Path, target: Path, name: str, move: bool = False) -> tuple[int, tuple[str, ...]]:
    """Copy (or move) the files of the class folders of a flower_photos-style tree into target: every file
    scan_folder lists (stages.lib.data.images.walk_files: the files the fingerprint hashes), bad ones too, since the
    subsample stage decides what is usable and reports what it skipped.

    A copy takes the contents only, not the source's permission bits: a read-only shared dataset gives
    ordinary files in data/raw, which the next download can replace. Returns the number of image files and
    the names of the files beside the class folders, which are not copied (tf_flowers' own archive has a
    LICENSE.txt there). `name` names the source in errors.
    """
    scan = scan_folder(source, name)
    for relative in sorted([*(rel for rel, _ in scan.images), *scan.stray_files]):
        origin, copy = scan.root / relative, target / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(origin, copy)
            continue
        try:
            shutil.copyfile(origin, copy)
        except OSError as error:
            if error.errno in TARGET_FAULTS or error.filename == str(copy):
                raise  # data/raw's disk, not the source: the stage runner names it (stages.lib.core.errors)
            raise UserError(
                f"{name}: cannot read {one_line(relative, 120)} ({one_line(error.strerror or error, 120)}); "
                "remove it or make it readable"
            ) from None
    return len(scan.images), scan.outside_classes


def damaged_archive(name: str, error: BaseException) -> UserError:
    """One line for an archive tarfile cannot read to its end."""
    if isinstance(error, OSError) and error.errno is not None:  # the file system's error, not the archive's
        return UserError(f"{name}: cannot unpack the archive: {error.strerror}: {error.filename}")
    if isinstance(error, EOFError):
        what = "it is truncated (its compressed data end early: an interrupted download or copy?)"
    else:
        what = f"it is damaged ({type(error).__name__}: {one_line(error, 200)})"
    return UserError(f"{name}: cannot unpack the archive: {what}; copy or download it again")


def extract_archive(archive: Path, target: Path, name: str) -> tuple[int, tuple[str, ...]]:
    """Unpack a .tgz of a flower_photos-style tree and move its class folders into target."""
    if archive.stat().st_size == 0:
        raise UserError(f"{name}: cannot unpack the archive: it is an empty file (0 bytes); copy or download it again")
    try:
        tar = tarfile.open(archive)  # noqa: SIM115 (closed by `with tar` below, once open errors are told apart)
    except tarfile.ReadError:
        raise UserError(
            f"{name}: cannot unpack the archive: it is not a tar archive (plain, or compressed with gzip, bzip2 "
            "or xz); make one with `tar czf flower_photos.tgz flower_photos`, or give the folder"
        ) from None
    except DAMAGED_ARCHIVE_ERRORS as error:
        raise damaged_archive(name, error) from None
    # Unpacked inside target, the staging folder: a killed run leaves nothing outside it.
    unpacked = target / ".unpacked"
    try:
        with tar:
            tar.extractall(unpacked, filter="data")  # refuses absolute paths and links out
            # tarfile stops at the end-of-archive marker; gzip checks its CRC at the end of the stream.
            if tar.fileobj is not None:
                while tar.fileobj.read(1 << 20):
                    pass
    except DAMAGED_ARCHIVE_ERRORS as error:
        raise damaged_archive(name, error) from None
    result = copy_folder(unpacked, target, f"{name} (unpacked)", move=True)
    shutil.rmtree(unpacked)
    return result


def fetch(source: str, target: Path) -> tuple[int, tuple[str, ...]]:
    """Fill target (an empty folder) from the configured source.

    Returns the number of image files and the names of the files left out beside the class folders.
    """
    path = resolve_source(source)
    if path is None:
        return export_tfds(target), ()
    name = f"data.source = {source!r}"
    if path.is_dir():
        return copy_folder(path, target, name)
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return extract_archive(path, target, name)
    raise UserError(f"{name}: expected `tfds`, a folder, or a .tgz/.tar.gz/.tar archive")
