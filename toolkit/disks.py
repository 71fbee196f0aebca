"""Small real file systems for the tests of full and read-only disks: a tmpfs mounted on a folder.

Mounting needs root (or CAP_SYS_ADMIN) where the machine allows it at all; elsewhere `small_disk` raises
DiskUnavailable with the reason, and the tests skip saying so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DiskUnavailable(Exception):
    """No small file system could be mounted here."""


@contextmanager
def small_disk(folder: Path, kib: int, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of `kib` KiB mounted on `folder` (created), unmounted afterwards; read_only: mounted `ro`."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={kib}k" + (",ro" if read_only else "")
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
        )
    except FileNotFoundError as error:
        raise DiskUnavailable(f"no mount command ({error})") from None
    if mounted.returncode != 0:
        raise DiskUnavailable(f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True, check=False)
