"""What `data.source` and `noise_labels` hold: fingerprints of their contents (`model.weights`: backbone.resnet).

A fingerprint holds what the data are, not where they are: the same folder at another path (another clone,
another machine) gives the same fingerprint. `tfds` and `imagenet` need no hashing: tensorflow-datasets
pins the dataset's version and checks its checksum, and Keras checks the weights file's hash.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from stages.lib.core.errors import UserError
from stages.lib.core.io import file_digest
from stages.lib.data.images import scan_folder

# The tensorflow-datasets dataset and version the download stage builds (tfds checks its checksum).
TFDS_DATASET = "tf_flowers:3.0.1"


def folder_digest(root: Path, name: str) -> tuple[str, int]:
    """One sha256 over the files the download stage copies from root (relative path, size and content, in
    sorted order; stages.lib.data.images.walk_files, links followed the same way) and their number. `name` names
    root in errors (a loop, a broken link, no images)."""
    scan = scan_folder(root, name)
    total = hashlib.sha256()
    files = sorted([*(relative for relative, _ in scan.images), *scan.stray_files])
    for relative in files:
        path = scan.root / relative
        total.update(f"{relative}\0{path.stat().st_size}\0{file_digest(path)}\n".encode())  # UTF-8: scan_folder checks
    return total.hexdigest(), len(files)


def resolve_source(source: str) -> Path | None:
    """The local folder or archive `data.source` names (None for `tfds`), checked to exist."""
    if source == "tfds":
        return None
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(
            f"data.source = {source!r}: no such file or folder; use `tfds` or a path to a flower_photos-style "
            "folder (ROOT/<class>/*.jpg) or a .tgz of one"
        )
    return path


def source_fingerprint(source: str) -> dict[str, Any]:
    """What `data.source` holds: the tfds dataset it names, or the hash of a local folder or archive."""
    path = resolve_source(source)
    if path is None:
        return {"kind": "tfds", "dataset": TFDS_DATASET}
    try:
        if path.is_dir():
            digest, count = folder_digest(path, f"data.source = {source!r}")
            return {"kind": "folder", "files": count, "sha256": digest}
        return {"kind": "archive", "bytes": path.stat().st_size, "sha256": file_digest(path)}
    except OSError as error:  # a file without read permission, a special file
        raise UserError(
            f"data.source = {source!r}: cannot read {error.filename!a} ({error.strerror}); "
            "make it readable or remove it"
        ) from None


def noise_labels_fingerprint(noise_labels: str | None) -> dict[str, Any]:
    """What `noise_labels` holds (noise_type given): the hash of the CSV, or none (simulated noise).

    A missing file is left to the corrupt stage, which names it (the fingerprint then says `missing`)."""
    if noise_labels is None:
        return {"kind": "none"}
    path = Path(noise_labels)
    if not path.is_file():
        return {"kind": "missing"}
    return {"kind": "file", "bytes": path.stat().st_size, "sha256": file_digest(path)}
