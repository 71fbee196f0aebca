"""The stage runner (stages.lib.core.errors.run_stage) and the atomic writers (stages.lib.core.io): a full disk, a
read-only file system and a permission problem end in one line naming the folder and the fix, on real file
systems (a small tmpfs, where this machine lets the tests mount one); a genuine bug keeps its traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from stages.lib.core.errors import run_stage
from stages.lib.core.io import atomic_dir, save_array, write_json
from toolkit.disks import DiskUnavailable, small_disk


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB file system."""
    try:
        with small_disk(tmp_path / "disk", 64) as folder:
            yield folder
    except DiskUnavailable as reason:
        pytest.skip(f"a full disk needs a small file system: {reason}")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    try:
        with small_disk(tmp_path / "read_only", 64, read_only=True) as folder:
            yield folder
    except DiskUnavailable as reason:
        pytest.skip(f"a read-only disk needs a file system mounted read-only: {reason}")


def stage_error(main: Callable[[], None], capsys: pytest.CaptureFixture) -> str:
    """What run_stage prints for a main() that fails: exit status 2 and exactly one line."""
    with pytest.raises(SystemExit) as exited:
        run_stage("embed", main)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_full_disk_while_numpy_writes_is_named(disk: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 30 case 5: embed's features filled the disk and NumPy's `OSError: 614400 requested and 559072
    written` ended the stage with a traceback."""
    features = disk / "features" / "train.npy"
    line = stage_error(lambda: save_array(features, np.zeros((150, 2048), dtype=np.float32)), capsys)
    assert line.startswith(f"embed: error: the disk holding {disk / 'features'} is full or over quota (")
    assert line.endswith("free space on it, or move the project to a disk with room, then rerun")
    assert sorted(p.name for p in (disk / "features").iterdir()) == []  # no half-written file left


def test_a_full_disk_while_copying_is_named(disk: Path, capsys: pytest.CaptureFixture) -> None:
    def copy() -> None:
        with atomic_dir(disk / "raw") as staging:
            (staging / "one").mkdir()
            for index in range(40):
                (staging / "one" / f"{index}.jpg").write_bytes(os.urandom(4096))

    line = stage_error(copy, capsys)
    assert line.startswith(f"embed: error: the disk holding {disk} is full or over quota (No space left on device;")
    assert list(disk.iterdir()) == []


def test_a_read_only_file_system_is_named(read_only_disk: Path, capsys: pytest.CaptureFixture) -> None:
    line = stage_error(lambda: write_json(read_only_disk / "prepared" / "summary.json", {}), capsys)
    assert line == (
        f"embed: error: {read_only_disk / 'prepared'} is on a read-only file system (Read-only file system): run "
        "the project from a writable folder (a clone on a writable disk), or mount that disk writable"
    )


def test_no_permission_is_named(tmp_path: Path) -> None:
    """A real EACCES from the kernel: as root (who may write anywhere) the stage runs in a child process as
    the unprivileged user `nobody`."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    code, stderr = in_child_without_privileges(lambda: run_stage("embed", lambda: write_json(locked / "a.json", {})))
    locked.chmod(0o755)
    assert code == 2, stderr
    # The folder to open up: `locked`, or for `nobody`, root's tmp_path above it, which it cannot even enter.
    folder = locked if os.geteuid() != 0 else tmp_path
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"embed: error: permission denied on {locked}")  # root: the folder; else a.json
    assert lines[0].endswith(f"(e.g. `chmod -R u+rwX {folder}`), or run as the user who owns it")


def in_child_without_privileges(action: Callable[[], None]) -> tuple[int, str]:
    """Run action() in a forked child (as `nobody` when this process is root); its exit code and stderr."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            sys.stderr = os.fdopen(write_end, "w", buffering=1)  # pytest holds fd 2 and sys.stderr
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            action()
            code = 0
        except SystemExit as exited:
            code = exited.code if isinstance(exited.code, int) else 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        stderr = stream.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


def test_a_genuine_bug_keeps_its_traceback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_stage("embed", lambda: (tmp_path / "missing.npy").read_bytes())
    with pytest.raises(IsADirectoryError):
        run_stage("embed", lambda: save_array(tmp_path, np.zeros(3)))  # a path that is a folder: a bug
