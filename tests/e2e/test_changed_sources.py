"""A changed source is noticed: new files behind the same `data.source` or `model.weights` path rerun what
reads them, through the fingerprint stage; unchanged ones rerun nothing that does work.

Each rule is shown by one real rerun; which stages a further change would rerun is asked of `dvc status`
after `dvc repro fingerprint` (toolkit.project.stages_to_rerun), which lists the stages whose inputs changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from toolkit.project import (
    ALL_STAGES,
    VARIANTS,
    dvc,
    make_project,
    ran_stages,
    stages_to_rerun,
    status_is_clean,
    write_params,
)
from toolkit.synthetic import make_flower_archive, make_flower_folder

TRAIN = frozenset(f"train@{variant}" for variant in VARIANTS)
# The stages that read embed's features (what new features rerun).
READ_FEATURES = frozenset({"detect_clean", "detect", *TRAIN})
LABELS = "data/prepared/labels.csv"


def repro(repo: Path, *targets: str) -> set[str]:
    result = dvc(repo, "repro", *targets)
    return ran_stages(result.stdout + result.stderr)


def decoded_images(repo: Path) -> int:
    return json.loads((repo / "data/prepared/summary.json").read_text())["images_decoded"]


@pytest.fixture
def own_folder(tmp_path: Path, flower_folder: Path) -> Path:
    """A copy of the shared synthetic folder that this test may change, at another path."""
    return Path(shutil.copytree(flower_folder, tmp_path / "elsewhere" / "flower_photos"))


def test_the_same_images_at_another_path_rerun_nothing_and_a_changed_image_reruns_download(
    baseline_copy: Path, own_folder: Path
) -> None:
    """The fingerprint holds contents, not paths: a moved copy of the data is the same data. An image added,
    replaced (same name) or removed behind the same path reruns download, and so everything after it."""
    repo = baseline_copy
    before = decoded_images(repo)
    write_params(repo, {"data": {"source": str(own_folder)}})
    assert repro(repo) == set()  # only the fingerprint stage ran

    # One more sunflower behind the same path: the real rerun.
    extra = make_flower_folder(own_folder.parent / "extra", per_class={"sunflowers": 1}, size=48, seed=7)
    shutil.copy(next((extra / "sunflowers").iterdir()), own_folder / "sunflowers" / "new_sunflower.jpg")
    assert repro(repo) == ALL_STAGES
    assert decoded_images(repo) == before + 1
    assert status_is_clean(repo)

    # An image replaced by another (same name), then one removed: download would run again.
    daisy = sorted((own_folder / "daisy").iterdir())[0]
    shutil.copy(own_folder / "sunflowers" / "new_sunflower.jpg", daisy)
    assert repro(repo, "fingerprint") == set()
    assert stages_to_rerun(repo) == {"download"}
    daisy.unlink()
    assert repro(repo, "fingerprint") == set()
    assert stages_to_rerun(repo) == {"download"}


def test_a_replaced_archive_reruns_download_but_not_the_labels(tmp_path: Path) -> None:
    """Same file names and classes, other pixels: the images change but the split and its labels stay, so
    corrupt is not rerun (embed, which reads the images, would be)."""
    archive = make_flower_archive(tmp_path / "a" / "flower_photos.tgz", per_class=20, size=40, seed=1)
    repo = make_project(tmp_path / "project", archive)
    assert repro(repo, "corrupt") == {"download", "subsample", "corrupt"}
    images, labels = (repo / "data/prepared/train_images.npy").read_bytes(), (repo / LABELS).read_bytes()
    make_flower_archive(tmp_path / "b" / "flower_photos.tgz", per_class=20, size=40, seed=2)
    shutil.copy(tmp_path / "b" / "flower_photos.tgz", archive)
    assert repro(repo, "corrupt") == {"download", "subsample"}
    assert (repo / "data/prepared/train_images.npy").read_bytes() != images
    assert (repo / LABELS).read_bytes() == labels


def test_a_replaced_weights_file_reruns_embed_and_what_reads_the_features(tmp_path: Path, baseline_copy: Path) -> None:
    import keras

    def save_resnet_weights(path: Path, seed: int) -> Path:
        keras.utils.set_random_seed(seed)
        model = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
        model.save_weights(path)
        return path

    repo = baseline_copy
    weights = save_resnet_weights(tmp_path / "resnet50.weights.h5", seed=1)
    write_params(repo, {"model": {"weights": str(weights)}})
    assert repro(repo, "embed") == {"embed"}
    features = (repo / "data/features/train.npy").read_bytes()
    assert stages_to_rerun(repo) == READ_FEATURES  # what new features rerun (not run here)
    assert repro(repo, "embed") == set()
    save_resnet_weights(weights, seed=2)  # other weights, the same path
    assert repro(repo, "fingerprint") == set()
    assert stages_to_rerun(repo) == READ_FEATURES | {"embed"}
    assert repro(repo, "embed") == {"embed"}  # the real rerun
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
