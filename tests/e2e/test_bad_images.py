"""A folder source with the files real photo folders hold: readable images of every kind are used,
unreadable ones are skipped and counted, and the counts appear in the stages' output and in
data/prepared/summary.json beside the labels table.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from toolkit.project import make_project, run, write_params
from toolkit.synthetic import flower_image, make_flower_folder

READABLE = {
    "roses/alpha.png": "RGBA",
    "tulips/gray.jpg": "L",
    "dandelion/cmyk.jpg": "CMYK",
    "sunflowers/UPPER_CASE.JPG": "RGB",
    "daisy/palette.gif": "P",
}
UNREADABLE = ("sunflowers/truncated.jpg", "daisy/text_named.jpg", "roses/truncated.png", "tulips/empty.jpeg")
NOT_IMAGES = ("daisy/.DS_Store", "sunflowers/notes.txt")
GOOD_PER_CLASS = 12


def encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def make_messy_folder(root: Path) -> Path:
    """flower_photos/<class>/ with 12 good JPEGs per class plus every kind of odd file, and a LICENSE.txt."""
    make_flower_folder(root, per_class=GOOD_PER_CLASS, size=48, seed=1)
    rng = np.random.default_rng(2)
    photo = flower_image("sunflowers", 48, rng)
    for relative, mode in READABLE.items():
        image = photo.convert(mode)
        image.save(root / relative, format={".png": "PNG", ".gif": "GIF"}.get(Path(relative).suffix, "JPEG"))
    jpeg, png = encoded(photo, "JPEG"), encoded(photo, "PNG")
    (root / "sunflowers/truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "daisy/text_named.jpg").write_text("this is not a JPEG\n")
    (root / "roses/truncated.png").write_bytes(png[: len(png) // 2])
    (root / "tulips/empty.jpeg").write_bytes(b"")
    (root / "daisy/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "sunflowers/notes.txt").write_text("picked in June\n")
    (root / "LICENSE.txt").write_text("All images are licensed under CC-BY\n")
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    base = tmp_path_factory.mktemp("messy")
    source = make_messy_folder(base / "flower_photos")
    repo = make_project(base / "project", source, {"data": {"train_size": 30}})
    download = run(repo, sys.executable, "-m", "stages.download")
    subsample = run(repo, sys.executable, "-m", "stages.subsample")
    return repo, download.stderr, subsample.stderr


def test_report_counts_what_was_used_and_skipped(prepared: tuple[Path, str, str]) -> None:
    repo, _, _ = prepared
    report = json.loads((repo / "data/prepared/summary.json").read_text())
    usable = 5 * GOOD_PER_CLASS + len(READABLE)
    assert report["images_decoded"] == usable
    assert report["skipped_unreadable"] == len(UNREADABLE)
    assert sorted(report["unreadable"]) == sorted(UNREADABLE)
    assert all(message for message in report["unreadable"].values())
    assert report["skipped_not_images"] == len(NOT_IMAGES)
    assert sorted(report["not_images"]) == sorted(NOT_IMAGES)
    assert report["files_found"] == usable + len(UNREADABLE) + len(NOT_IMAGES)
    assert sum(report["usable_per_class"].values()) == usable
    assert sum(report["split"][name]["images"] for name in ("train", "val", "test")) == usable
    assert (report["split"]["train"]["images"], report["split"]["val"]["images"]) == (30, 20)


def test_every_readable_kind_of_image_is_used(prepared: tuple[Path, str, str]) -> None:
    repo, _, _ = prepared
    table = pd.read_csv(repo / "data/prepared/labels.csv")
    assert set(READABLE) <= set(table["file"])
    assert not set(UNREADABLE) & set(table["file"])
    assert table.loc[table["file"] == "sunflowers/UPPER_CASE.JPG", "label"].item() == 1
    # Every image became 32×32 RGB; the grayscale one has equal channels.
    for split in ("train", "val", "test"):
        rows = table[table["split"] == split].reset_index(drop=True)
        images = np.load(repo / f"data/prepared/{split}_images.npy")
        assert images.shape == (len(rows), 32, 32, 3) and images.dtype == np.uint8
        gray = rows.index[rows["file"] == "tulips/gray.jpg"]
        if len(gray):
            pixels = images[gray[0]].astype(int)
            assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


def test_counts_appear_in_the_stages_output(prepared: tuple[Path, str, str]) -> None:
    _, download, subsample = prepared
    usable = 5 * GOOD_PER_CLASS + len(READABLE)
    assert "LICENSE.txt" in download.splitlines()[-1]  # beside the class folders: not copied, but said so
    assert (
        f"subsample: {usable} images decoded, {len(UNREADABLE)} unreadable and {len(NOT_IMAGES)} "
        "non-image files skipped" in subsample
    )


def test_split_larger_than_the_readable_images(prepared: tuple[Path, str, str]) -> None:
    """The file count allows it, but after skipping the unreadable files too few images are left."""
    repo, _, _ = prepared
    candidates = 5 * GOOD_PER_CLASS + len(READABLE) + len(UNREADABLE)
    # No validation set, so that the training pool alone is what does not fit.
    write_params(repo, {"data": {"train_size": candidates - 1, "val_size": 0}, "train": {"select_epoch": "last"}})
    try:
        result = run(repo, sys.executable, "-m", "stages.subsample", check=False)
    finally:
        write_params(repo, {"data": {"train_size": 30, "val_size": 20}, "train": {"select_epoch": "val"}})
    assert result.returncode == 2
    usable = 5 * GOOD_PER_CLASS + len(READABLE)
    error = result.stderr.strip().splitlines()[-1]
    assert error == (
        f"subsample: error: data.train_size = {candidates - 1} is more than the {usable} usable images "
        "(the test set needs at least one)"
    )


def test_archive_source_gives_the_same_raw_files(prepared: tuple[Path, str, str], tmp_path: Path) -> None:
    """A .tgz laid out like tf_flowers' own (flower_photos/LICENSE.txt + class folders) unpacks to the
    same data/raw as the folder, with nothing of the unpacking left behind."""
    repo, _, _ = prepared
    folder = Path(yaml.safe_load((repo / "params.yaml").read_text())["data"]["source"])
    archive = tmp_path / "flower_photos.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="flower_photos")
    from_folder = sorted(p.relative_to(repo / "data/raw") for p in (repo / "data/raw").rglob("*"))
    other = make_project(tmp_path / "project", archive)
    result = run(other, sys.executable, "-m", "stages.download")
    assert sorted(p.relative_to(other / "data/raw") for p in (other / "data/raw").rglob("*")) == from_folder
    assert sorted(p.name for p in (other / "data").iterdir()) == ["raw"]
    assert "not copied, beside the class folders: LICENSE.txt" in result.stderr
