"""Unit tests for stages.lib.data.duplicates: identical pictures within a class count once; a picture in several
classes is dropped, kept once per class, or refused, as data.duplicates says."""

from __future__ import annotations

import pytest

from stages.lib.core.errors import UserError
from stages.lib.data.duplicates import find_duplicates

# one/a and three/c are the same picture (across classes); three/b, three/d and three/e another (one class).
FILES = ["one/a.png", "one/f.png", "three/b.png", "three/c.png", "three/d.png", "three/e.png", "two/g.png"]
CLASSES = [file.split("/")[0] for file in FILES]
DIGESTS = ["x", "unique1", "y", "x", "y", "y", "unique2"]


def test_without_duplicates_every_image_is_used() -> None:
    found = find_duplicates(["a/1", "b/2"], ["a", "b"], ["p", "q"], "error")
    assert found.used == [0, 1]
    assert (found.within_class, found.across_classes, found.not_used) == ([], [], [])
    assert found.line("error") is None


def test_drop_uses_one_copy_within_a_class_and_none_across_classes() -> None:
    found = find_duplicates(FILES, CLASSES, DIGESTS, "drop")
    assert found.within_class == [["three/b.png", "three/d.png", "three/e.png"]]
    assert found.across_classes == [["one/a.png", "three/c.png"]]
    assert [FILES[i] for i in found.used] == ["one/f.png", "three/b.png", "two/g.png"]
    assert found.not_used == ["one/a.png", "three/c.png", "three/d.png", "three/e.png"]
    line = found.line("drop")
    assert line is not None and "\n" not in line
    assert "1 within a class (2 extra copies not used)" in line
    assert "1 across classes (not used: data.duplicates = drop; one/a.png = three/c.png)" in line


def test_keep_uses_one_copy_per_class() -> None:
    found = find_duplicates(FILES, CLASSES, DIGESTS, "keep")
    assert [FILES[i] for i in found.used] == ["one/a.png", "one/f.png", "three/b.png", "three/c.png", "two/g.png"]
    assert found.not_used == ["three/d.png", "three/e.png"]
    # The report names a group whose used copies the split put into different sets.
    split = {"one/a.png": "train", "three/c.png": "test", "three/b.png": "train", "one/f.png": "val"}
    report = found.report("keep", split)
    assert report["across_splits"] == [["one/a.png", "three/c.png"]]
    assert report["rule"] == "keep" and report["identical"] == "decoded pixels"


def test_error_refuses_a_picture_in_two_classes_in_one_line() -> None:
    with pytest.raises(UserError) as caught:
        find_duplicates(FILES, CLASSES, DIGESTS, "error")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("data.duplicates = error: 1 pictures are in more than one class")
    assert "one/a.png = three/c.png" in message and "data.duplicates: drop" in message


def test_error_accepts_copies_within_a_class() -> None:
    found = find_duplicates(["a/1", "a/2", "b/3"], ["a", "a", "b"], ["p", "p", "q"], "error")
    assert found.used == [0, 2] and found.not_used == ["a/2"]


def test_a_group_in_two_classes_with_copies_in_one_keeps_one_per_class() -> None:
    files = ["a/1", "a/2", "b/3"]
    found = find_duplicates(files, ["a", "a", "b"], ["p", "p", "p"], "keep")
    assert found.used == [0, 2]
    assert found.across_classes == [files] and found.within_class == []
    assert find_duplicates(files, ["a", "a", "b"], ["p", "p", "p"], "drop").used == []
