"""A changed source is noticed: new files behind the same `data.source` or `model.weights` path rerun what
reads them, through the fingerprint stage; unchanged ones rerun nothing that does work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from toolkit.project import dvc, make_project, ran_stages, write_params
from toolkit.synthetic import make_flower_archive, make_flower_folder

AFTER_DOWNLOAD = frozenset(
    {"download", "subsample", "corrupt", "embed", "detect_clean", "detect", "evaluate"}
    | {f"train@{loss}-{labels}" for loss in ("bce", "l1") for labels in ("clean", "noisy")}
)
AFTER_EMBED = AFTER_DOWNLOAD - {"download", "subsample", "corrupt"}


def repro(repo: Path) -> set[str]:
    result = dvc(repo, "repro")
    return ran_stages(result.stdout + result.stderr)


def decoded_images(repo: Path) -> int:
    return json.loads((repo / "data/prepared/summary.json").read_text())["images_decoded"]


@pytest.fixture
def own_folder(tmp_path: Path, flower_folder: Path) -> Path:
    """A copy of the shared synthetic folder that this test may change."""
    return Path(shutil.copytree(flower_folder, tmp_path / "flower_photos"))


def test_an_image_added_removed_or_replaced_reruns_download_and_what_follows(tmp_path: Path, own_folder: Path) -> None:
    repo = make_project(tmp_path / "project", own_folder)
    assert repro(repo) == AFTER_DOWNLOAD
    before = decoded_images(repo)
    assert repro(repo) == set()  # nothing changed: only the fingerprint stage ran

    # One more sunflower behind the same path.
    extra = make_flower_folder(tmp_path / "extra", per_class={"sunflowers": 1}, size=48, seed=7)
    shutil.copy(next((extra / "sunflowers").iterdir()), own_folder / "sunflowers" / "new_sunflower.jpg")
    assert repro(repo) == AFTER_DOWNLOAD
    assert decoded_images(repo) == before + 1
    assert repro(repo) == set()

    # An image replaced by another (same name), then one removed.
    daisy = sorted((own_folder / "daisy").iterdir())[0]
    shutil.copy(own_folder / "sunflowers" / "new_sunflower.jpg", daisy)
    assert "download" in repro(repo)
    daisy.unlink()
    assert "download" in repro(repo)
    assert decoded_images(repo) == before


def test_the_same_images_at_another_path_rerun_nothing(tmp_path: Path, own_folder: Path) -> None:
    """The fingerprint holds contents, not paths: a moved copy of the data is the same data."""
    repo = make_project(tmp_path / "project", own_folder)
    repro(repo)
    moved = shutil.copytree(own_folder, tmp_path / "elsewhere" / "flower_photos")
    write_params(repo, {"data": {"source": str(moved)}})
    assert repro(repo) == set()


def test_a_replaced_archive_reruns_download(tmp_path: Path) -> None:
    archive = make_flower_archive(tmp_path / "a" / "flower_photos.tgz", per_class=20, size=40, seed=1)
    repo = make_project(tmp_path / "project", archive)
    assert repro(repo) == AFTER_DOWNLOAD
    make_flower_archive(tmp_path / "b" / "flower_photos.tgz", per_class=20, size=40, seed=2)
    shutil.copy(tmp_path / "b" / "flower_photos.tgz", archive)
    # Same file names and classes, other pixels: the split and its labels stay, so corrupt is not rerun.
    assert repro(repo) == AFTER_DOWNLOAD - {"corrupt"}


def test_a_replaced_weights_file_reruns_embed_and_what_follows(tmp_path: Path, flower_folder: Path) -> None:
    import keras

    def save_resnet_weights(path: Path, seed: int) -> Path:
        keras.utils.set_random_seed(seed)
        model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
        model.save_weights(path)
        return path

    weights = save_resnet_weights(tmp_path / "resnet50.weights.h5", seed=1)
    repo = make_project(tmp_path / "project", flower_folder, {"model": {"weights": str(weights)}})
    assert repro(repo) == AFTER_DOWNLOAD
    features = (repo / "data/features/train.npy").read_bytes()
    assert repro(repo) == set()
    save_resnet_weights(weights, seed=2)
    assert repro(repo) == AFTER_EMBED
    assert (repo / "data/features/train.npy").read_bytes() != features


def test_an_image_changed_behind_a_linked_class_folder_reruns_download(tmp_path: Path, own_folder: Path) -> None:
    """Issue 30 case 4: the download copied a linked class folder that the fingerprint did not walk, so images
    deleted behind the link reran nothing and data/raw kept them."""
    shared = tmp_path / "shared" / "tulips"  # e.g. a class folder on a shared disk
    shared.parent.mkdir()
    (own_folder / "tulips").rename(shared)
    (own_folder / "tulips").symlink_to(shared, target_is_directory=True)
    repo = make_project(tmp_path / "project", own_folder)
    assert download_reran(repo)
    assert len(list((repo / "data/raw/tulips").iterdir())) == 24
    assert not download_reran(repo)  # nothing changed

    tulip = sorted(shared.iterdir())[0]
    tulip.write_bytes((own_folder / "daisy" / "daisy_0000.jpg").read_bytes())  # replaced behind the link
    assert download_reran(repo)
    assert (repo / "data/raw/tulips" / tulip.name).read_bytes() == tulip.read_bytes()

    for image in sorted(shared.iterdir())[:10]:  # deleted behind the link
        image.unlink()
    assert download_reran(repo)
    assert len(list((repo / "data/raw/tulips").iterdir())) == 14


def download_reran(repo: Path) -> bool:
    """`dvc repro download` (the fingerprint and the download, nothing after them): did download run?"""
    result = dvc(repo, "repro", "download")
    return ran_stages(result.stdout + result.stderr) == {"download"}
