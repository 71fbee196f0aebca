"""Fixtures of every test: no test may change the project's own files (the tests copy the project first). And how
`pytest -n 2 --dist loadgroup` (.ci/run) shares the tests out: a module at a time, unless it says otherwise."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name] if listed.returncode == 0 else []


TRACKED = _tracked_files()


def _signature() -> dict[Path, tuple[int, int] | None]:
    """Size and modification time of each tracked file (None: gone): cheap enough to take around every test."""
    signature = {}
    for path in TRACKED:
        try:
            stat = path.stat()
            signature[path] = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            signature[path] = None
    return signature


@pytest.fixture(autouse=True)
def project_files_untouched() -> Iterator[None]:
    """Fail the test that wrote to, or deleted, one of the project's tracked files (params.yaml, dvc.yaml,
    stages/, ...): later tests copy them, and a user's checkout must never be changed by running the tests."""
    before = _signature()
    yield
    changed = sorted(str(path.relative_to(ROOT)) for path, value in _signature().items() if before.get(path) != value)
    assert not changed, f"the test changed the project's own files: {', '.join(changed)}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist's `--dist loadgroup`, each module's tests go to one worker, which then builds the
    module's fixtures once. A module whose tests share nothing (no module-scoped fixture) and take minutes each
    sets `SPREAD_OVER_WORKERS = True`: its tests are then shared out one by one, so that it is not one worker's
    long tail. (tryfirst: the group must be marked before xdist reads it.)"""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and not getattr(module, "SPREAD_OVER_WORKERS", False):
            item.add_marker(pytest.mark.xdist_group(module.__name__))
