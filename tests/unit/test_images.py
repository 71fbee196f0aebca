"""Unit tests for stages.lib.data.images: listing a class-per-folder tree and decoding its images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from stages.lib.core.errors import UserError
from stages.lib.data.images import decode_image, decode_images, load_image, scan_folder


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


def test_transparency_is_put_on_white_and_opaque_pixels_keep_their_colour(tmp_path: Path) -> None:
    """As a viewer shows it: a transparent pixel is the white page behind it, whatever colour it stores."""
    pixels = np.zeros((2, 3, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[:, 0, 3] = 255  # opaque red
    pixels[:, 1, 3] = 0  # transparent (stored red, shown white)
    pixels[:, 2, 3] = 128  # half transparent
    Image.fromarray(pixels).save(tmp_path / "red.png")
    decoded = decode_image(tmp_path / "red.png", 3)
    assert decoded.conversions == ("transparency",)
    row = decoded.pixels[0]
    assert row[0].tolist() == [200, 0, 0]
    assert row[1].tolist() == [255, 255, 255]
    assert row[2].tolist() == [227, 127, 127]  # 200·128/255 + 255·127/255 = 227.4, and 255·127/255
    opaque = np.concatenate([pixels[..., :3], np.full((2, 3, 1), 255, np.uint8)], axis=2)
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    assert decode_image(tmp_path / "opaque.png", 3).conversions == ()  # an opaque alpha channel changes nothing


def test_exif_orientation_turns_the_image_as_a_viewer_shows_it(tmp_path: Path) -> None:
    """Orientation 6: stored lying on its side, shown turned 90° clockwise; a mark at the stored top-left is
    then at the top-right of what a viewer shows (issue 30 case 1: it ended up at the bottom-left)."""
    stored = np.zeros((40, 80, 3), dtype=np.uint8)
    stored[:10, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    decoded = decode_image(tmp_path / "phone.png", 8)
    assert decoded.conversions == ("exif_orientation",)
    # Shown 40 wide and 80 high; the mark at its top right, the rest black.
    shown = decoded.pixels.mean(axis=2)
    assert shown[0, -1] > 200 and max(shown[0, 0], shown[-1, 0], shown[-1, -1]) < 50
    upright = np.rot90(stored, k=-1)  # what the viewer shows
    Image.fromarray(np.ascontiguousarray(upright)).save(tmp_path / "upright.png")
    assert decode_image(tmp_path / "upright.png", 8).digest == decoded.digest  # the same picture


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 3  # upside down
    Image.fromarray(stored).save(tmp_path / "upside_down.jpg", exif=exif, quality=95)
    decoded = decode_image(tmp_path / "upside_down.jpg", 16)
    assert decoded.conversions == ("exif_orientation",)
    shown = decoded.pixels.mean(axis=2)
    assert shown[-1, -1] > 200 and shown[0, 0] < 50  # the mark moved from the top-left to the bottom-right


def test_sixteen_bit_grayscale_is_scaled_by_its_bit_depth_not_clipped(tmp_path: Path) -> None:
    """Issue 30 case 2: a 16-bit PNG read as max 255, mean 131 (every value above 255 clipped) where its own
    scale gives mean 66."""
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    values[0, :3] = (65535, 257, 128)
    Image.fromarray(values).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode == "I;16"
    decoded = decode_image(tmp_path / "sixteen.png", 64)
    assert decoded.conversions == ("16_bit", "grayscale")
    gray = decoded.pixels[..., 0].astype(int)
    assert gray[0, :3].tolist() == [255, 1, 0]  # 65535 -> 255, 257 -> 1, 128 -> 0 (128/257 rounds down)
    assert abs(gray.mean() - values.astype(float).mean() / 257) < 0.6


def test_sixteen_bit_colour_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    _write_png(path, 2, 2, color_type=2, bit_depth=16, rows=[np.array([[65535, 32896, 0]] * 2, ">u2").tobytes()] * 2)
    decoded = decode_image(path, 2)
    assert decoded.conversions == ("16_bit",)
    assert decoded.pixels[0, 0].tolist() == [255, 128, 0]


def _write_png(path: Path, width: int, height: int, color_type: int, bit_depth: int, rows: list[bytes]) -> None:
    """A PNG written chunk by chunk (Pillow cannot write 16-bit colour)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(b"".join(b"\0" + row for row in rows))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("RGB", ()), ("L", ("grayscale",)), ("1", ("grayscale",)), ("P", ("palette",)), ("CMYK", ("cmyk",))],
)
def test_each_conversion_is_named(tmp_path: Path, mode: str, expected: tuple[str, ...]) -> None:
    path = write_image(tmp_path / "image.tif", mode=mode, fmt="TIFF")
    decoded = decode_image(path, 4)
    assert decoded.conversions == expected
    assert decoded.pixels.shape == (4, 4, 3)


def test_an_image_above_the_decompression_bomb_limit_is_named_not_warned(tmp_path: Path, monkeypatch, recwarn) -> None:
    """Issue 30 case 9: Pillow's DecompressionBombWarning does not name the file; decode_images reports it."""
    small, large = (
        write_image(tmp_path / "small.png", fmt="PNG"),
        write_image(tmp_path / "large.png", size=(30, 20), fmt="PNG"),
    )
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # the limit, lowered to fit the test (89 Mpx by default)
    decoded = decode_images([small, large], 4)
    assert decoded.good == [0, 1]
    assert decoded.oversized == {1: (30, 20)}
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_identical_pictures_share_a_digest_whatever_their_file(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "b.bmp")
    Image.fromarray(pixels).save(tmp_path / "c.png", pnginfo=_text_chunk("edited"))
    other = pixels.copy()
    other[0, 0, 0] ^= 1
    Image.fromarray(other).save(tmp_path / "d.png")
    digests = [decode_image(tmp_path / name, 4).digest for name in ("a.png", "b.bmp", "c.png", "d.png")]
    assert digests[0] == digests[1] == digests[2] != digests[3]
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def _text_chunk(text: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", text)
    return info


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
    decoded = decode_images(paths, 5, workers=3)
    images, good, failed = decoded.pixels, decoded.good, decoded.failed
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

    decoded = decode_images([path, path], 4, progress=progress)
    good, failed = decoded.good, decoded.failed
    assert len(seen) == 2
    assert good == [0, 1]
    assert failed == {}


def test_decode_images_all_failed_gives_an_empty_stack(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    decoded = decode_images([tmp_path / "bad.jpg"], 7)
    images, good, failed = decoded.pixels, decoded.good, decoded.failed
    assert images.shape == (0, 7, 7, 3)
    assert images.dtype == np.uint8
    assert good == []
    assert list(failed) == [0]


def damaged_exif_jpeg(path: Path, cut: int) -> Path:
    """A JPEG whose EXIF block (orientation 3, upside down) lost its last `cut` bytes."""
    exif = Image.Exif()
    exif[0x010F] = "Maker of this camera"
    exif[0x0112] = 3
    exif[0x9003] = "2020:01:01 00:00:00"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path, exif=exif.tobytes()[:-cut])
    return path


def test_pillow_s_warnings_are_kept_with_the_image_they_are_about(tmp_path: Path, recwarn) -> None:
    """Pillow warns about a damaged EXIF block without naming the file: decode_images names it, in threads."""
    paths = []
    for index in range(12):
        pixels = np.full((8, 8, 3), index * 20, dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{index}.jpg")
        paths.append(tmp_path / f"{index}.jpg")
    paths[3] = damaged_exif_jpeg(tmp_path / "readable_orientation.jpg", cut=10)
    paths[8] = damaged_exif_jpeg(tmp_path / "orientation_lost.jpg", cut=30)
    decoded = decode_images(paths, 4, workers=4)
    assert decoded.warnings == {3: "Truncated File Read", 8: "Truncated File Read"}
    assert decoded.conversions["exif_orientation"] == [3]  # salvaged from the damaged block; 8's was lost
    assert not [w for w in recwarn if "Truncated" in str(w.message)]  # none printed without its file
