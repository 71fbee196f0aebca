"""Unit tests for stages.lib.data.fetch: filling data/raw from a folder, a .tgz, or tensorflow-datasets."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.lib.core import network
from stages.lib.core.errors import UserError
from stages.lib.data.fetch import PNG_SIGNATURE, export_tfds, fetch, image_suffix
from stages.lib.data.images import scan_folder
from toolkit.synthetic import make_flower_archive, make_flower_folder

PER_CLASS = 3


def class_counts(root: Path) -> Counter:
    return Counter(class_name for _, class_name in scan_folder(root).images)


def empty_folder(path: Path) -> Path:
    """fetch fills an existing empty folder (the download stage's staging folder)."""
    path.mkdir(parents=True)
    return path


def file_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_flower_folder(tmp_path_factory.mktemp("src") / "flower_photos", per_class=PER_CLASS, size=16)


def test_fetch_from_a_folder_copies_the_class_folders(source_folder: Path, tmp_path: Path) -> None:
    target = empty_folder(tmp_path / "raw")
    count, beside = fetch(str(source_folder), target)
    assert beside == ()
    assert count == 5 * PER_CLASS
    assert sorted(p.name for p in target.iterdir()) == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert file_bytes(target) == file_bytes(source_folder)


def test_fetch_from_a_folder_keeps_stray_files_and_drops_top_level_ones(tmp_path: Path) -> None:
    source = make_flower_folder(tmp_path / "src", per_class=2, size=16)
    (source / "LICENSE.txt").write_text("top level\n")
    (source / "daisy" / "notes.txt").write_text("inside a class\n")
    target = empty_folder(tmp_path / "raw")
    assert fetch(str(source), target) == (10, ("LICENSE.txt",))  # images only; the top-level file is named
    assert (target / "daisy" / "notes.txt").exists()  # subsample reports it as a non-image
    assert not (target / "LICENSE.txt").exists()


def test_fetch_from_a_tf_flowers_style_archive(tmp_path: Path) -> None:
    archive = make_flower_archive(tmp_path / "archive" / "flower_photos.tgz", per_class=PER_CLASS, size=16)
    source = archive.parent / "flower_photos"  # the folder the archive was built from
    target = empty_folder(tmp_path / "raw")
    count, beside = fetch(str(archive), target)
    assert beside == ("LICENSE.txt",)  # tf_flowers' archive has one beside the class folders
    assert count == 5 * PER_CLASS
    assert class_counts(target) == class_counts(source) == Counter(dict.fromkeys(class_counts(source), PER_CLASS))
    # The archive's top folder and its LICENSE.txt are gone: data/raw holds the class folders only.
    assert sorted(p.name for p in target.iterdir()) == sorted(class_counts(source))
    expected = {rel: data for rel, data in file_bytes(source).items() if rel != "LICENSE.txt"}
    assert file_bytes(target) == expected
    # The unpacking happens in a temporary folder beside the target, removed afterwards.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive", "raw"]


def test_fetch_expands_the_home_folder(source_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(source_folder.parent))
    assert fetch(f"~/{source_folder.name}", empty_folder(tmp_path / "raw")) == (5 * PER_CLASS, ())


def test_fetch_missing_path_names_data_source(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "flower_photos.tgz"
    with pytest.raises(UserError, match=r"data\.source = .*nowhere.*no such file or folder"):
        fetch(str(missing), empty_folder(tmp_path / "raw"))


def test_fetch_unsupported_file_names_data_source(tmp_path: Path) -> None:
    zipped = tmp_path / "flower_photos.zip"
    zipped.write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match=r"data\.source = .*flower_photos\.zip.*\.tgz"):
        fetch(str(zipped), empty_folder(tmp_path / "raw"))


def test_fetch_broken_archive_names_data_source(tmp_path: Path) -> None:
    broken = tmp_path / "flower_photos.tgz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    target = empty_folder(tmp_path / "raw")
    with pytest.raises(UserError, match=r"data\.source = .*flower_photos\.tgz.*cannot unpack"):
        fetch(str(broken), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flower_photos.tgz", "raw"]
    assert list(target.iterdir()) == []


def test_fetch_refuses_archive_members_escaping_the_folder(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    payload = tmp_path / "payload.txt"
    payload.write_text("escaped\n")
    with tarfile.open(archive, "w") as tar:
        tar.add(payload, arcname="../escaped.txt")
    with pytest.raises(UserError, match=r"data\.source = .*cannot unpack"):
        fetch(str(archive), empty_folder(tmp_path / "work" / "raw"))
    assert not (tmp_path / "work" / "escaped.txt").exists()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["raw"]


def test_image_suffix_follows_the_bytes() -> None:
    assert image_suffix(b"\xff\xd8\xff\xe0\x00\x10JFIF") == ".jpg"
    assert image_suffix(PNG_SIGNATURE + b"\x00\x00\x00\rIHDR") == ".png"
    assert image_suffix(b"") == ".jpg"  # unreadable bytes keep tf_flowers' own suffix; subsample reports them


# -- tensorflow-datasets ------------------------------------------------------------------------------------------
# tfds' mock replaces download_and_prepare by nothing and as_dataset by deterministic random examples generated
# from tf_flowers' feature spec (PNG-encoded images, labels in 0..4), so no network is touched.

MOCK_EXAMPLES = 8


def mock_examples(data_dir: Path) -> list[tuple[np.ndarray, int]]:
    """The mock's examples, decoded by tfds itself: what the export must reproduce."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("tf_flowers", data_dir=str(data_dir))
    dataset = builder.as_dataset(split="train", shuffle_files=False)
    return [(example["image"], int(example["label"])) for example in tfds.as_numpy(dataset)]


@pytest.fixture
def reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The network probe (stages.lib.core.network) finds every host reachable: these tests never go online."""
    monkeypatch.setattr(network, "unreachable_reason", lambda url: None)


@pytest.mark.usefixtures("reachable")
def test_export_tfds_writes_each_example_under_its_class(tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    data_dir = tmp_path / "tfds"
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE):
        count = export_tfds(empty_folder(tmp_path / "raw"), data_dir=data_dir)
        again = export_tfds(empty_folder(tmp_path / "raw_again"), data_dir=data_dir)
        expected = mock_examples(data_dir)
        names = tfds.builder("tf_flowers", data_dir=str(data_dir)).info.features["label"].names
    assert names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]  # tfds' order, not alphabetical
    assert count == again == MOCK_EXAMPLES == len(expected)
    written = sorted((tmp_path / "raw").rglob("*"))
    files = [p for p in written if p.is_file()]
    assert len(files) == MOCK_EXAMPLES
    # Files are named by their position in the split; their folder is the example's class name.
    by_index = {int(p.stem): p for p in files}
    assert sorted(by_index) == list(range(MOCK_EXAMPLES))
    for index, (pixels, label) in enumerate(expected):
        path = by_index[index]
        assert path.parent.name == names[label]
        assert path.suffix == ".png"  # the mock's bytes are PNG: the name says so
        with Image.open(path) as image:
            np.testing.assert_array_equal(np.asarray(image.convert("RGB")), pixels)
    # The export is byte-identical run after run, and scan_folder reads it.
    assert file_bytes(tmp_path / "raw") == file_bytes(tmp_path / "raw_again")
    assert sum(class_counts(tmp_path / "raw").values()) == MOCK_EXAMPLES


@pytest.mark.usefixtures("reachable")
def test_fetch_tfds_goes_through_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.chdir(tmp_path)  # the default data_dir is relative to the project root
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        assert fetch("tfds", empty_folder(tmp_path / "raw")) == (3, ())


@pytest.mark.usefixtures("reachable")
def test_export_tfds_download_failure_names_data_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A download that fails after the probe found the host (tfds' retries spent): the same one-line error."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class OfflineBuilder:
        url_infos = ("http://example.org/flower_photos.tgz",)  # what the probe reads: the URLs
        data_path = tmp_path / "not_prepared"

        def download_and_prepare(self) -> None:
            raise ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(tfds, "builder", lambda *args, **kwargs: OfflineBuilder())
    with pytest.raises(UserError, match=r"data\.source = tfds: downloading tf_flowers:3\.0\.1 failed \(Connection"):
        export_tfds(tmp_path / "raw", data_dir=tmp_path / "tfds")
