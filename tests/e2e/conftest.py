"""Fixtures of the e2e tests (real stages and `dvc` commands in throw-away git repos), and their marker.

Every test under tests/e2e/ is marked `e2e`, so `pytest -m "not e2e"` runs the fast unit tests alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.project import make_project
from toolkit.synthetic import make_flower_folder

E2E_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def flower_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five classes of 24 synthetic 48 px photos each (sunflowers are 20 %, as in tf_flowers)."""
    return make_flower_folder(tmp_path_factory.mktemp("flowers") / "flower_photos", per_class=24, size=48)


@pytest.fixture
def project(tmp_path: Path, flower_folder: Path) -> Path:
    """A fresh git+DVC copy of the project, reading the synthetic folder."""
    return make_project(tmp_path / "project", flower_folder)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of this folder `e2e` (the hook sees every collected test: filter by folder)."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
