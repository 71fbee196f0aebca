"""Unit tests for stages.lib.images: listing a class-per-folder tree and decoding its images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.lib.errors import UserError
from stages.lib.images import decode_images, load_image, scan_folder


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (20, 12), fmt: str | None = None) -> Path:
    """A small image whose pixels vary, so resizing and colour conversion have something to work on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    rgb = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    rgb.convert(mode).save(path, format=fmt)
    return path


def test_scan_lists_sorted_classes_and_images(tmp_path: Path) -> None:
    for rel in ("tulips/b.jpg", "tulips/a.jpg", "daisy/z.jpg", "daisy/c.png", "roses/only.jpeg"):
        write_image(tmp_path / rel, fmt="PNG" if rel.endswith(".png") else "JPEG")
    scan = scan_folder(tmp_path)
    assert scan.root == tmp_path
    assert scan.classes == ("daisy", "roses", "tulips")
    assert scan.images == (
        ("daisy/c.png", "daisy"),
        ("daisy/z.jpg", "daisy"),
        ("roses/only.jpeg", "roses"),
        ("tulips/a.jpg", "tulips"),
        ("tulips/b.jpg", "tulips"),
    )
    assert scan.stray_files == ()


def test_scan_reports_stray_files_and_accepts_upper_case_suffixes(tmp_path: Path) -> None:
    write_image(tmp_path / "daisy" / "IMG_0001.JPG", fmt="JPEG")
    write_image(tmp_path / "daisy" / "IMG_0002.Jpeg", fmt="JPEG")
    (tmp_path / "daisy" / "LICENSE.txt").write_text("cc-by\n")
    (tmp_path / "daisy" / "notes").write_text("no suffix\n")
    scan = scan_folder(tmp_path)
    assert [rel for rel, _ in scan.images] == ["daisy/IMG_0001.JPG", "daisy/IMG_0002.Jpeg"]
    assert sorted(scan.stray_files) == ["daisy/LICENSE.txt", "daisy/notes"]


def test_scan_never_takes_hidden_files_or_folders_for_images(tmp_path: Path) -> None:
    write_image(tmp_path / "roses" / "a.jpg", fmt="JPEG")
    # macOS leaves ._name resource forks with the image's own suffix, and .DS_Store files.
    (tmp_path / "roses" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (tmp_path / "roses" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    write_image(tmp_path / "roses" / ".thumbnails" / "a.jpg", fmt="JPEG")
    write_image(tmp_path / ".trash" / "b.jpg", fmt="JPEG")
    scan = scan_folder(tmp_path)
    assert scan.classes == ("roses",)
    assert scan.images == (("roses/a.jpg", "roses"),)
    # Hidden files are accounted for as non-images (the data summary counts every file found).
    assert sorted(scan.stray_files) == ["roses/.DS_Store", "roses/._a.jpg"]


def test_scan_descends_into_the_tf_flowers_archive_layout(tmp_path: Path) -> None:
    # tf_flowers' archive: flower_photos/LICENSE.txt beside flower_photos/<class>/*.jpg.
    photos = tmp_path / "unpacked" / "flower_photos"
    write_image(photos / "sunflowers" / "1.jpg", fmt="JPEG")
    write_image(photos / "daisy" / "2.jpg", fmt="JPEG")
    (photos / "LICENSE.txt").write_text("licences\n")
    scan = scan_folder(tmp_path / "unpacked")
    assert scan.root == photos
    assert scan.classes == ("daisy", "sunflowers")
    assert scan.images == (("daisy/2.jpg", "daisy"), ("sunflowers/1.jpg", "sunflowers"))
    assert scan.stray_files == ()  # LICENSE.txt sits beside the classes, not in one


def test_scan_keeps_a_single_class_folder_as_a_class(tmp_path: Path) -> None:
    write_image(tmp_path / "sunflowers" / "1.jpg", fmt="JPEG")
    scan = scan_folder(tmp_path)
    assert scan.root == tmp_path
    assert scan.classes == ("sunflowers",)


def test_scan_walks_nested_folders_inside_a_class(tmp_path: Path) -> None:
    write_image(tmp_path / "tulips" / "2019" / "b.jpg", fmt="JPEG")
    write_image(tmp_path / "tulips" / "a.jpg", fmt="JPEG")
    write_image(tmp_path / "daisy" / "c.jpg", fmt="JPEG")
    scan = scan_folder(tmp_path)
    assert scan.images == (("daisy/c.jpg", "daisy"), ("tulips/2019/b.jpg", "tulips"), ("tulips/a.jpg", "tulips"))


def test_scan_without_images_or_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a folder"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "daisy").mkdir()
    (tmp_path / "daisy" / "README.md").write_text("nothing here\n")
    with pytest.raises(UserError, match="holds no images"):
        scan_folder(tmp_path)


@pytest.mark.parametrize(
    ("mode", "fmt", "name"),
    [("RGB", "JPEG", "rgb.jpg"), ("L", "JPEG", "gray.jpg"), ("RGBA", "PNG", "alpha.png"), ("CMYK", "JPEG", "cmyk.jpg")],
)
def test_load_image_gives_square_rgb_uint8(tmp_path: Path, mode: str, fmt: str, name: str) -> None:
    path = write_image(tmp_path / name, mode=mode, size=(20, 12), fmt=fmt)
    image = load_image(path, 16)
    assert image.shape == (16, 16, 3)
    assert image.dtype == np.uint8


def test_load_image_grayscale_has_equal_channels(tmp_path: Path) -> None:
    path = write_image(tmp_path / "gray.png", mode="L", fmt="PNG")
    image = load_image(path, 8).astype(int)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_load_image_drops_alpha_keeping_colour(tmp_path: Path) -> None:
    # A fully transparent red PNG: the colour channels stay, the alpha channel goes.
    pixels = np.zeros((10, 10, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    Image.fromarray(pixels).save(tmp_path / "red.png")
    image = load_image(tmp_path / "red.png", 10)
    assert image.shape == (10, 10, 3)
    assert (image == [200, 0, 0]).all()


def test_load_image_without_resizing_keeps_pixels(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(9, 9, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "exact.png")
    np.testing.assert_array_equal(load_image(tmp_path / "exact.png", 9), pixels)


def test_load_image_fails_on_truncated_file(tmp_path: Path) -> None:
    path = write_image(tmp_path / "whole.jpg", size=(64, 64), fmt="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OSError):
        load_image(truncated, 16)


def test_decode_images_keeps_order_and_reports_failures_by_index(tmp_path: Path) -> None:
    paths = []
    for index in range(6):
        pixels = np.full((5, 5, 3), index * 40, dtype=np.uint8)  # each image its own grey level
        path = tmp_path / f"{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    (tmp_path / "1.png").write_bytes(b"not an image")
    paths[4] = tmp_path / "gone.png"  # missing file
    images, good, failed = decode_images(paths, 5, workers=3)
    assert good == [0, 2, 3, 5]
    assert sorted(failed) == [1, 4]
    assert failed[1].startswith("UnidentifiedImageError")
    assert failed[4].startswith("FileNotFoundError")
    assert images.shape == (4, 5, 5, 3)
    assert images.dtype == np.uint8
    assert [int(image[0, 0, 0]) for image in images] == [0, 80, 120, 200]


def test_decode_images_passes_results_through_progress(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(path)
    seen = []

    def progress(results):
        for result in results:
            seen.append(result)
            yield result

    _, good, failed = decode_images([path, path], 4, progress=progress)
    assert len(seen) == 2
    assert good == [0, 1]
    assert failed == {}


def test_decode_images_all_failed_gives_an_empty_stack(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    images, good, failed = decode_images([tmp_path / "bad.jpg"], 7)
    assert images.shape == (0, 7, 7, 3)
    assert images.dtype == np.uint8
    assert good == []
    assert list(failed) == [0]
