"""One kind of error for everything a user can fix, the machine's own faults named as such, and the entry point
every stage runs through."""

from __future__ import annotations

import errno
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """A problem with params or input data: reported in one line, without a traceback."""


def one_line(text: object, limit: int | None = None) -> str:
    """`text` on a single line (third-party messages often span several), cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if limit is None or len(flat) <= limit else flat[: limit - 1] + "…"


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# Faults of the file system written to, never of a source read from.
TARGET_FAULTS = DISK_FULL | {errno.EROFS}
PERMISSION = frozenset({errno.EACCES, errno.EPERM})
# NumPy's message when fwrite writes less than asked, without an errno (a full disk, in practice).
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def _shown(path: Path) -> str:
    """A path as the user knows it: relative to the project's root when inside it."""
    absolute = path.absolute()
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(absolute)


def _free_space(folder: Path) -> str:
    for candidate in (folder.absolute(), *folder.absolute().parents):
        try:
            usage = shutil.disk_usage(candidate)
            return f"{usage.free / 2**20:.1f} of {usage.total / 2**20:.1f} MiB free"
        except OSError:  # not there (yet), or not ours to look at: its parent's disk
            continue
    return "free space unknown"


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a parent we may not enter
        return False


def describe_os_fault(error: OSError, writing: Path | None = None) -> str | None:
    """One line naming the folder and the fix for an OSError the machine caused — a full disk or quota, a
    read-only file system, no permission — or None for any other, which is a bug and keeps its traceback.

    `writing`: the output being written when it happened (stages.lib.core.io knows it; a write through an open
    file carries no file name).
    """
    short_write = error.errno is None and _SHORT_WRITE.fullmatch(str(error)) is not None
    if error.errno in TARGET_FAULTS or short_write:
        named = writing or error.filename2 or error.filename  # shutil's copy names the source first
        folder = Path(named).parent if named else Path.cwd()
        if error.errno == errno.EROFS:
            return (
                f"{_shown(folder)} is on a read-only file system ({error.strerror}): run the project from a "
                "writable folder (a clone on a writable disk), or mount that disk writable"
            )
        why = error.strerror if error.errno else f"a short write: {error}"
        return (
            f"the disk holding {_shown(folder)} is full or over quota ({why}; {_free_space(folder)}): "
            "free space on it, or move the project to a disk with room, then rerun"
        )
    if error.errno in PERMISSION:
        if writing is not None and (not error.filename or Path(error.filename).parent == writing.parent):
            place, folder = writing, writing.parent  # the output, not its temporary name beside it
        else:
            place = Path(error.filename) if error.filename else Path.cwd()
            folder = place if _is_folder(place) else place.parent
        return (
            f"permission denied on {_shown(place)} ({error.strerror}): give your user access to {_shown(folder)} "
            f"(e.g. `chmod -R u+rwX {_shown(folder)}`), or run as the user who owns it"
        )
    return None


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); a user error, or a fault of the machine (describe_os_fault), becomes one
    `<name>: error: ...` line on stderr and exit status 2. Anything else keeps its traceback."""
    try:
        main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted; no output was completed", file=sys.stderr)
        sys.exit(130)
    except UserError as error:
        print(f"{name}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        line = describe_os_fault(error)
        if line is None:
            raise
        print(f"{name}: error: {one_line(line)}", file=sys.stderr)
        sys.exit(2)
