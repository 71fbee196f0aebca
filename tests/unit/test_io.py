"""Atomic outputs (stages.lib.core.io) get the modes a plain write would give them, not tempfile's private ones."""

from __future__ import annotations

import os
from pathlib import Path

from stages.lib.core.io import atomic_dir, atomic_path


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_an_atomic_file_and_folder_have_the_modes_open_and_mkdir_give(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "report.png") as tmp:
        tmp.write_bytes(b"png")
    with atomic_dir(tmp_path / "plots") as staging:
        (staging / "a.csv").write_text("x\n")
    plain = tmp_path / "plain"
    plain.write_text("x")
    (tmp_path / "plain_dir").mkdir()
    assert (tmp_path / "report.png").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask()
    assert (tmp_path / "plots").stat().st_mode & 0o777 == (tmp_path / "plain_dir").stat().st_mode & 0o777
