"""The fingerprint of a folder source and the download's copy walk the same files (stages.lib.data.images.walk_files):
links followed the same way, a loop refused once; a copy takes the contents, not a read-only source's modes."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from stages.lib.core.errors import UserError
from stages.lib.data.fetch import fetch
from stages.lib.data.sources import source_fingerprint
from toolkit.synthetic import make_flower_folder


def copied_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def download(source: Path, target: Path) -> list[str]:
    target.mkdir()
    fetch(str(source), target)
    return copied_files(target)


@pytest.fixture
def linked_source(tmp_path: Path) -> Path:
    """Two class folders of their own and a third that is a link to a folder elsewhere (a shared dataset),
    holding a linked subfolder of its own."""
    source = make_flower_folder(tmp_path / "flowers", per_class={"daisy": 3, "roses": 3}, size=16)
    elsewhere = make_flower_folder(tmp_path / "shared", per_class={"tulips": 4}, size=16, seed=1) / "tulips"
    extra = make_flower_folder(tmp_path / "extra", per_class={"tulips": 2}, size=16, seed=2) / "tulips"
    (elsewhere / "more").symlink_to(extra, target_is_directory=True)
    (source / "tulips").symlink_to(elsewhere, target_is_directory=True)
    return source


def test_the_fingerprint_counts_exactly_the_files_the_download_copies(linked_source: Path, tmp_path: Path) -> None:
    copied = download(linked_source, tmp_path / "raw")
    assert len([f for f in copied if f.startswith("tulips/")]) == 4 + 2  # the link and the link inside it
    assert source_fingerprint(str(linked_source))["files"] == len(copied) == 12


def test_an_image_changed_behind_a_linked_class_folder_changes_the_fingerprint(linked_source: Path) -> None:
    """Issue 30 case 4: images deleted behind a linked class folder left the fingerprint as it was."""
    before = source_fingerprint(str(linked_source))
    target = linked_source / "tulips" / "more" / "tulips_0000.jpg"
    target.write_bytes((linked_source / "daisy" / "daisy_0000.jpg").read_bytes())
    after = source_fingerprint(str(linked_source))
    assert after["sha256"] != before["sha256"] and after["files"] == before["files"]
    target.unlink()
    assert source_fingerprint(str(linked_source))["files"] == before["files"] - 1


def test_a_loop_is_refused_once_by_the_fingerprint_and_the_download(linked_source: Path, tmp_path: Path) -> None:
    (linked_source / "roses" / "again").symlink_to(linked_source, target_is_directory=True)
    for attempt in (lambda: source_fingerprint(str(linked_source)), lambda: download(linked_source, tmp_path / "r")):
        with pytest.raises(UserError) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message
        assert message == (
            f"data.source = '{linked_source}': roses/again is a link to a folder that contains it "
            "(a loop); remove the link"
        )


def test_two_links_to_one_folder_are_two_copies_not_a_loop(tmp_path: Path) -> None:
    source = make_flower_folder(tmp_path / "flowers", per_class={"daisy": 2}, size=16)
    shared = make_flower_folder(tmp_path / "shared", per_class={"roses": 2}, size=16, seed=1) / "roses"
    (source / "roses").symlink_to(shared, target_is_directory=True)
    (source / "roses_again").symlink_to(shared, target_is_directory=True)
    copied = download(source, tmp_path / "raw")
    assert len(copied) == source_fingerprint(str(source))["files"] == 6


def test_a_broken_link_is_refused_by_the_fingerprint_already(tmp_path: Path) -> None:
    source = make_flower_folder(tmp_path / "flowers", per_class={"daisy": 2, "roses": 2}, size=16)
    (source / "daisy" / "gone.jpg").symlink_to(tmp_path / "moved_away.jpg")
    with pytest.raises(UserError, match=r"cannot read daisy/gone\.jpg \(a link to nothing: No such file"):
        source_fingerprint(str(source))


def test_a_read_only_source_gives_writable_copies(tmp_path: Path) -> None:
    """Issue 30 case 6: a read-only shared dataset's modes were copied into data/raw, and the next download
    could not replace them."""
    source = make_flower_folder(tmp_path / "flowers", per_class={"daisy": 2, "roses": 2}, size=16)
    for path in source.rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        download(source, tmp_path / "raw")
    finally:
        for path in source.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    for path in (tmp_path / "raw").rglob("*"):
        assert path.stat().st_mode & stat.S_IWUSR, f"{path} is not writable by its owner"
    # What the next download does to the old copy (atomic_dir): delete it.
    shutil.rmtree(tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_an_unreadable_source_file_is_named_as_the_source_s(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a file without read permission")
    source = make_flower_folder(tmp_path / "flowers", per_class={"daisy": 2, "roses": 2}, size=16)
    (source / "daisy" / "daisy_0000.jpg").chmod(0)
    with pytest.raises(UserError, match=r"cannot read daisy/daisy_0000\.jpg \(Permission denied\)"):
        download(source, tmp_path / "raw")
