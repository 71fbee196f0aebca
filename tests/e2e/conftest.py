"""Fixtures of the e2e tests (real stages and `dvc` commands in throw-away git repos), and their marker.

Every test under tests/e2e/ is marked `e2e`, so `pytest -m "not e2e"` runs the fast unit tests alone.

A `dvc repro` of the small project costs a minute of CPU (TensorFlow's start and ResNet50 in embed, then every
head): the expensive states are built once per test run and shared, each test working in its own copy
(toolkit.project.copy_project, milliseconds):

- `prepared_project`: the small project with download, subsample, corrupt and embed run (`dvc repro corrupt
  embed`) and committed: for a test that needs the data and the features but not the heads.
- `reproduced_project`: that project after the rest of the pipeline (`dvc repro`), committed; `.output` is what
  the two `dvc repro` printed (every stage once), `.stderr` their stderr.
- `shared_baseline`: the reproduced project pushed as docs/several-machines.md says (a bare `origin`, a DVC
  remote with the run-cache): for tests of other machines restoring it.
- `prepared_copy`, `baseline_copy`, `shared_copy`: a private copy of each, made for one test (function scope).
  A module that wants one copy for all its tests calls `copy_project(reproduced_project.repo, ...)` (or
  `copy_shared`) in its own module-scoped fixture.

The shared states are read-only: a test that changes one fails (`shared_states_untouched`). Under pytest-xdist
each worker is a process with its own session fixtures; `built_once` makes each state once per run all the
same: the first worker to ask builds it under a lock in the run's temp folder, the others wait and reuse it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from toolkit.project import Reproduced, Shared, commit_all, copy_project, copy_shared, dvc, make_project, share
from toolkit.synthetic import make_flower_folder

E2E_DIR = Path(__file__).resolve().parent


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by `build(folder)` once per test run, whichever xdist worker asks first (the
    others wait for it). A build that failed midway is started afresh by the next one to ask."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built_once"
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def signature(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file's size and modification time: what a test that changed the folder would have changed."""
    return {
        str(path.relative_to(folder)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in folder.rglob("*")
        if not path.is_dir()
    }


@pytest.fixture(scope="session")
def flower_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five classes of 24 synthetic 48 px photos each (sunflowers are 20 %, as in tf_flowers)."""
    folder = built_once(
        tmp_path_factory, "flowers", lambda root: make_flower_folder(root / "flower_photos", per_class=24, size=48)
    )
    return folder / "flower_photos"


@pytest.fixture
def project(tmp_path: Path, flower_folder: Path) -> Path:
    """A fresh git+DVC copy of the project, reading the synthetic folder, nothing run yet."""
    return make_project(tmp_path / "project", flower_folder)


@pytest.fixture(scope="session")
def prepared_project(tmp_path_factory: pytest.TempPathFactory, flower_folder: Path) -> Path:
    """Read-only: the small project with every stage up to embed run (download, subsample, corrupt, embed) and
    committed. Use `prepared_copy` (or copy_project) to run anything in it."""

    def build(root: Path) -> None:
        repo = make_project(root / "project", flower_folder)
        result = dvc(repo, "repro", "corrupt", "embed")
        (root / "output.txt").write_text(result.stdout + result.stderr)
        (root / "stderr.txt").write_text(result.stderr)
        commit_all(repo, "prepared: the data, the noisy labels and the features")

    return built_once(tmp_path_factory, "prepared", build) / "project"


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory: pytest.TempPathFactory, prepared_project: Path) -> Reproduced:
    """Read-only: the small project reproduced to the end and committed (the prepared project, then `dvc
    repro`). Use `baseline_copy` (or copy_project) to run anything in it."""
    prepared = prepared_project.parent

    def build(root: Path) -> None:
        repo = copy_project(prepared_project, root / "project")
        result = dvc(repo, "repro")
        (root / "output.txt").write_text((prepared / "output.txt").read_text() + result.stdout + result.stderr)
        (root / "stderr.txt").write_text((prepared / "stderr.txt").read_text() + result.stderr)
        commit_all(repo, "baseline: dvc.lock and metrics")

    root = built_once(tmp_path_factory, "reproduced", build)
    return Reproduced(root / "project", (root / "output.txt").read_text(), (root / "stderr.txt").read_text())


@pytest.fixture(scope="session")
def shared_baseline(tmp_path_factory: pytest.TempPathFactory, reproduced_project: Reproduced) -> Shared:
    """Read-only: the reproduced project shared through `origin` and a DVC remote with its run-cache (what
    machine A does in docs/several-machines.md). Use `shared_copy` (or copy_shared) to push or clone."""

    def build(root: Path) -> None:
        repo = copy_project(reproduced_project.repo, root / "project")
        share(repo, root / "origin.git", root / "dvc-storage")

    root = built_once(tmp_path_factory, "shared", build)
    return Shared(root / "project", root / "origin.git", root / "dvc-storage")


@pytest.fixture
def prepared_copy(tmp_path: Path, prepared_project: Path) -> Path:
    """A private copy of `prepared_project`, in tmp_path/project."""
    return copy_project(prepared_project, tmp_path / "project")


@pytest.fixture
def baseline_copy(tmp_path: Path, reproduced_project: Reproduced) -> Path:
    """A private copy of `reproduced_project`'s repo, in tmp_path/project."""
    return copy_project(reproduced_project.repo, tmp_path / "project")


@pytest.fixture
def shared_copy(tmp_path: Path, shared_baseline: Shared) -> Shared:
    """A private copy of `shared_baseline` (project, origin and remote) under tmp_path/shared."""
    return copy_shared(shared_baseline, tmp_path / "shared")


SHARED_STATES = ("prepared_project", "reproduced_project", "shared_baseline")


@pytest.fixture(autouse=True)
def shared_states_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test that wrote into a shared state instead of its own copy (later tests copy it)."""
    folders = [_folder(request.getfixturevalue(name)) for name in SHARED_STATES if name in request.fixturenames]
    before = [signature(folder) for folder in folders]
    yield
    changed = [str(folder) for folder, was in zip(folders, before, strict=True) if signature(folder) != was]
    assert not changed, f"the test changed a shared state (work in a copy): {', '.join(changed)}"


def _folder(state: Path | Reproduced | Shared) -> Path:
    return state if isinstance(state, Path) else state.repo if isinstance(state, Reproduced) else state.project.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of this folder `e2e` (the hook sees every collected test: filter by folder)."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
