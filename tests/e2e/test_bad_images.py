"""A folder source with the files real photo folders hold: readable images of every kind are used, as a
viewer shows them (EXIF orientation, 16-bit, transparency), unreadable ones are skipped and counted, exact
duplicates are found, and all of it appears in the stages' output and in data/prepared/summary.json beside
the labels table.
"""

from __future__ import annotations

import io
import json
import shutil
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
# Images a viewer shows otherwise than their stored pixels (issue 30 cases 1, 2 and 9), and what each becomes.
PHONE_PHOTO = "roses/phone.jpg"  # stored sideways with EXIF orientation 6: a mark at its stored top-left
SIXTEEN_BIT = "tulips/sixteen.png"  # 16-bit grayscale, values 8,000-26,000 of 65,535: mean 66 on 8 bits
TRANSPARENT = "daisy/transparent.png"  # its left half transparent (storing black), shown white
HUGE = "dandelion/huge.png"  # 9,500 x 9,500: above Pillow's decompression-bomb warning limit (89.5 Mpx)
DAMAGED_EXIF = "sunflowers/damaged_exif.jpg"  # its EXIF block cut short: Pillow warns without naming it
SHOWN_AS_A_VIEWER_DOES = (PHONE_PHOTO, SIXTEEN_BIT, TRANSPARENT, HUGE, DAMAGED_EXIF)
# Exact copies (issue 30 case 3): one within a class, one in another class.
COPY_WITHIN = ("daisy/daisy_0000.jpg", "daisy/copy of daisy_0000.jpg")
COPY_ACROSS = ("dandelion/dandelion_0001.jpg", "sunflowers/dandelion_0001.jpg")
DECODED = 5 * GOOD_PER_CLASS + len(READABLE) + len(SHOWN_AS_A_VIEWER_DOES) + 2  # 2: the copies
USED = DECODED - 3  # the copy within daisy, and both copies of the picture in two classes (data.duplicates: drop)


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
    stored = np.zeros((24, 48, 3), dtype=np.uint8)
    stored[:12, :12] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the mark at the top-right
    Image.fromarray(stored).save(root / PHONE_PHOTO, exif=exif, quality=95)
    Image.fromarray(np.linspace(8000, 26000, 48 * 48).reshape(48, 48).astype(np.uint16)).save(root / SIXTEEN_BIT)
    rgba = np.zeros((48, 48, 4), dtype=np.uint8)
    rgba[:, 24:] = (200, 30, 60, 255)
    Image.fromarray(rgba).save(root / TRANSPARENT)
    Image.new("L", (9500, 9500), 90).save(root / HUGE)
    exif = Image.Exif()
    exif[0x010F] = "Maker of this camera"
    exif[0x0112] = 3
    exif[0x9003] = "2020:01:01 00:00:00"
    flower_image("sunflowers", 48, rng).save(root / DAMAGED_EXIF, exif=exif.tobytes()[:-30])
    for original, copy in (COPY_WITHIN, COPY_ACROSS):
        shutil.copy(root / original, root / copy)
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
    assert report["images_decoded"] == DECODED
    assert report["skipped_unreadable"] == len(UNREADABLE)
    assert sorted(report["unreadable"]) == sorted(UNREADABLE)
    assert all(message for message in report["unreadable"].values())
    assert report["skipped_not_images"] == len(NOT_IMAGES)
    assert sorted(report["not_images"]) == sorted(NOT_IMAGES)
    assert report["files_found"] == DECODED + len(UNREADABLE) + len(NOT_IMAGES)
    assert sum(report["usable_per_class"].values()) == USED
    assert sum(report["split"][name]["images"] for name in ("train", "val", "test")) == USED
    assert (report["split"]["train"]["images"], report["split"]["val"]["images"]) == (30, 20)


def test_what_decoding_changed_is_counted(prepared: tuple[Path, str, str]) -> None:
    repo, _, _ = prepared
    report = json.loads((repo / "data/prepared/summary.json").read_text())
    assert report["converted_files"] == {
        "exif_orientation": [PHONE_PHOTO],
        "16_bit": [SIXTEEN_BIT],
        "grayscale": sorted([HUGE, "tulips/gray.jpg", SIXTEEN_BIT]),
        "palette": ["daisy/palette.gif"],
        "cmyk": ["dandelion/cmyk.jpg"],
        "transparency": [TRANSPARENT],
        "other_mode": [],
    }
    assert report["converted"] == {kind: len(files) for kind, files in report["converted_files"].items()}
    assert report["oversized"] == {HUGE: "9500x9500"}


def test_images_are_used_as_a_viewer_shows_them(prepared: tuple[Path, str, str]) -> None:
    """Issue 30 cases 1 and 2: the phone photo's mark ended at the bottom-left, the 16-bit image was white."""
    repo, _, _ = prepared
    pixels = prepared_pixels(repo)
    phone = pixels[PHONE_PHOTO].mean(axis=2)
    assert phone[:8, -8:].mean() > 200  # the mark at the top-right, as shown
    assert max(phone[:8, :8].mean(), phone[-8:, :8].mean(), phone[-8:, -8:].mean()) < 30
    sixteen = pixels[SIXTEEN_BIT].astype(float)
    assert abs(sixteen.mean() - 17000 / 257) < 1  # 66, not 255 (every value clipped) nor 131
    transparent = pixels[TRANSPARENT]
    assert (transparent[:, :12] == 255).all()  # the transparent half is the white behind it
    assert transparent[:, -12:].tolist() == [[[200, 30, 60]] * 12] * 32


def test_duplicates_count_once_in_a_class_and_a_picture_in_two_classes_is_left_out(
    prepared: tuple[Path, str, str],
) -> None:
    """Issue 30 case 3: a copy under two classes was trained as one and tested as the other, unreported."""
    repo, _, subsample = prepared
    report = json.loads((repo / "data/prepared/summary.json").read_text())["duplicates"]
    assert report["rule"] == "drop"
    assert report["within_class"] == [sorted(COPY_WITHIN)]
    assert report["across_classes"] == [sorted(COPY_ACROSS)]
    first, second = sorted(COPY_WITHIN)  # within a class, the first file by path stands for the picture
    assert report["not_used"] == sorted([second, *COPY_ACROSS])
    table = pd.read_csv(repo / "data/prepared/labels.csv")
    assert first in set(table["file"])
    assert not set(report["not_used"]) & set(table["file"])
    lines = [line for line in subsample.splitlines() if line.startswith("subsample: duplicates")]
    assert lines == [
        "subsample: duplicates (identical pixels): 1 within a class (1 extra copies not used); 1 across classes "
        f"(not used: data.duplicates = drop; {' = '.join(sorted(COPY_ACROSS))}); listed in data/prepared/summary.json"
    ]


def test_a_huge_image_is_named_in_one_line_without_pillow_s_warning(prepared: tuple[Path, str, str]) -> None:
    """Issue 30 case 9: Pillow's DecompressionBombWarning, printed raw, did not name the file."""
    _, _, subsample = prepared
    assert "DecompressionBombWarning" not in subsample
    lines = [line for line in subsample.splitlines() if HUGE in line]
    assert len(lines) == 1 and "above Pillow's decompression-bomb limit of 89 Mpx decoded anyway" in lines[0]


def test_pillow_s_warnings_are_named_with_their_file(prepared: tuple[Path, str, str]) -> None:
    """A damaged EXIF block made Pillow print `UserWarning: Truncated File Read`, naming no file."""
    repo, _, subsample = prepared
    assert "UserWarning" not in subsample and "Truncated File Read" in subsample
    report = json.loads((repo / "data/prepared/summary.json").read_text())
    assert report["decoder_warnings"] == {DAMAGED_EXIF: "Truncated File Read"}
    lines = [line for line in subsample.splitlines() if DAMAGED_EXIF in line]
    assert lines == [
        "subsample: 1 images decoded despite Pillow's warnings (damaged metadata: an EXIF orientation may be lost): "
        f"{DAMAGED_EXIF} (Truncated File Read); listed in data/prepared/summary.json"
    ]


def prepared_pixels(repo: Path) -> dict[str, np.ndarray]:
    """Each prepared image by its file name."""
    table = pd.read_csv(repo / "data/prepared/labels.csv")
    pixels = {}
    for split in ("train", "val", "test"):
        files = table.loc[table["split"] == split, "file"]
        pixels.update(zip(files, np.load(repo / f"data/prepared/{split}_images.npy"), strict=True))
    return pixels


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
    assert "LICENSE.txt" in download.splitlines()[-1]  # beside the class folders: not copied, but said so
    assert (
        f"subsample: {DECODED} images decoded, {len(UNREADABLE)} unreadable and {len(NOT_IMAGES)} "
        "non-image files skipped" in subsample
    )
    assert (
        "subsample: converted to 8-bit RGB as a viewer shows them: 1 turned upright by their EXIF orientation, "
        "1 16-bit scaled to 8, 3 grayscale, 1 palette, 1 CMYK, 1 with transparency put on white"
    ) in subsample.splitlines()


def test_split_larger_than_the_readable_images(prepared: tuple[Path, str, str]) -> None:
    """The file count allows it, but after skipping the unreadable files too few images are left."""
    repo, _, _ = prepared
    candidates = DECODED + len(UNREADABLE)
    # No validation set, so that the training pool alone is what does not fit.
    write_params(repo, {"data": {"train_size": candidates - 1, "val_size": 0}, "train": {"select_epoch": "last"}})
    try:
        result = run(repo, sys.executable, "-m", "stages.subsample", check=False)
    finally:
        write_params(repo, {"data": {"train_size": 30, "val_size": 20}, "train": {"select_epoch": "val"}})
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error == (
        f"subsample: error: data.train_size = {candidates - 1} is more than the {USED} usable images "
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


def test_data_duplicates_error_refuses_and_keep_uses_one_copy_per_class(tmp_path: Path) -> None:
    source = make_flower_folder(tmp_path / "flower_photos", per_class=6, size=32, seed=3)
    shutil.copy(source / "daisy/daisy_0000.jpg", source / "roses/daisy_0000.jpg")
    repo = make_project(tmp_path / "project", source, {"data": {"train_size": 10, "val_size": 5}})
    run(repo, sys.executable, "-m", "stages.download")
    write_params(repo, {"data": {"duplicates": "error"}})
    refused = run(repo, sys.executable, "-m", "stages.subsample", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines()[-1] == (
        "subsample: error: data.duplicates = error: 1 pictures are in more than one class (identical pixels), "
        "e.g. daisy/daisy_0000.jpg = roses/daisy_0000.jpg; remove the wrong copies from data.source, or set "
        "data.duplicates: drop (leave them out) or keep (one copy per class)"
    )
    assert not (repo / "data/prepared").exists()
    write_params(repo, {"data": {"duplicates": "keep"}})
    run(repo, sys.executable, "-m", "stages.subsample")
    table = pd.read_csv(repo / "data/prepared/labels.csv")
    assert {"daisy/daisy_0000.jpg", "roses/daisy_0000.jpg"} <= set(table["file"]) and len(table) == 31
    report = json.loads((repo / "data/prepared/summary.json").read_text())["duplicates"]
    assert report["across_classes"] == [["daisy/daisy_0000.jpg", "roses/daisy_0000.jpg"]] and report["not_used"] == []
    splits = set(table.loc[table["file"].str.endswith("daisy_0000.jpg"), "split"])
    assert report["across_splits"] == ([report["across_classes"][0]] if len(splits) > 1 else [])
